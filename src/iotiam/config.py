"""Typed settings: one ``Settings`` read from the environment and the data directory.

``iotiam init`` records choices (ports, public URL, server names) in
``<data_dir>/config.json``; environment variables override them. This is the only
module that reads the environment: a setting is a field here, found in one place.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from iotiam.env_secrets import env_or_file
from iotiam.errors import SetupError
from iotiam.eventstream.wire import DEFAULT_PARTITIONS, MAX_PARTITIONS, EventStreamConfig
from iotiam.pki.models import PkiConfig
from iotiam.sso.models import OidcConfig
from iotiam.sso.settings import oidc_config

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "iotiam"
CONFIG_FILE = "config.json"
# the local CLI profile `init` leaves; here rather than in bootstrap so that the CLI, a
# thin API client, can find it without importing the storage and web layers
PROFILE_FILE = "profile.json"
#: the passphrase of an encrypted signing key, for ``firmware sign``
FIRMWARE_KEY_PASSPHRASE_ENV = "IOTIAM_FIRMWARE_KEY_PASSPHRASE"  # noqa: S105 (a variable name)
#: a CRL lasts from ten minutes (a fetcher then refetches every five) to a week
CRL_VALIDITY_MIN, CRL_VALIDITY_MAX = 600, 7 * 86400
#: an OCSP response lasts at least a minute, and never longer than the CRL
OCSP_VALIDITY_MIN = 60


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
    #: a discovery import's body (streamed, never held: ``POST /v1/discovery/imports``)
    max_import_bytes: int = 16 * 1024 ** 3
    # a client certificate is read from CLIENT_CERT_HEADER only on requests from these
    trusted_proxies: tuple[str, ...] = ()
    #: RFC 7030 §4.2.3: how long a held enrollment's client waits before it polls again
    est_retry_after_seconds: int = 60
    #: the data plane: "managed" (serve runs Mosquitto when the binary exists),
    #: "external" (drive a Mosquitto someone else runs, over its dynsec admin link), "off"
    broker_mode: str = "managed"
    #: the broker's mTLS and TLS-PSK listeners (IOTIAM_BROKER_PORT, IOTIAM_BROKER_PSK_PORT)
    broker_port: int = 8883
    broker_psk_port: int = 8884
    #: its dynamic-security admin listener, loopback only when managed
    broker_admin_port: int = 18883
    #: external mode: where the dynsec admin listener is ...
    broker_admin_host: str = "127.0.0.1"
    #: ... and the password of its admin (IOTIAM_BROKER_PASSWORD; never recorded)
    broker_password: str | None = field(default=None, repr=False)
    #: what the managed broker logs for detection: "connections" (connects, disconnects,
    #: auth failures) or "messages" (also each publish's topic and size, subscribes and
    #: ACL refusals; costs broker throughput, measured in iotiam.broker.events)
    broker_event_log: str = "messages"
    #: how the managed broker authorizes devices: "dynsec" (Mosquitto's dynamic-security
    #: plugin holds every device's ACLs) or "plugin" (iotiam's plugin asks the decision
    #: point over a Unix socket; docs/broker-plugin.md) (IOTIAM_BROKER_AUTH)
    broker_auth: str = "dynsec"
    #: a gateway child's PSK is replaced once it is this many days old (0: never;
    #: IOTIAM_CHILD_PSK_ROTATION), and at once when its gateway is revoked
    child_psk_rotation_days: int = 90
    #: hours the current key stays valid beside the next (IOTIAM_CHILD_PSK_OVERLAP; 0: none)
    child_psk_overlap_hours: int = 72
    #: how often the rotation job looks for due child keys (a revocation wakes it)
    child_psk_check_seconds: int = 300
    #: whether a gateway's children may also use the managed broker's PSK listener
    #: directly, around their gateway (IOTIAM_CHILD_PSK_DIRECT=on; default off)
    child_psk_direct: bool = False
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
    #: after SIGTERM, how long requests in flight may take before their connections are cut
    drain_seconds: int = 10
    #: RFC 5280 §5.1.2.5: a CRL's nextUpdate is this long after its thisUpdate
    crl_validity: timedelta = timedelta(hours=24)
    #: RFC 6960 §4.2.1: an OCSP response's nextUpdate; at most the CRL's validity
    ocsp_validity: timedelta = timedelta(hours=1)
    #: the ``iss`` of access tokens (IOTIAM_OAUTH_ISSUER; default: the API URL)
    oauth_issuer: str | None = None
    #: access token lifetime (IOTIAM_TOKEN_LIFETIME)
    token_lifetime_seconds: int = 600
    #: where the audit-head, data and alert-webhook keys are kept when not in secrets/
    #: (IOTIAM_AUDIT_KEY_FILE, IOTIAM_DATA_KEY_FILE, IOTIAM_ALERT_WEBHOOK_KEY_FILE)
    audit_key_file: Path | None = None
    data_key_file: Path | None = None
    alert_webhook_key_file: Path | None = None
    #: serving processes of ``iotiam serve`` (IOTIAM_WORKERS; ``--workers`` wins)
    workers: int = 1
    #: detection events through NATS JetStream (IOTIAM_EVENTS_URL, ``nats://host:4222``);
    #: unset: scored in process, the embedded default
    events_url: str | None = None
    #: the stream's partitions by device (IOTIAM_EVENT_PARTITIONS; the same everywhere)
    event_partitions: int = DEFAULT_PARTITIONS
    #: ``serve``'s log lines: "text" (the default) or "json", one object a line
    #: (IOTIAM_LOG_FORMAT; ``--log-format`` wins)
    log_format: str = "text"
    #: console single sign-on through an OpenID Connect provider (IOTIAM_OIDC_*; unset:
    #: admin tokens only). Its client secret comes from the environment or a file only.
    oidc: OidcConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the bounds that span two settings; each value's own bounds are checked as it
        # is read (load_settings) or typed (`iotiam init`)
        if self.ocsp_validity > self.crl_validity:
            raise SetupError(f"IOTIAM_OCSP_VALIDITY ({_secs(self.ocsp_validity)} s) must not "
                             f"exceed IOTIAM_CRL_VALIDITY ({_secs(self.crl_validity)} s)")
        ports = {"API": self.port, "HTTP": self.http_port}
        if self.broker_mode != "off":
            ports |= {"broker mTLS": self.broker_port, "broker PSK": self.broker_psk_port,
                      "broker admin": self.broker_admin_port}
        if len(set(ports.values())) != len(ports):
            taken = ", ".join(f"{name} {port}" for name, port in ports.items())
            raise SetupError(f"the API, HTTP and broker ports must all differ ({taken})")

    @property
    def effective_database_url(self) -> str:
        """The configured database, or SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'iotiam.db'}"

    @property
    def pki(self) -> PkiConfig:
        """The PKI part of the settings."""
        base = self.public_base_url or f"http://{self.host}:{self.http_port}"
        # the CRL is rebuilt once half its validity is gone: a fetcher always gets one
        # with half of it left
        return PkiConfig(public_base_url=base.rstrip("/"), crl_validity=self.crl_validity,
                         crl_refresh_margin=self.crl_validity / 2,
                         ocsp_validity=self.ocsp_validity)

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
    def event_stream(self) -> EventStreamConfig | None:
        """The event stream, when one is configured."""
        if self.events_url is None:
            return None
        return EventStreamConfig(self.events_url, partitions=self.event_partitions)

    @property
    def baselines_file(self) -> Path:
        """Where the detection engine's learned baselines are kept between runs."""
        return self.data_dir / "detection" / "baselines.json"

    @property
    def metrics_dir(self) -> Path:
        """The files ``serve``'s processes share their metrics through (emptied at start)."""
        return self.data_dir / "metrics"

    @property
    def audit_dir(self) -> Path:
        """Signed audit checkpoints and the checkpoint verifier key (outside the database)."""
        return self.data_dir / "audit"

    @property
    def secrets_dir(self) -> Path:
        """Directory for locally generated secrets (mode 0700)."""
        return self.data_dir / "secrets"

    @property
    def audit_key_path(self) -> Path:
        """The key that MACs the audit chain head."""
        return self.audit_key_file or self.secrets_dir / "audit.key"

    @property
    def data_key_path(self) -> Path:
        """The key that encrypts readable secrets (PSKs) at rest."""
        return self.data_key_file or self.secrets_dir / "data.key"

    @property
    def alert_webhook_key_path(self) -> Path:
        """The key that signs alert webhooks."""
        return self.alert_webhook_key_file or self.secrets_dir / "alert-webhook.key"

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


