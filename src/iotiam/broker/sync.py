"""Keep the broker's dynamic-security state equal to what policy and inventory decide.

Each device is one dynsec client (username = its certificate CN / PSK identity = its
id) with one role holding its compiled ACLs. The sync is:

* **full** at start and after the broker restarts: the broker's own ``listClients`` /
  ``listRoles`` are compared with the desired state and only differences are sent;
* **incremental** on change: devices whose state, attributes or policies changed get
  their role's ACLs patched; devices that lost a credential are kicked (the client is
  deleted and, if it may still connect with another credential, created again), after
  the new CRL is installed, so the reconnect with the revoked certificate fails at TLS;
* **timed**: an ACL that depends on a time window is recomputed when the window flips.

Every command is idempotent, so repeating a sync after a failure is always safe; a
failed sync leaves its devices queued and is retried (nothing lost, G3).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.broker.dynsec import BrokerUnavailable, DynsecAdmin, DynsecError
from iotiam.broker.layout import ADMIN_USERNAME, BrokerFiles, dynsec_seed
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.provision import admin_password
from iotiam.clock import Clock
from iotiam.config import write_private_file
from iotiam.errors import IamError, InvalidInput
from iotiam.pki.crl import verify_crl
from iotiam.policy.broker_acl import BrokerAcl

log = logging.getLogger("iotiam.broker")

#: how often the loop looks for changes made by any iotiam process
POLL_SECONDS = 0.1
#: how often it checks the broker is alive and the admin link is up
HEALTH_SECONDS = 2.0
#: Mosquitto 2.0's dynsec plugin rewrites its whole file after every command (~9 µs per
#: device in it, measured); when commands x devices passes this (~10 s of rewriting), a
#: restart with the state written first is far quicker
RESTART_ABOVE = 1_000_000

Acl = tuple[str, str, int, bool]  # acltype, topic, priority, allow


class FleetSource(Protocol):
    """What the sync needs to know about the fleet."""

    def broker_acl(self, device_id: str) -> BrokerAcl | None:
        """The device's compiled ACLs now; None if it is unknown to the inventory."""
        ...

    def all_acls(self) -> Iterable[BrokerAcl]:
        """The ACLs of every device that may have a broker identity."""
        ...

    def files_version(self) -> tuple[object, ...]:
        """Cheap: changes whenever the CRL or the PSK file must be reinstalled."""
        ...

    def changes_since(self, since: datetime) -> Changes:
        """Devices changed, and devices that lost a credential, after ``since``."""
        ...

    def crl_pem(self) -> bytes:
        """The issuing CA's current CRL (PEM)."""
        ...

    def issuer_certificate(self) -> x509.Certificate:
        """The CA whose CRL the broker checks."""
        ...

    def psk_file(self) -> str:
        """Mosquitto ``psk_file`` content for every live PSK."""
        ...


@dataclass
class Changes:
    """What changed in a window, and the watermark to ask from next time."""

    changed: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    policies_changed: bool = False
    until: datetime | None = None


@dataclass
class SyncReport:
    """What one sync sent."""

    created: int = 0
    updated: int = 0
    removed: int = 0
    kicked: int = 0
    unchanged: int = 0
    commands: int = 0


def role_name(device_id: str) -> str:
    """The dynsec role holding a device's ACLs."""
    return f"device:{device_id}"


def _acls(acl: BrokerAcl) -> frozenset[Acl]:
    return frozenset((str(e.acltype), e.topic, e.priority, e.allow) for e in acl.entries)


def _acl_json(acl: Acl) -> dict[str, Any]:
    return {"acltype": acl[0], "topic": acl[1], "priority": acl[2], "allow": acl[3]}


