"""The managed Mosquitto's files: its configuration, TLS material, CRL, PSKs, dynsec state.

Everything lives under ``<data-dir>/broker/``. iotiam writes the configuration; the
broker is never configured by hand, so a restart always comes back to what iotiam
decided. Facts this relies on (Mosquitto 2.0, see docs/measured-facts.md): ``crlfile`` is re-read
only on SIGHUP and a broken file there fails open, so the CRL is verified before it is
installed; ``psk_file`` also reloads on SIGHUP; ``set_tcp_nodelay`` cuts a handshake
from ~48 ms to ~4 ms.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from iotiam.errors import SetupError

#: the dynsec user iotiam administers the broker as; no device may carry this name (a
#: certificate with this CN would get its rights on the identity listener, no password)
ADMIN_USERNAME = "iotiam-broker-admin"
PSK_HINT = "iotiam"
DYNSEC_PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
_ADMIN_HASH_ITERATIONS = 10_000


@dataclass(frozen=True)
class BrokerConfig:
    """Where the managed broker listens."""

    host: str = "127.0.0.1"
    #: mTLS listener: certificate CN = MQTT username (dynsec applies its role)
    mtls_port: int = 8883
    #: TLS-PSK listener for constrained devices (identity = username)
    psk_port: int = 8884
    #: plain MQTT on 127.0.0.1 only, password-protected: iotiam's dynsec admin link
    admin_port: int = 18883
    #: what the log records for detection (iotiam.broker.events): "connections" or
    #: "messages" (adds the debug and subscribe log types: every publish's topic + size)
    event_log: str = "messages"
    #: seconds between ``$SYS`` updates (Mosquitto publishes every interval + 1 s)
    sys_interval: int = 10
    #: who authorizes devices: "dynsec" (the plugin holds their ACLs) or "plugin"
    #: (iotiam's plugin asks the decision point; dynsec then holds iotiam's admin only)
    auth: str = "dynsec"


@dataclass(frozen=True)
class BrokerFiles:
    """Paths under ``<data-dir>/broker``."""

    root: Path

    @property
    def config(self) -> Path:
        """mosquitto.conf."""
        return self.root / "mosquitto.conf"

    @property
    def ca(self) -> Path:
        """CAs a device certificate must chain to (issuing + root)."""
        return self.root / "ca.pem"

    @property
    def certificate(self) -> Path:
        """The broker's own server certificate."""
        return self.root / "broker.pem"

    @property
    def key(self) -> Path:
        """The broker's private key (created here, never leaves)."""
        return self.root / "broker.key"

    @property
    def crl(self) -> Path:
        """The issuing CA's CRL, replaced atomically."""
        return self.root / "crl.pem"

    @property
    def psk_file(self) -> Path:
        """identity:hex-key lines."""
        return self.root / "psk_file"

    @property
    def acl(self) -> Path:
        """Mosquitto ``acl_file`` (a gateway's local broker: each child its own topics)."""
        return self.root / "acl_file"

    @property
    def passwords(self) -> Path:
        """Mosquitto ``password_file`` (a gateway's local broker: the agent's own login)."""
        return self.root / "password_file"

    @property
    def dynsec(self) -> Path:
        """The dynamic-security plugin's state."""
        return self.root / "dynamic-security.json"

    @property
    def plugin_socket(self) -> Path:
        """Where iotiam answers its authorization plugin (docs/broker-plugin.md)."""
        return self.root / "iotiam-auth.sock"

    @property
    def admin_password(self) -> Path:
        """The dynsec admin password (0600)."""
        return self.root / "admin-password"

    @property
    def log(self) -> Path:
        """The broker's log."""
        return self.root / "mosquitto.log"


def dynsec_plugin() -> Path:
    """The dynamic-security plugin shipped with Mosquitto (Debian: package ``mosquitto``)."""
    for candidate in DYNSEC_PLUGIN_PATHS:
        if Path(candidate).exists():
            return Path(candidate)
    raise SetupError("Mosquitto's dynamic-security plugin was not found "
                     f"(looked in {', '.join(DYNSEC_PLUGIN_PATHS)})")