def _recorded(data_dir: Path) -> dict[str, Any]:
    """What ``init`` recorded in ``config.json`` (nothing yet: empty)."""
    path = data_dir / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        recorded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SetupError(f"cannot read {path}: {e}") from e
    return recorded


def load_settings(data_dir: Path) -> Settings:
    """Read ``config.json`` from the data directory and apply environment overrides."""
    recorded = _recorded(data_dir)
    read = _Layers(os.environ, recorded)
    return Settings(
        data_dir=data_dir,
        database_url=read.text("IOTIAM_DATABASE_URL", "database_url"),
        host=read.text("IOTIAM_HOST", "host") or "127.0.0.1",
        port=read.port("IOTIAM_PORT", "port", 8443),
        http_port=read.port("IOTIAM_HTTP_PORT", "http_port", 8080),
        public_base_url=read.text("IOTIAM_PUBLIC_BASE_URL", "public_base_url"),
        server_names=tuple(recorded.get("server_names") or ["localhost", "127.0.0.1"]),
        trusted_proxies=tuple(p.strip() for p in (
            read.text("IOTIAM_TRUSTED_PROXIES")
            or ",".join(recorded.get("trusted_proxies", []))).split(",") if p.strip()),
        est_retry_after_seconds=read.seconds("IOTIAM_EST_RETRY_AFTER", None, 60),
        broker_mode=_broker_mode(read.text("IOTIAM_BROKER", "broker_mode") or "managed"),
        broker_port=read.port("IOTIAM_BROKER_PORT", "broker_port", 8883),
        broker_psk_port=read.port("IOTIAM_BROKER_PSK_PORT", "broker_psk_port", 8884),
        broker_admin_port=read.port("IOTIAM_BROKER_ADMIN_PORT", "broker_admin_port", 18883),
        broker_admin_host=read.text("IOTIAM_BROKER_ADMIN_HOST", "broker_admin_host")
        or "127.0.0.1",
        broker_password=read.text("IOTIAM_BROKER_PASSWORD"),
        broker_event_log=_broker_event_log(read.text("IOTIAM_BROKER_EVENT_LOG",
                                                     "broker_event_log") or "messages"),
        broker_auth=_broker_auth(read.text("IOTIAM_BROKER_AUTH", "broker_auth") or "dynsec"),
        child_psk_rotation_days=_up_to(read, "IOTIAM_CHILD_PSK_ROTATION", "days", 90, 825),
        child_psk_overlap_hours=_up_to(read, "IOTIAM_CHILD_PSK_OVERLAP", "hours", 72, 2160),
        child_psk_check_seconds=read.seconds("IOTIAM_CHILD_PSK_CHECK_SECONDS", None, 300),
        child_psk_direct=_one_of(read.text("IOTIAM_CHILD_PSK_DIRECT") or "off",
                                 ("on", "off"), "IOTIAM_CHILD_PSK_DIRECT") == "on",
        alert_webhook_url=read.text("IOTIAM_ALERT_WEBHOOK_URL", "alert_webhook_url"),
        alert_syslog=read.text("IOTIAM_ALERT_SYSLOG", "alert_syslog"),
        detection_learning_seconds=float(read.seconds(
            "IOTIAM_DETECTION_LEARNING_SECONDS", "detection_learning_seconds", 3600, low=0,
            high=MAX_LEARNING_SECONDS)),
        audit_checkpoint_records=read.count("IOTIAM_AUDIT_CHECKPOINT_RECORDS",
                                            "audit_checkpoint_records", 1000, "records",
                                            high=1_000_000),
        audit_checkpoint_seconds=read.seconds("IOTIAM_AUDIT_CHECKPOINT_SECONDS",
                                              "audit_checkpoint_seconds", 60),
        drain_seconds=read.seconds("IOTIAM_DRAIN_SECONDS", None, 10, low=2, high=600),
        crl_validity=timedelta(seconds=read.seconds(
            "IOTIAM_CRL_VALIDITY", "crl_validity_seconds", 86400, low=CRL_VALIDITY_MIN,
            high=CRL_VALIDITY_MAX)),
        ocsp_validity=timedelta(seconds=read.seconds(
            "IOTIAM_OCSP_VALIDITY", "ocsp_validity_seconds", 3600, low=OCSP_VALIDITY_MIN,
            high=CRL_VALIDITY_MAX)),
        oauth_issuer=read.text("IOTIAM_OAUTH_ISSUER"),
        token_lifetime_seconds=read.seconds("IOTIAM_TOKEN_LIFETIME", None, 600, low=30),
        audit_key_file=read.path("IOTIAM_AUDIT_KEY_FILE"),
        data_key_file=read.path("IOTIAM_DATA_KEY_FILE"),
        alert_webhook_key_file=read.path("IOTIAM_ALERT_WEBHOOK_KEY_FILE"),
        workers=read.count("IOTIAM_WORKERS", None, 1, "processes", high=64),
        events_url=check_events_url(read.text("IOTIAM_EVENTS_URL", "events_url")),
        event_partitions=read.count("IOTIAM_EVENT_PARTITIONS", "event_partitions",
                                    DEFAULT_PARTITIONS, "partitions", high=MAX_PARTITIONS),
        log_format=check_log_format(read.text("IOTIAM_LOG_FORMAT") or "text"),
        oidc=oidc_config(os.environ),
    )


