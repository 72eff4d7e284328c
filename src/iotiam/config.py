"""Typed settings: one ``Settings`` read from the environment and the data directory.

``iotiam init`` records choices (ports, public URL, server names) in
``<data_dir>/config.json``; environment variables override them.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from iotiam.errors import SetupError
from iotiam.pki.models import PkiConfig

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "iotiam"
CONFIG_FILE = "config.json"
# the local CLI profile `init` leaves; here rather than in bootstrap so that the CLI, a
# thin API client, can find it without importing the storage and web layers
PROFILE_FILE = "profile.json"


@dataclass(frozen=True)
class Settings:
    """Everything the composition root needs to build the services."""

    data_dir: Path
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    http_port: int = 8080
    public_base_url: str | None = None
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    rotation_age: timedelta = timedelta(days=30)
    max_body_bytes: int = 1024 * 1024
    # a client certificate is read from CLIENT_CERT_HEADER only on requests from these
    trusted_proxies: tuple[str, ...] = ()
    #: RFC 7030 §4.2.3: how long a held enrollment's client waits before it polls again
    est_retry_after_seconds: int = 60
    #: the data plane: "managed" (serve runs Mosquitto when the binary exists),
    #: "external" (drive a Mosquitto someone else runs, over its dynsec admin link), "off"
    broker_mode: str = "managed"
    broker_port: int = 8883
    broker_psk_port: int = 8884
    broker_admin_port: int = 18883
    #: external mode: where the dynsec admin listener is (password: IOTIAM_BROKER_PASSWORD)
    broker_admin_host: str = "127.0.0.1"
    #: what the managed broker logs for detection: "connections" (connects, disconnects,
    #: auth failures) or "messages" (also each publish's topic and size, subscribes and
    #: ACL refusals; costs broker throughput, measured in iotiam.broker.events)
    broker_event_log: str = "messages"
    #: findings are POSTed here, signed with secrets/alert-webhook.key (HMAC-SHA256)
    alert_webhook_url: str | None = None
    #: RFC 5424 syslog target for findings: ``host:port`` (UDP) or ``host:port/tcp``
    alert_syslog: str | None = None
    #: how long a new device is only learned from before its detectors may raise findings
    detection_learning_seconds: float = 3600.0
    #: a signed audit checkpoint is written after this many records ...
    audit_checkpoint_records: int = 1000
    #: ... and at least this often while records arrive (seconds)
    audit_checkpoint_seconds: int = 60
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def effective_database_url(self) -> str:
        """The configured database, or SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'iotiam.db'}"

    @property
    def pki(self) -> PkiConfig:
        """The PKI part of the settings."""
        base = self.public_base_url or f"http://{self.host}:{self.http_port}"
        return PkiConfig(public_base_url=base.rstrip("/"))

    @property
    def api_url(self) -> str:
        """Where the HTTPS API listens, as a client on this machine reaches it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"https://{host}:{self.port}"

    @property
    def tls_dir(self) -> Path:
        """Directory holding the server TLS certificate and key."""
        return self.data_dir / "tls"

    @property
    def baselines_file(self) -> Path:
        """Where the detection engine's learned baselines are kept between runs."""
        return self.data_dir / "detection" / "baselines.json"

    @property
    def audit_dir(self) -> Path:
        """Signed audit checkpoints and the checkpoint verifier key (outside the database)."""
        return self.data_dir / "audit"

    @property
    def secrets_dir(self) -> Path:
        """Directory for locally generated secrets (mode 0700)."""
        return self.data_dir / "secrets"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """``--data-dir`` beats ``IOTIAM_DATA_DIR`` beats the per-user default."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("IOTIAM_DATA_DIR")
    return Path(env).expanduser().resolve() if env else DEFAULT_DATA_DIR


def cli_profile_overrides() -> dict[str, str | None]:
    """``IOTIAM_URL``, ``IOTIAM_TOKEN`` and ``IOTIAM_CA_FILE`` as set (``None`` when unset).

    An empty value is returned as ``""``, not ``None``: the CLI refuses it rather than
    fall back to the profile's token (a script's unset ``$T`` must not run as admin).
    """
    return {name: os.environ.get(f"IOTIAM_{name.upper()}") for name in
            ("url", "token", "ca_file")}


def load_settings(data_dir: Path) -> Settings:
    """Read ``config.json`` from the data directory and apply environment overrides."""
    recorded: dict[str, Any] = {}
    path = data_dir / CONFIG_FILE
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SetupError(f"cannot read {path}: {e}") from e
    env = os.environ
    names = recorded.get("server_names") or ["localhost", "127.0.0.1"]
    return Settings(
        data_dir=data_dir,
        database_url=env.get("IOTIAM_DATABASE_URL") or recorded.get("database_url"),
        host=env.get("IOTIAM_HOST") or recorded.get("host", "127.0.0.1"),
        port=int(env.get("IOTIAM_PORT") or recorded.get("port", 8443)),
        http_port=int(env.get("IOTIAM_HTTP_PORT") or recorded.get("http_port", 8080)),
        public_base_url=env.get("IOTIAM_PUBLIC_BASE_URL") or recorded.get("public_base_url"),
        server_names=tuple(names),
        trusted_proxies=tuple(
            p.strip() for p in (env.get("IOTIAM_TRUSTED_PROXIES")
                                or ",".join(recorded.get("trusted_proxies", []))).split(",")
            if p.strip()
        ),
        est_retry_after_seconds=_seconds(env.get("IOTIAM_EST_RETRY_AFTER"),
                                         "IOTIAM_EST_RETRY_AFTER", 60),
        broker_mode=_broker_mode(env.get("IOTIAM_BROKER") or recorded.get("broker_mode",
                                                                           "managed")),
        broker_port=int(recorded.get("broker_port", 8883)),
        broker_psk_port=int(recorded.get("broker_psk_port", 8884)),
        broker_admin_port=int(env.get("IOTIAM_BROKER_ADMIN_PORT")
                              or recorded.get("broker_admin_port", 18883)),
        broker_admin_host=env.get("IOTIAM_BROKER_ADMIN_HOST")
        or recorded.get("broker_admin_host", "127.0.0.1"),
        broker_event_log=_broker_event_log(env.get("IOTIAM_BROKER_EVENT_LOG")
                                           or recorded.get("broker_event_log", "messages")),
        alert_webhook_url=env.get("IOTIAM_ALERT_WEBHOOK_URL")
        or recorded.get("alert_webhook_url"),
        alert_syslog=env.get("IOTIAM_ALERT_SYSLOG") or recorded.get("alert_syslog"),
        detection_learning_seconds=float(_seconds(
            env.get("IOTIAM_DETECTION_LEARNING_SECONDS"), "IOTIAM_DETECTION_LEARNING_SECONDS",
            int(recorded.get("detection_learning_seconds", 3600)), allow_zero=True)),
        audit_checkpoint_records=_records(
            env.get("IOTIAM_AUDIT_CHECKPOINT_RECORDS"), "IOTIAM_AUDIT_CHECKPOINT_RECORDS",
            int(recorded.get("audit_checkpoint_records", 1000))),
        audit_checkpoint_seconds=_seconds(
            env.get("IOTIAM_AUDIT_CHECKPOINT_SECONDS"), "IOTIAM_AUDIT_CHECKPOINT_SECONDS",
            int(recorded.get("audit_checkpoint_seconds", 60))),
    )


BROKER_MODES = ("managed", "external", "off")


BROKER_EVENT_LOGS = ("connections", "messages")


def _broker_event_log(value: str) -> str:
    if value not in BROKER_EVENT_LOGS:
        raise SetupError(f"the broker event log must be one of {', '.join(BROKER_EVENT_LOGS)}, "
                         f"not {value!r}")
    return value


def _broker_mode(value: str) -> str:
    if value not in BROKER_MODES:
        raise SetupError(f"broker mode must be one of {', '.join(BROKER_MODES)}, not {value!r}")
    return value


def _seconds(value: str | None, name: str, default: int, *, allow_zero: bool = False) -> int:
    if not value:
        return default
    try:
        seconds = int(value)
    except ValueError:
        seconds = -1
    low = 0 if allow_zero else 1
    if not low <= seconds <= 86400:
        raise SetupError(f"{name} must be a number of seconds between {low} and 86400")
    return seconds


def _records(value: str | None, name: str, default: int) -> int:
    if not value:
        return default
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise SetupError(f"{name} must be a number of records between 1 and 1000000")
    return int(value)


def save_settings(settings: Settings) -> None:
    """Record the choices ``init`` made so that ``serve`` and the CLI find them."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "host": settings.host,
        "port": settings.port,
        "http_port": settings.http_port,
        "public_base_url": settings.public_base_url,
        "server_names": list(settings.server_names),
        "database_url": settings.database_url,
        "trusted_proxies": list(settings.trusted_proxies),
        "broker_mode": settings.broker_mode,
        "broker_port": settings.broker_port,
        "broker_psk_port": settings.broker_psk_port,
        "broker_admin_port": settings.broker_admin_port,
        "broker_admin_host": settings.broker_admin_host,
        "broker_event_log": settings.broker_event_log,
        "alert_webhook_url": settings.alert_webhook_url,
        "alert_syslog": settings.alert_syslog,
        "detection_learning_seconds": settings.detection_learning_seconds,
    }
    write_private_file(settings.data_dir / CONFIG_FILE, json.dumps(body, indent=2) + "\n")