def mosquitto_binary() -> Path | None:
    """The ``mosquitto`` executable, if installed (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def log_types(event_log: str) -> tuple[str, ...]:
    """Mosquitto ``log_type``s for an event level (``messages`` costs throughput)."""
    types = ("error", "warning", "notice", "information")
    # "subscribe" marks each granted filter: without it every subscribe reads as denied
    return (*types, "debug", "subscribe") if event_log == "messages" else types


def render_config(config: BrokerConfig, files: BrokerFiles, plugin: Path,
                  auth_plugin: Path | None = None) -> str:
    """mosquitto.conf for the three listeners; with ``auth_plugin``, iotiam's plugin
    decides for every client but the admin, whom it leaves to dynsec."""
    # Mosquitto asks its plugins in this order and takes the first answer that is not
    # "defer"; each plugin_opt_ line belongs to the plugin line above it
    asking = [f"plugin {auth_plugin}", f"plugin_opt_socket {files.plugin_socket}",
              f"plugin_opt_defer_user {ADMIN_USERNAME}"] if auth_plugin is not None else []
    # Started as root, Mosquitto switches to the user named here; iotiam's files are
    # 0600 and owned by whoever runs iotiam, so the broker stays that user.
    user = getpass.getuser()
    return "\n".join([
        "# written by iotiam: edits are overwritten (change the settings instead)",
        "per_listener_settings false",
        "allow_anonymous false",
        "persistence false",
        f"user {user}",
        "set_tcp_nodelay true",
        f"log_dest file {files.log}",
        *(f"log_type {kind}" for kind in log_types(config.event_log)),
        "connection_messages true",
        # with the zone: the event parser reads these times (iotiam.broker.events)
        "log_timestamp_format %Y-%m-%dT%H:%M:%S%z",
        # broker statistics for iotiam.broker.broker_watch (changed values only)
        f"sys_interval {config.sys_interval}",
        *asking,
        f"plugin {plugin}",
        f"plugin_opt_config_file {files.dynsec}",
        f"psk_file {files.psk_file}",
        "",
        "# iotiam's admin link: loopback only, dynsec password",
        f"listener {config.admin_port} 127.0.0.1",
        "",
        "# devices with iotiam certificates: the CN is the MQTT username",
        f"listener {config.mtls_port} {config.host}",
        f"cafile {files.ca}",
        f"certfile {files.certificate}",
        f"keyfile {files.key}",
        "require_certificate true",
        "use_identity_as_username true",
        f"crlfile {files.crl}",
        "tls_version tlsv1.2",
        "",
        "# constrained devices with iotiam PSKs: the PSK identity is the MQTT username",
        f"listener {config.psk_port} {config.host}",
        f"psk_hint {PSK_HINT}",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
        "",
    ])


#: the shared subscription iotiam reads gateways' reports with (one replica takes each)
REPORTS_SUBSCRIPTION = "$share/iotiam-reports/gateways/+/reports/+"


def admin_acls() -> list[dict[str, object]]:
    """What iotiam's admin user may do on its broker (the dynsec admin role's ACLs); a
    start puts them back in the stored state (``sync.stored_dynsec_state``), so a broker
    provisioned by an older iotiam gets what a newer one needs."""
    control = "$CONTROL/dynamic-security/#"
    return [
        {"acltype": "publishClientSend", "topic": control, "allow": True},
        {"acltype": "publishClientReceive", "topic": control, "allow": True},
        {"acltype": "subscribePattern", "topic": control, "allow": True},
        # message metadata and broker statistics for behaviour monitoring
        {"acltype": "publishClientReceive", "topic": "$SYS/#", "allow": True},
        {"acltype": "subscribePattern", "topic": "$SYS/#", "allow": True},
        {"acltype": "publishClientReceive", "topic": "#", "allow": True},
        {"acltype": "subscribePattern", "topic": "#", "allow": True},
        {"acltype": "unsubscribePattern", "topic": "#", "allow": True},
        # gateways' reports, read once among the replicas, and the answers to them
        {"acltype": "subscribePattern", "topic": REPORTS_SUBSCRIPTION, "allow": True},
        {"acltype": "publishClientSend", "topic": "gateways/+/answers", "allow": True},
    ]


def dynsec_seed(password: str) -> str:
    """Initial dynamic-security state: the admin user and role, default deny everywhere.

    The plugin's password format (PBKDF2-SHA512, base64 hash and salt) is what
    ``mosquitto_ctrl dynsec init`` writes; written here so the password never appears
    on a command line.
    """
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ADMIN_HASH_ITERATIONS)
    state = {
        "clients": [{
            "username": ADMIN_USERNAME,
            "textName": "iotiam control plane",
            "password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(),
            "iterations": _ADMIN_HASH_ITERATIONS,
            "roles": [{"rolename": ADMIN_USERNAME}],
        }],
        "roles": [{"rolename": ADMIN_USERNAME, "acls": admin_acls()}],
        "groups": [],
        # least privilege: a device gets exactly what its role grants, nothing by default
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
    }
    return json.dumps(state, indent=1)
