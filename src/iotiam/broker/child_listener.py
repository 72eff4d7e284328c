"""A gateway's local Mosquitto: the TLS-PSK listener its children connect to.

Python 3.11's ``ssl`` has no server-side PSK (3.13 adds ``set_psk_server_callback``), so
``iotiam-agent gateway`` runs a Mosquitto of its own (``ManagedMosquitto``) with two
listeners: the children's TLS-PSK listener and, on loopback, the agent's own login
(a random password in ``password_file``). iotiam writes every file; the agent installs
the children it fetched: ``psk_file`` and ``acl_file`` hold exactly those children,
replaced atomically (0600) and re-read on SIGHUP.

Facts this relies on (Mosquitto 2.0.11, measured by hand with ``mosquitto_sub --psk``
across a SIGHUP, and the kick checked in ``tests/integration/test_gateway_relay.py``):

* SIGHUP re-reads ``psk_file``, ``acl_file`` and ``password_file``, but a connected PSK
  session stays connected with its old key. A child removed or re-keyed is therefore
  also *kicked*: the agent connects with the child's client id and leaves, and the
  broker closes the child's session (MQTT 3.1.1 §3.1.4: a second CONNECT with the same
  client id disconnects the first). ``use_username_as_clientid`` pins every child's
  client id to its PSK identity, so that the agent knows it and a child cannot take
  over another child's id.
* The ACL applies to every publish and every delivery, so a child publishes and
  receives only ``devices/<child>/...``; the agent reads everything its children send.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iotiam.broker.layout import PSK_HINT, BrokerConfig, BrokerFiles, log_types
from iotiam.broker.process import ManagedMosquitto
from iotiam.config import write_private_file
from iotiam.errors import SetupError
from iotiam.inventory.models import is_identifier, is_reserved_id

#: the agent's own login on its loopback listener: a reserved name no device may take
#: (the log parser drops its lines, ``broker.events``)
AGENT_USERNAME = "iotiam-gateway-agent"
_PASSWORD_ITERATIONS = 10_000
#: where the agent leaves a child its next key (retained; only that child reads it)
NEXT_KEY_TOPIC = "devices/{child}/psk/next"
KICK_SECONDS = 5.0


@dataclass(frozen=True)
class LocalChild:
    """One child as the local broker serves it."""

    child_id: str
    identity: str
    key: bytes = field(repr=False)
    #: the PSK's id, and whether it is the child's next key (not part of the key's
    #: identity: a next key promoted to current is the same key, not a re-key)
    psk_id: str = field(default="", compare=False)
    next: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class ChildListenerConfig:
    """Where the gateway's broker listens."""

    #: the children's TLS-PSK listener (the gateway's own network)
    host: str = "0.0.0.0"  # noqa: S104 - children reach the gateway over its LAN
    port: int = 8884
    #: the agent's login, loopback only
    local_port: int = 18884


@dataclass(frozen=True)
class Installed:
    """What one install changed: identities that left, and those whose key changed."""

    removed: tuple[str, ...]
    rekeyed: tuple[str, ...]
    children: int

    @property
    def to_kick(self) -> tuple[str, ...]:
        """Sessions that must end now: their key is no longer valid."""
        return (*self.removed, *self.rekeyed)


def checked_children(children: Sequence[LocalChild]) -> list[LocalChild]:
    """``children`` sorted, or SetupError: an identity or id that is no inventory id
    would write another line into the broker's files."""
    seen: set[str] = set()
    for child in children:
        for value in (child.child_id, child.identity):
            if not is_identifier(value) or is_reserved_id(value):
                raise SetupError(f"refusing child {value!r}: not a device id")
        if child.identity in seen:
            raise SetupError(f"PSK identity {child.identity!r} is listed twice")
        seen.add(child.identity)
        if len(child.key) < 16:
            raise SetupError(f"the key of {child.identity!r} is too short")
    return sorted(children, key=lambda c: c.identity)


def render_psk_file(children: Sequence[LocalChild]) -> str:
    """``identity:hexkey`` a line."""
    return "".join(f"{c.identity}:{c.key.hex()}\n" for c in checked_children(children))


def render_acl(children: Sequence[LocalChild]) -> str:
    """Each child its own ``devices/<child>/...`` topics (with either of its keys); the
    agent reads them all and writes the children's next keys (``NEXT_KEY_TOPIC``)."""
    lines = [f"user {AGENT_USERNAME}", "topic read devices/#",
             f"topic write {NEXT_KEY_TOPIC.format(child='+')}", ""]
    for child in checked_children(children):
        lines += [f"user {child.identity}", f"topic readwrite devices/{child.child_id}/#", ""]
    return "\n".join(lines)