def check_events_url(value: str | None) -> str | None:
    """``value`` if it is a NATS URL (or None), else a ``SetupError``."""
    if value is not None and not value.startswith(("nats://", "tls://")):
        raise SetupError(f"IOTIAM_EVENTS_URL must be a nats:// or tls:// URL, not {value!r}")
    return value


@dataclass(frozen=True)
class _Layers:
    """A setting's value: its environment variable, else what ``init`` recorded under
    ``key`` (``None``: a setting never recorded), else the default. A variable that is
    set but empty counts as unset."""

    env: Mapping[str, str]
    recorded: dict[str, Any]

    def text(self, name: str, key: str | None = None) -> str | None:
        value = self.env.get(name) or (self.recorded.get(key) if key else None)
        return str(value) if value else None

    def path(self, name: str) -> Path | None:
        value = self.env.get(name)
        return Path(value) if value else None

    def port(self, name: str, key: str, default: int) -> int:
        return _port(self.env.get(name), name, int(self.recorded.get(key, default)))

    def seconds(self, name: str, key: str | None, default: int, *, low: int = 1,
                high: int = 86400) -> int:
        recorded = int(self.recorded.get(key, default)) if key else default
        return _seconds(self.env.get(name), name, recorded, low=low, high=high)

    def count(self, name: str, key: str | None, default: int, what: str, *,
              high: int) -> int:
        recorded = int(self.recorded.get(key, default)) if key else default
        return _count(self.env.get(name), name, recorded, what, high=high)