class BrokerSync:
    """The one writer of the broker's dynsec state, CRL and PSK file."""

    def __init__(
        self,
        fleet: FleetSource,
        clock: Clock,
        files: BrokerFiles,
        connect_admin: Callable[[], DynsecAdmin],
        broker: ManagedMosquitto | None,
    ) -> None:
        self._fleet = fleet
        self._clock = clock
        self._files = files
        self._connect_admin = connect_admin
        self._broker = broker
        self._admin: DynsecAdmin | None = None
        self._lock = threading.RLock()
        #: what the broker holds, per device: its role's ACLs (None: no client)
        self._known: dict[str, frozenset[Acl]] = {}
        self._timers: dict[str, datetime] = {}
        self._pending: set[str] = set()
        self._pending_kicks: set[str] = set()
        self._needs_full = True
        self._generation_seen = -1
        self._crl_installed: bytes | None = None
        self._psk_installed: str | None = None
        self._files_version: tuple[object, ...] | None = None
        self.wake = threading.Event()

    # -- admin link --------------------------------------------------------------------

    def _link(self) -> DynsecAdmin:
        if self._admin is None or not self._admin.connected:
            if self._admin is not None:
                self._admin.close()
            self._admin = None
            self._admin = self._connect_admin()
        return self._admin

    def close(self) -> None:
        """Drop the admin link."""
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None

    # -- requests from the control plane -----------------------------------------------

    def request(self, device_ids: Iterable[str], *, kick: bool = False) -> None:
        """Queue devices for the next pass (kick: a credential of theirs was revoked)."""
        with self._lock:
            ids = set(device_ids)
            self._pending |= ids
            if kick:
                self._pending_kicks |= ids
        self.wake.set()

    # -- files the broker reads on SIGHUP -----------------------------------------------

    def install_files(self) -> bool:
        """Verify and install a changed CRL or PSK file, then SIGHUP; True if reloaded."""
        version = self._fleet.files_version()
        if version == self._files_version:
            return False
        crl = self._fleet.crl_pem()
        psks = self._fleet.psk_file()
        changed = False
        if crl != self._crl_installed:
            checked_crl(crl, self._fleet.issuer_certificate(), self._clock.now())
            write_private_file(self._files.crl, crl)
            self._crl_installed = crl
            changed = True
        if psks != self._psk_installed:
            write_private_file(self._files.psk_file, psks)
            self._psk_installed = psks
            changed = True
        if changed and self._broker is not None:
            self._broker.reload()
        self._files_version = version
        return changed

    # -- syncing -----------------------------------------------------------------------

    def full_sync(self, *, allow_restart: bool = True) -> SyncReport:
        """Compare the broker's state with the desired one and send the differences.

        When the commands would keep the plugin busy for long (``RESTART_ABOVE``: a policy
        change for a large fleet), a managed broker is restarted with the state written
        first instead; devices reconnect within their retry interval.
        """
        with self._lock:
            admin = self._link()
            clients, roles = _broker_state(admin)
            desired: dict[str, frozenset[Acl]] = {}
            timers: dict[str, datetime] = {}
            for acl in self._fleet.all_acls():
                device_id = acl.device_id
                if acl.valid_until is not None:
                    timers[device_id] = acl.valid_until
                if acl.can_connect:
                    desired[device_id] = _acls(acl)
            report = SyncReport()
            commands: list[dict[str, Any]] = []
            for device_id, acls in desired.items():
                role = role_name(device_id)
                commands += _role_commands(role, roles.get(role), acls, report)
                if device_id not in clients:
                    commands.append({"command": "createClient", "username": device_id,
                                     "roles": [{"rolename": role}]})
                    report.created += 1
                elif role not in clients[device_id]:
                    commands.append({"command": "addClientRole", "username": device_id,
                                     "rolename": role})
            for username in clients.keys() - desired.keys() - {ADMIN_USERNAME}:
                commands.append({"command": "deleteClient", "username": username})
                report.removed += 1
            # the admin's own roles stay, whatever their names: an external broker's
            # admin made by `mosquitto_ctrl dynsec init` holds a role named "admin"
            admin_roles = clients.get(ADMIN_USERNAME, set()) | {ADMIN_USERNAME}
            for role in roles.keys() - {role_name(d) for d in desired} - admin_roles:
                commands.append({"command": "deleteRole", "rolename": role})
            report.unchanged = len(desired) - report.created - report.updated
            if (allow_restart and self._broker is not None
                    and len(commands) * max(len(desired), 1) > RESTART_ABOVE):
                log.warning("%d broker changes: restarting it with the new state instead",
                            len(commands))
                return self.cold_start()
            admin.check(commands, tolerate=("already exists", "not found"))
            report.commands = len(commands)
            self._known = desired
            self._timers = timers
            self._needs_full = False
            return report

    def cold_start(self) -> SyncReport:
        """Start a stopped broker with the whole desired state already in its dynsec file.

        Mosquitto 2.0's plugin rewrites its JSON file after every command, so creating
        10k clients one command at a time is quadratic; written before the start, the
        same state loads in well under a second. The result is then checked against the
        broker's own ``listClients`` / ``listRoles`` like any full sync.
        """
        if self._broker is None:
            return self.full_sync()
        with self._lock:
            self.close()
            self._broker.stop()
            acls = list(self._fleet.all_acls())
            state = self._dynsec_state()
            keep_clients = [c for c in state.get("clients", [])
                            if c.get("username") == ADMIN_USERNAME]
            keep_roles = [r for r in state.get("roles", []) if r.get("rolename") == ADMIN_USERNAME]
            allowed = [a for a in acls if a.can_connect]
            state["clients"] = keep_clients + [
                {"username": a.device_id, "roles": [{"rolename": role_name(a.device_id)}]}
                for a in allowed]
            state["roles"] = keep_roles + [
                {"rolename": role_name(a.device_id),
                 "acls": [_acl_json(x) for x in sorted(_acls(a))]} for a in allowed]
            write_private_file(self._files.dynsec, json.dumps(state))
            self._crl_installed = self._psk_installed = self._files_version = None
            self.install_files()
            self._broker.start()
            self._generation_seen = self._broker.generation
            report = self.full_sync(allow_restart=False)
            report.created = len(allowed)
            return report

    def _dynsec_state(self) -> dict[str, Any]:
        """The stopped broker's dynsec file; the seed (its admin only) if the broker died
        while rewriting it, as it does after every command (the fleet is written anew)."""
        try:
            state = json.loads(self._files.dynsec.read_text())
            if isinstance(state, dict):
                return state
        except (OSError, ValueError):
            pass
        log.warning("the broker's dynsec file is unreadable; rebuilding it from the seed")
        seeded: dict[str, Any] = json.loads(dynsec_seed(admin_password(self._files)))
        return seeded

    def sync_devices(self, device_ids: Iterable[str], *, kick: Iterable[str] = ()
                     ) -> SyncReport:
        """Bring these devices' clients and roles up to date (kick: drop live sessions)."""
        with self._lock:
            if self._needs_full:
                self.full_sync()
            admin = self._link()
            kicked = set(kick)
            report = SyncReport()
            commands: list[dict[str, Any]] = []
            known: dict[str, frozenset[Acl] | None] = {}
            for device_id in sorted(set(device_ids) | kicked):
                acl = self._fleet.broker_acl(device_id)
                had = self._known.get(device_id)
                want = _acls(acl) if acl is not None and acl.can_connect else None
                if acl is not None and acl.valid_until is not None:
                    self._timers[device_id] = acl.valid_until
                else:
                    self._timers.pop(device_id, None)
                role = role_name(device_id)
                if want is None:
                    if had is not None or device_id in kicked:
                        commands += [{"command": "deleteClient", "username": device_id},
                                     {"command": "deleteRole", "rolename": role}]
                        report.removed += 1
                    known[device_id] = None
                    continue
                if device_id in kicked and had is not None:
                    # deleting the client drops its session; its other credentials still work
                    commands.append({"command": "deleteClient", "username": device_id})
                    report.kicked += 1
                    had_client = False
                else:
                    had_client = had is not None
                commands += _role_commands(role, had, want, report)
                if not had_client:
                    commands.append({"command": "createClient", "username": device_id,
                                     "roles": [{"rolename": role}]})
                    if had is None:
                        report.created += 1
                known[device_id] = want
            admin.check(commands, tolerate=("already exists", "not found"))
            report.commands = len(commands)
            for device_id, acls in known.items():
                if acls is None:
                    self._known.pop(device_id, None)
                else:
                    self._known[device_id] = acls
            return report

    def due(self, now: datetime) -> list[str]:
        """Devices whose time-window ACLs must be recomputed."""
        with self._lock:
            return [d for d, at in self._timers.items() if at <= now]

    def known(self, device_id: str) -> frozenset[Acl] | None:
        """What this process last put on the broker for a device."""
        with self._lock:
            return self._known.get(device_id)

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll for changes made by any iotiam process and keep the broker in step."""
        since = self._clock.now()
        next_health = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + HEALTH_SECONDS
                    self._check_broker(stop)
                since = self._pass(since)
            except (BrokerUnavailable, DynsecError, OSError) as e:
                log.warning("broker sync failed, retrying: %s", e)
                with self._lock:
                    self._needs_full = True
                    if self._admin is not None:
                        self._admin.close()
                        self._admin = None
                stop.wait(1.0)
            except IamError as e:
                log.error("broker sync refused: %s", e)
                stop.wait(1.0)
            except Exception:  # a bug: logged, and the broker is still looked after
                log.exception("broker sync failed unexpectedly")
                with self._lock:
                    self._needs_full = True
                stop.wait(1.0)
            self.wake.wait(POLL_SECONDS)
            self.wake.clear()

    def _check_broker(self, stop: threading.Event | None = None) -> None:
        """Restart a dead broker; after any (re)start, resync everything and the files."""
        if (self._broker is not None and self._broker.pid is None
                and not (stop is not None and stop.is_set())):
            log.warning("mosquitto is not running; starting it again with the full state")
            self.cold_start()
        self.install_files()

    def _pass(self, since: datetime) -> datetime:
        changes = self._fleet.changes_since(since)
        with self._lock:
            pending, self._pending = self._pending | changes.changed, set()
            kicks, self._pending_kicks = self._pending_kicks | changes.revoked, set()
            if changes.policies_changed:
                self._needs_full = True
        try:
            if kicks:
                # the CRL first: a kicked device must not get back in with that certificate
                self.install_files()
            if self._needs_full:
                log.info("broker full sync: %s", self.full_sync())
                pending -= set(self._known) - kicks
            pending |= set(self.due(self._clock.now()))
            if pending or kicks:
                self.sync_devices(pending, kick=kicks)
        except Exception:
            self.request(pending)
            self.request(kicks, kick=True)
            raise
        return changes.until or since


def _broker_state(admin: DynsecAdmin) -> tuple[dict[str, set[str]], dict[str, frozenset[Acl]]]:
    clients_answer, roles_answer = admin.check([
        {"command": "listClients", "verbose": True, "count": -1},
        {"command": "listRoles", "verbose": True, "count": -1},
    ])
    clients = {
        c["username"]: {r["rolename"] for r in c.get("roles", [])}
        for c in clients_answer.get("data", {}).get("clients", [])
    }
    roles = {
        r["rolename"]: frozenset(
            (a["acltype"], a["topic"], int(a.get("priority", 0)), bool(a["allow"]))
            for a in r.get("acls", []))
        for r in roles_answer.get("data", {}).get("roles", [])
    }
    return clients, roles


def _role_commands(role: str, current: frozenset[Acl] | None, wanted: frozenset[Acl],
                   report: SyncReport) -> list[dict[str, Any]]:
    if current is None:
        return [{"command": "createRole", "rolename": role,
                 "acls": [_acl_json(a) for a in sorted(wanted)]}]
    if current == wanted:
        return []
    report.updated += 1
    # stale ones out first: a moment with fewer rights, never one with more
    stale = [{"command": "removeRoleACL", "rolename": role, "acltype": a[0], "topic": a[1]}
             for a in sorted(current - wanted)]
    fresh = [{"command": "addRoleACL", "rolename": role, **_acl_json(a)}
             for a in sorted(wanted - current)]
    return stale + fresh


def checked_crl(pem: bytes, issuer: x509.Certificate, now: datetime) -> None:
    """Refuse a CRL Mosquitto would fail open on (garbage) or lock everyone out with."""
    try:
        verify_crl(x509.load_pem_x509_crl(pem), issuer, now)
    except (ValueError, InvalidInput) as e:
        raise BrokerUnavailable(f"refusing to install this CRL on the broker: {e}") from e


def crl_to_pem(der: bytes) -> bytes:
    """DER CRL to PEM, as Mosquitto's ``crlfile`` wants it."""
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