def password_entry(username: str, password: str, salt: bytes | None = None) -> str:
    """One ``password_file`` line in Mosquitto 2.0's ``$7$`` (PBKDF2-SHA512) format, as
    ``mosquitto_passwd`` writes it, so the password never appears on a command line."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PASSWORD_ITERATIONS)
    return (f"{username}:$7${_PASSWORD_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}\n")


def render_listener_config(config: ChildListenerConfig, files: BrokerFiles,
                           event_log: str = "messages") -> str:
    """mosquitto.conf of the gateway's broker (``event_log`` as for the managed broker:
    at ``messages`` each publish's topic and size, and refused ones, are logged too)."""
    return "\n".join([
        "# written by iotiam-agent gateway: edits are overwritten",
        "per_listener_settings false",
        "allow_anonymous false",
        "persistence false",
        f"user {getpass.getuser()}",
        "set_tcp_nodelay true",
        f"log_dest file {files.log}",
        *(f"log_type {kind}" for kind in log_types(event_log)),
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S%z",
        f"psk_file {files.psk_file}",
        f"acl_file {files.acl}",
        f"password_file {files.passwords}",
        "",
        "# the agent: loopback only, password",
        f"listener {config.local_port} 127.0.0.1",
        "",
        "# the children: PSK identity = username = client id",
        f"listener {config.port} {config.host}",
        f"psk_hint {PSK_HINT}",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "tls_version tlsv1.2",
        "",
    ])


class ChildListener:
    """The gateway's broker process and the children it serves."""

    def __init__(self, binary: Path, config: ChildListenerConfig, root: Path) -> None:
        self.config = config
        self.files = BrokerFiles(root)
        #: the agent's loopback password, new at every start (never on a command line)
        self.password = secrets.token_urlsafe(24)
        self._installed: dict[str, LocalChild] = {}
        self._broker = ManagedMosquitto(
            binary, BrokerConfig(host=config.host, psk_port=config.port,
                                 admin_port=config.local_port), self.files,
            listeners=[("children's TLS-PSK", config.host, config.port),
                       ("agent", "127.0.0.1", config.local_port)])

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._broker.pid

    @property
    def children(self) -> dict[str, LocalChild]:
        """The children installed now, by PSK identity."""
        return dict(self._installed)

    def start(self) -> None:
        """Write the files (no child yet) and start the broker."""
        self.files.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(self.files.passwords, password_entry(AGENT_USERNAME,
                                                                self.password))
        write_private_file(self.files.psk_file, render_psk_file(list(
            self._installed.values())))
        write_private_file(self.files.acl, render_acl(list(self._installed.values())))
        write_private_file(self.files.config, render_listener_config(self.config,
                                                                     self.files))
        self._broker.start()

    def install(self, children: Sequence[LocalChild]) -> Installed:
        """Serve exactly ``children``: files replaced, SIGHUP when anything changed. The
        caller kicks ``to_kick`` (``kick``)."""
        wanted = {c.identity: c for c in checked_children(children)}
        removed = tuple(sorted(set(self._installed) - set(wanted)))
        rekeyed = tuple(sorted(i for i, c in wanted.items() if i in self._installed
                               and self._installed[i] != c))
        added = set(wanted) - set(self._installed)
        if not (removed or rekeyed or added):
            self._installed = wanted  # a next key promoted is the same key: no reload
            return Installed(removed, rekeyed, len(wanted))
        write_private_file(self.files.psk_file, render_psk_file(children))
        write_private_file(self.files.acl, render_acl(children))
        self._installed = wanted
        self._broker.reload()
        return Installed(removed, rekeyed, len(wanted))

    def kick(self, identity: str) -> bool:
        """End the session of client ``identity``, if any, by taking over its client id
        (MQTT 3.1.1 §3.1.4); whether the broker accepted the takeover."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=identity,
                             clean_session=True)
        client.username_pw_set(AGENT_USERNAME, self.password)
        try:
            code = client.connect("127.0.0.1", self.config.local_port, keepalive=10)
            if code != mqtt.MQTT_ERR_SUCCESS:
                return False
            client.loop_start()
            connected = wait_connected(client)
            client.disconnect()
            client.loop_stop()
            return connected
        except OSError:
            return False

    def ensure_running(self) -> bool:
        """Restart a broker that died; True when it had to."""
        return self._broker.ensure_running()

    def stop(self) -> None:
        """Stop the broker."""
        self._broker.stop()

    def log_tail(self) -> str:
        """The end of the broker's log."""
        return self._broker.log_tail()



def wait_connected(client: mqtt.Client, seconds: float = KICK_SECONDS) -> bool:
    """Whether a paho client (its loop running) is connected within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.is_connected():
            return True
        time.sleep(0.01)
    return False
