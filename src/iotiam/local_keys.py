"""The 32-byte keys iotiam keeps in files beside its database rather than in it.

A copy of the database alone then cannot forge the audit chain head or read the
PSKs. ``iotiam init`` makes the keys (``installation``); the services only read them
(``bootstrap``), save the alert webhook key, made when a webhook is first configured.
Where each file is comes from the settings (``secrets/`` unless an environment
variable names another place).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from iotiam.config import Settings, write_private_file
from iotiam.errors import SetupError


def local_key(path: Path, what: str, *, create: bool) -> bytes:
    """The key in ``path`` (hex); made there when missing and ``create`` is set."""
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        raise SetupError(f"{what} {path} is missing; run `iotiam init`")
    key = secrets.token_bytes(32)
    write_private_file(path, key.hex() + "\n")
    return key


def audit_head_key(settings: Settings, *, create: bool) -> bytes:
    """Key that MACs the audit chain head."""
    return local_key(settings.audit_key_path, "audit key", create=create)


def data_key(settings: Settings, *, create: bool) -> bytes:
    """Key that encrypts readable secrets at rest (PSKs)."""
    return local_key(settings.data_key_path, "data key", create=create)


def alert_webhook_key(settings: Settings) -> bytes:
    """The key that signs alert webhooks (share it with the receiver)."""
    return local_key(settings.alert_webhook_key_path, "alert webhook key", create=True)


def console_session_key(settings: Settings) -> bytes:
    """The key that encrypts and authenticates web console session cookies.

    Made on first use (an installation from before the console gets one at its next
    start) exactly once: ``serve --workers N`` starts several processes at the same
    moment, and each must read the one key the others read.
    """
    path = settings.secrets_dir / "console-session.key"
    if not path.exists():
        _create_exclusively(path)
    return local_key(path, "console session key", create=False)


def _create_exclusively(path: Path) -> None:
    """Write a new key to ``path`` unless another process already has (``link`` fails
    when the name exists, so the first writer wins and no reader sees half a file)."""
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    write_private_file(draft, secrets.token_bytes(32).hex() + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
