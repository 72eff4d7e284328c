"""The 32-byte keys iotiam keeps in files beside its database rather than in it.

A copy of the database alone then cannot forge the audit chain head or read the
PSKs. ``iotiam init`` makes the keys (``installation``); the services only read them
(``bootstrap``), save the alert webhook key, made when a webhook is first configured.
Where each file is comes from the settings (``secrets/`` unless an environment
variable names another place).
"""

from __future__ import annotations

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
    """The key that encrypts and authenticates web console session cookies (made on
    first use, so an installation from before the console gets one at its next start)."""
    return local_key(settings.secrets_dir / "console-session.key", "console session key",
                     create=True)