def ca_passphrase(settings: Settings, *, create: bool) -> bytes:
    """The passphrase that encrypts CA keys at rest.

    ``IOTIAM_CA_PASSPHRASE`` or ``IOTIAM_CA_PASSPHRASE_FILE`` win; otherwise the
    embedded default keeps a random passphrase in ``secrets/ca-passphrase``
    (mode 0600). Production installs should pass one from a secret store.
    """
    env_value = os.environ.get("IOTIAM_CA_PASSPHRASE")
    if env_value:
        return env_value.encode()
    env_file = os.environ.get("IOTIAM_CA_PASSPHRASE_FILE")
    if env_file:
        try:
            return Path(env_file).read_bytes().strip()
        except OSError as e:
            raise SetupError(f"cannot read IOTIAM_CA_PASSPHRASE_FILE: {e}") from e
    local = settings.secrets_dir / "ca-passphrase"
    if local.exists():
        return local.read_bytes().strip()
    if not create:
        raise SetupError(
            "no CA passphrase: set IOTIAM_CA_PASSPHRASE or IOTIAM_CA_PASSPHRASE_FILE, "
            "or run `iotiam init`"
        )
    value = secrets.token_urlsafe(32)
    write_private_file(local, value + "\n")
    return value.encode()


def write_private_file(path: Path, content: str | bytes) -> None:
    """Write a file only its owner can read, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