LOG_FORMATS = ("text", "json")


def check_log_format(value: str) -> str:
    """``value`` if it names a log format, else a ``SetupError``."""
    return _one_of(value, LOG_FORMATS, "the log format (IOTIAM_LOG_FORMAT, --log-format)")


def export_prometheus_dir(directory: Path) -> None:
    """Tell prometheus-client (which reads only its environment variable) where ``serve``'s
    processes share their metrics; the forked workers inherit it."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def firmware_key_passphrase() -> str | None:
    """The passphrase of an encrypted firmware signing key, for ``firmware sign``."""
    return os.environ.get(FIRMWARE_KEY_PASSPHRASE_ENV) or None


BROKER_MODES = ("managed", "external", "off")
#: the longest learning period: 30 days, what an admin monitors before trusting enforce
#: (weekly rhythms need at least a week)
MAX_LEARNING_SECONDS = 30 * 86400


BROKER_EVENT_LOGS = ("connections", "messages")
BROKER_AUTHS = ("dynsec", "plugin")


def _one_of(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise SetupError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _broker_auth(value: str) -> str:
    return _one_of(value, BROKER_AUTHS, "the broker authorization")


def _broker_event_log(value: str) -> str:
    return _one_of(value, BROKER_EVENT_LOGS, "the broker event log")


def _broker_mode(value: str) -> str:
    return _one_of(value, BROKER_MODES, "broker mode")


def _seconds(value: str | None, name: str, default: int, *, low: int = 1,
             high: int = 86400) -> int:
    if not value:
        return default
    try:
        seconds = int(value)
    except ValueError:
        seconds = -1
    if not low <= seconds <= high:
        raise SetupError(f"{name} must be a number of seconds between {low} and {high}")
    return seconds


def _up_to(read: _Layers, name: str, unit: str, default: int, most: int) -> int:
    value = read.text(name)  # the environment only
    if not value:
        return default
    if not value.isdigit() or int(value) > most:
        raise SetupError(f"{name} must be a number of {unit} between 0 (off) and {most}")
    return int(value)


def _count(value: str | None, name: str, default: int, what: str, *, high: int) -> int:
    if not value:
        return default
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise SetupError(f"{name} must be a number of {what} between 1 and {high}")
    return int(value)


def _port(value: str | None, name: str, default: int) -> int:
    if not value:
        return default
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise SetupError(f"{name} must be a port between 1 and 65535")
    return int(value)


def _secs(period: timedelta) -> int:
    return int(period.total_seconds())


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
        "broker_auth": settings.broker_auth,
        "alert_webhook_url": settings.alert_webhook_url,
        "alert_syslog": settings.alert_syslog,
        "detection_learning_seconds": settings.detection_learning_seconds,
        "events_url": settings.events_url,
        "event_partitions": settings.event_partitions,
        "crl_validity_seconds": _secs(settings.crl_validity),
        "ocsp_validity_seconds": _secs(settings.ocsp_validity),
    }
    write_private_file(settings.data_dir / CONFIG_FILE, json.dumps(body, indent=2) + "\n")


def ca_passphrase(settings: Settings, *, create: bool) -> bytes:
    """The passphrase that encrypts CA keys at rest.

    ``IOTIAM_CA_PASSPHRASE`` or ``IOTIAM_CA_PASSPHRASE_FILE`` win; otherwise the
    embedded default keeps a random passphrase in ``secrets/ca-passphrase``
    (mode 0600). Production installs should pass one from a secret store.
    """
    given = env_or_file(os.environ, "IOTIAM_CA_PASSPHRASE")
    if given:
        return given.encode()
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


#: Debian's SoftHSM2 module (package ``softhsm2``), the default PKCS#11 module
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class Pkcs11Config:
    """Where CA keys in a hardware module are reached (docs/hsm.md)."""

    #: the PKCS#11 module (IOTIAM_PKCS11_MODULE; a URI's module-path wins)
    module_path: str = DEFAULT_PKCS11_MODULE
    #: the user PIN (IOTIAM_PKCS11_PIN, else IOTIAM_PKCS11_PIN_FILE; a URI's
    #: pin-source wins); read only when a key in a module is opened
    pin: str | None = field(default=None, repr=False)


def pkcs11_config() -> Pkcs11Config:
    """The PKCS#11 module and PIN from the environment (IOTIAM_PKCS11_PIN, else the file
    IOTIAM_PKCS11_PIN_FILE names: ``env_or_file``)."""
    pin = env_or_file(os.environ, "IOTIAM_PKCS11_PIN")
    module = os.environ.get("IOTIAM_PKCS11_MODULE") or DEFAULT_PKCS11_MODULE
    return Pkcs11Config(module_path=module, pin=pin)


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
