"""The files a user points the agent at (``--dir``, ``--ca``), checked in one place.

Bad input there is ordinary (a typo, a DER file, a device node), so an ``OSError`` or
``ssl.SSLError`` on those paths becomes one :class:`AgentError` line naming the path,
never "unexpected ... (this is a bug in iotiam)".
"""

from __future__ import annotations

import ssl
from pathlib import Path

from iotiam.errors import IamError


class AgentError(IamError):
    """The agent could not do what it was asked (not enrolled, refused, unreachable)."""

    kind = "agent"
    title = "Agent error"


def agent_directory(path: Path, *, create: bool) -> Path:
    """``--dir``: a directory (made, owner-only, with ``create``), or one line saying why not."""
    if path.exists() and not path.is_dir():
        raise AgentError(f"--dir {path} is not a directory")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise AgentError(f"cannot create --dir {path}: {e.strerror or e}") from e
    return path


def server_tls_context(ca: Path, *, what: str = "the server CA file",
                       cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context trusting the CAs in ``ca`` (and presenting ``cert``/``key``).

    ``what`` names ``ca`` in the error: ``--ca`` when the user just gave it.
    """
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except ssl.SSLError as e:  # checked before OSError: SSLError is one
        raise AgentError(f"{what} {ca} holds no PEM certificate") from e
    except OSError as e:
        raise AgentError(f"cannot read {what} {ca}: {e.strerror or e}") from e
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(str(cert), str(key))
        except ssl.SSLError as e:
            raise AgentError(f"{cert} and {key} are not a PEM certificate and its key") from e
        except OSError as e:
            raise AgentError(f"cannot read {e.filename or cert}: {e.strerror or e}") from e
    return context
