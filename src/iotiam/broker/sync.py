"""Keep the broker's dynamic-security state equal to what policy and inventory decide.

Each device is one dynsec client (username = its certificate CN / PSK identity = its
id) holding three roles (``iotiam.broker.roles``): the denies and the allows it shares
with its class-mates, and its own role with the entries naming it. The sync is:

* **full** at start, after the broker restarts and after a policy change: the broker's
  own ``listClients`` / ``listRoles`` are compared with the desired state and only
  differences are sent. A policy attached to a type, a group or the root edits the
  roles of a few classes (``modifyRole``, which kicks nobody); the broker is never
  restarted for it, however large the fleet (G11);
* **incremental** on change: published changes (``follow``, fed by the change feed)
  queue their devices and wake the loop at once; a poll of devices' ``updated_at`` every
  ``SAFETY_NET_SECONDS`` catches a change that was not published. Devices whose state,
  attributes or policies changed get their own role or class fixed; devices that lost a
  credential are kicked (the client is deleted and, if it may still connect with another
  credential, created again), after the new CRL is installed, so the reconnect with the
  revoked certificate fails;
* **timed**: an ACL that depends on a time window is recomputed when the window flips.

Every command is idempotent, so repeating a sync after a failure is always safe; a
failed sync leaves its devices queued and is retried (nothing lost, G3). The broker is
restarted only when it is dead: its process gone, or no reaction to the liveness probe
at ``DEAD_AFTER`` health checks in a row; never because a change is large or slow.
Revocations go first; other queued devices are worked through ``PASS_SECONDS`` at a
time, in messages of ``SECONDS_PER_MESSAGE`` of plugin work.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from iotiam.broker.dynsec import BrokerUnavailable, DynsecAdmin, DynsecError
from iotiam.broker.installed_files import BrokerFileInstaller
from iotiam.broker.layout import ADMIN_USERNAME, BrokerFiles, admin_acls, dynsec_seed
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.provision import admin_password
from iotiam.broker.roles import (
    Acl,
    ClassPlan,
    DeviceRights,
    broker_state,
    class_commands,
    class_held,
    class_role_contents,
    classes_on_broker,
    client_roles,
    device_commands,
    laid_out_state,
    overlay,
    own_role,
    plan_classes,
    role_set,
    split_rights,
    stale_commands,
)
from iotiam.broker.sync_ports import FleetSource, SyncReport, Updates
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    PolicyChanged,
    Published,
    TrustChanged,
)
from iotiam.clock import Clock
from iotiam.config import write_private_file
from iotiam.errors import IamError
from iotiam.policy.broker_acl import BrokerAcl

log = logging.getLogger("iotiam.broker")

#: how often the loop looks at its queue and its time windows (changes published on the
#: change feed wake it at once)
POLL_SECONDS = 0.1
#: how often it also asks the store what changed (devices' ``updated_at``, the policy
#: generation): the safety net under the change feed
SAFETY_NET_SECONDS = 1.0
#: how often it checks the broker is alive and the admin link is up
HEALTH_SECONDS = 2.0
#: health checks in a row the broker must fail its liveness probe (``answers``) before
#: it is taken for dead and restarted; a busy one answers between two messages
DEAD_AFTER = 3
#: Mosquitto 2.0's plugin rewrites its whole state file after every command: 22 µs per
#: device in it, measured here with 2,000 devices of ~10 ACLs (1 MB). The broker does
#: nothing else meanwhile, so a message holds about this many seconds of commands:
#: devices wait no longer, and answers come often enough to tell busy from dead
SECONDS_PER_MESSAGE = 0.5
#: how long one pass of the loop works through queued devices before it looks again for
#: revocations (which go first)
PASS_SECONDS = 1.0
REWRITE_SECONDS_PER_DEVICE = 25e-6


def _acls(acl: BrokerAcl) -> frozenset[Acl]:
    return frozenset((str(e.acltype), e.topic, e.priority, e.allow) for e in acl.entries)


class BrokerSync:
    """The one writer of the broker's dynsec state, CRL and PSK file."""

    def __init__(
        self,
        fleet: FleetSource,
        clock: Clock,
        files: BrokerFiles,
        connect_admin: Callable[[], DynsecAdmin],
        broker: ManagedMosquitto | None,
        own_certificate: Callable[[], bool] | None = None,
    ) -> None:
        """``own_certificate``: renews the broker's certificate (``BrokerFileInstaller``)."""
        self._fleet = fleet
        self._clock = clock
        self._files = files
        self._connect_admin = connect_admin
        self._broker = broker
        self._admin: DynsecAdmin | None = None
        self._lock = threading.RLock()
        #: what the broker holds, per device: its role's ACLs (None: no client)
        self._known: dict[str, frozenset[Acl]] = {}
        #: each device's class, every class's shared ACLs, every role's ACLs (as sent)
        self._members: dict[str, str] = {}
        self._classes: dict[str, frozenset[Acl]] = {}
        self._roles: dict[str, frozenset[Acl]] = {}
        self._timers: dict[str, datetime] = {}
        #: the queue alone: a revoking request never waits for a sync in progress
        self._queue_lock = threading.Lock()
        self._pending: set[str] = set()
        self._pending_kicks: set[str] = set()
        #: when the queue last went from empty to not (``time.monotonic``)
        self._pending_since: float | None = None
        self._needs_full = True
        #: liveness probes in a row the broker did not answer
        self._silent = 0
        self._generation_seen = -1
        self._files_installer = BrokerFileInstaller(fleet, clock, files, broker,
                                                    own_certificate=own_certificate)
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
        with self._queue_lock:
            ids = set(device_ids)
            if ids and self._pending_since is None:
                self._pending_since = time.monotonic()
            self._pending |= ids
            if kick:
                self._pending_kicks |= ids
        self.wake.set()

    def backlog(self) -> tuple[int, float]:
        """Devices queued for the next pass, and how long the oldest has waited (s)."""
        with self._queue_lock:
            since = self._pending_since
            return len(self._pending), 0.0 if since is None else time.monotonic() - since

    def follow(self, published: Published) -> None:
        """Act on a published change (subscribed to the change feed in ``bootstrap.py``):
        a revoked credential kicks its device at once (G3), a changed device or trust
        score re-syncs it, a policy change re-syncs everything."""
        change = published.change
        if isinstance(change, CertificateRevoked | CredentialRevoked):
            if change.device_id is not None:
                self.request([change.device_id], kick=True)
        elif isinstance(change, DeviceChanged | TrustChanged):
            self.request(change.device_ids)
        elif isinstance(change, PolicyChanged):
            self._needs_full = True
            self.wake.set()

    # -- files the broker reads on SIGHUP -----------------------------------------------

    def install_files(self) -> bool:
        """Verify and install a changed CRL or PSK file, then SIGHUP; True if reloaded."""
        return self._files_installer.install()

    # -- syncing -----------------------------------------------------------------------

    def full_sync(self) -> SyncReport:
        """Compare the broker's state with the desired one and send only the differences.

        However many devices a change touches, nothing is restarted: shared rights are
        edited once per class (``modifyRole``: no session dropped) and the commands go
        to the plugin in pipelined batches.
        """
        with self._lock:
            admin = self._link()
            clients, roles = broker_state(admin)
            desired, timers = self._desired()
            classes = classes_on_broker(roles)
            # only devices that stay: one being deleted must not hold its class back
            members = {device: name for device, held in clients.items()
                       if device in desired and (name := class_held(device, held)) in classes}
            plan = plan_classes(classes, members,
                                {d: rights.shared for d, rights in desired.items()})
            report = SyncReport()
            commands = self._class_edits(plan.contents, roles, report)
            desired = _with_overlays(desired, plan)
            for device_id, rights in desired.items():
                commands += _counted(report, *device_commands(
                    device_id, rights, roles.get(own_role(device_id)),
                    plan.members[device_id], clients.get(device_id)))
            stale = stale_commands(clients, roles, desired, plan.contents, ADMIN_USERNAME)
            report.removed = sum(c["command"] == "deleteClient" for c in stale)
            commands += stale
            report.unchanged = len(desired) - report.created - report.updated
            admin.check(commands, tolerate=("already exists", "not found"),
                        chunk=self._chunk(len(desired)))
            report.commands = len(commands)
            self._known = {d: rights.shared | rights.own for d, rights in desired.items()}
            self._members = dict(plan.members)
            self._classes = dict(plan.contents)
            self._roles = {**class_role_contents(plan.contents),
                           **{own_role(d): rights.own for d, rights in desired.items()}}
            self._timers = timers
            self._needs_full = False
            return report

    @staticmethod
    def _chunk(devices: int) -> int:
        """Commands per message for a broker holding about this many devices."""
        return int(SECONDS_PER_MESSAGE / (REWRITE_SECONDS_PER_DEVICE * max(devices, 1)))

    def _desired(self) -> tuple[dict[str, DeviceRights], dict[str, datetime]]:
        desired: dict[str, DeviceRights] = {}
        timers: dict[str, datetime] = {}
        for acl in self._fleet.all_acls():
            if acl.valid_until is not None:
                timers[acl.device_id] = acl.valid_until
            if acl.can_connect:
                desired[acl.device_id] = split_rights(acl.device_id, _acls(acl),
                                                     acl.speaks_for)
        return desired, timers

    @staticmethod
    def _class_edits(contents: dict[str, frozenset[Acl]], roles: dict[str, frozenset[Acl]],
                     report: SyncReport) -> list[dict[str, Any]]:
        commands: list[dict[str, Any]] = []
        for name, content in sorted(contents.items()):
            edits = class_commands(name, roles, content)
            report.roles_edited += sum(c["command"] == "modifyRole" for c in edits)
            commands += edits
        return commands

    def cold_start(self) -> SyncReport:
        """Start a stopped broker with the whole desired state already in its dynsec file.

        Mosquitto 2.0's plugin rewrites its JSON file after every command, so creating
        10k clients one command at a time is quadratic; written before the start, the
        same state loads in well under a second. The result is then checked against the
        broker's own ``listClients`` / ``listRoles`` like any full sync. Used at start
        and when the broker died, never for a change.
        """
        if self._broker is None:
            return self.full_sync()
        with self._lock:
            self.close()
            self._broker.stop()
            desired, _ = self._desired()
            state = laid_out_state(stored_dynsec_state(self._files), ADMIN_USERNAME, desired)
            write_private_file(self._files.dynsec, json.dumps(state))
            self._files_installer.forget()
            self.install_files()
            self._broker.start()
            self._generation_seen = self._broker.generation
            report = self.full_sync()
            report.created = len(desired)
            return report

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
            wanted: dict[str, DeviceRights] = {}
            gone: list[str] = []
            todo = set(device_ids) | kicked
            # a gateway's ACL carries its children's topics: it follows their changes
            for device_id in sorted(todo | self._fleet.gateways_for(todo)):
                acl = self._fleet.broker_acl(device_id)
                if acl is not None and acl.valid_until is not None:
                    self._timers[device_id] = acl.valid_until
                else:
                    self._timers.pop(device_id, None)
                if acl is not None and acl.can_connect:
                    wanted[device_id] = split_rights(device_id, _acls(acl), acl.speaks_for)
                    continue
                if device_id in self._known or device_id in kicked:
                    commands += [{"command": "deleteClient", "username": device_id},
                                 {"command": "deleteRole", "rolename": own_role(device_id)}]
                    report.removed += 1
                gone.append(device_id)
            members = {d: c for d, c in self._members.items() if d not in gone}
            plan = plan_classes(self._classes, members,
                                {d: rights.shared for d, rights in wanted.items()})
            commands += self._class_edits(plan.contents, self._roles, report)
            wanted = _with_overlays(wanted, plan)
            for device_id, rights in wanted.items():
                held = self._held(device_id)
                if device_id in kicked and held is not None:
                    # deleting the client drops its session; its other credentials still work
                    commands.append({"command": "deleteClient", "username": device_id})
                    report.kicked += 1
                    report.created -= 1  # counted below, but it is not a new device
                    held = None
                commands += _counted(report, *device_commands(
                    device_id, rights, self._roles.get(own_role(device_id)),
                    plan.members[device_id], held))
            admin.check(commands, tolerate=("already exists", "not found"),
                        chunk=self._chunk(len(self._known) + len(wanted)))
            report.commands = len(commands)
            self._remember(gone, wanted, plan.members, plan.contents)
            return report

    def _held(self, device_id: str) -> set[tuple[str, int]] | None:
        """The roles this process last gave the device's client (None: no client)."""
        if device_id not in self._known:
            return None
        return role_set(client_roles(device_id, self._members[device_id]))

    def _remember(self, gone: Iterable[str], wanted: dict[str, DeviceRights],
                  members: dict[str, str], contents: dict[str, frozenset[Acl]]) -> None:
        for device_id in gone:
            self._known.pop(device_id, None)
            self._members.pop(device_id, None)
            self._roles.pop(own_role(device_id), None)
        for device_id, rights in wanted.items():
            self._known[device_id] = rights.shared | rights.own
            self._roles[own_role(device_id)] = rights.own
        self._members.update(members)
        self._classes.update(contents)
        self._roles.update(class_role_contents(contents))

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
        """Keep the broker in step with what the change feed and the store say."""
        since = self._clock.now()
        next_health = next_look = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + HEALTH_SECONDS
                    self._check_broker(stop)
                look = time.monotonic() >= next_look
                if look:
                    next_look = time.monotonic() + SAFETY_NET_SECONDS
                since = self._pass(since, look=look)
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
        """Restart a dead broker; after any (re)start, resync everything and the files.

        Dead means its process is gone, or it has not answered a CONNECT on its admin
        port at ``DEAD_AFTER`` checks in a row; a broker busy with a large change answers
        between two messages of commands, so it is never restarted for being slow.
        """
        if self._broker is not None and not (stop is not None and stop.is_set()):
            if self._broker.pid is None:
                log.warning("mosquitto is not running; starting it again with the full state")
                self.cold_start()
            elif self._broker.answers():
                self._silent = 0
            else:
                self._silent += 1
                if self._silent >= DEAD_AFTER:
                    log.warning("mosquitto (pid %s) has not answered %d liveness probes; "
                                "restarting it with the full state", self._broker.pid,
                                self._silent)
                    self._silent = 0
                    self.cold_start()
        self.install_files()

    def _sync_slices(self, todo: list[str]) -> None:
        """Sync these devices a slice at a time; what is left after ``PASS_SECONDS`` waits
        for the next pass, so a revocation behind a mass enrolment still goes first (G3)."""
        deadline = time.monotonic() + PASS_SECONDS
        size = max(1, self._chunk(len(self._known)) // 2)  # ~2 commands per new device
        while todo:
            batch, todo = todo[:size], todo[size:]
            self.sync_devices(batch)
            if todo and time.monotonic() >= deadline:
                self.request(todo)
                return

    def _pass(self, since: datetime, *, look: bool = True) -> datetime:
        changes = self._fleet.updates_since(since) if look else Updates()
        with self._queue_lock:
            pending, self._pending = self._pending | changes.changed, set()
            kicks, self._pending_kicks = self._pending_kicks, set()
            self._pending_since = None
            if changes.policies_changed:
                self._needs_full = True
        kicked = False
        try:
            if kicks:
                # the CRL first: a kicked device must not get back in with that certificate
                self.install_files()
                # and revocations on their own: no queue of other changes delays them (G3)
                self.sync_devices(kicks, kick=kicks)
                kicked = True
            if self._needs_full:
                log.info("broker full sync: %s", self.full_sync())
                pending -= set(self._known)
            pending |= set(self.due(self._clock.now()))
            self._sync_slices(sorted(pending - kicks))
        except Exception:
            self.request(pending)
            if not kicked:
                self.request(kicks, kick=True)
            raise
        return changes.until or since


def stored_dynsec_state(files: BrokerFiles) -> dict[str, Any]:
    """A stopped broker's dynsec file; the seed (its admin only) if the broker died while
    rewriting it, as it does after every command (the fleet is written anew)."""
    try:
        state = json.loads(files.dynsec.read_text())
        if isinstance(state, dict):
            for role in state.get("roles", []):
                if isinstance(role, dict) and role.get("rolename") == ADMIN_USERNAME:
                    role["acls"] = admin_acls()  # what this iotiam's admin needs
            return state
    except (OSError, ValueError):
        pass
    log.warning("the broker's dynsec file is unreadable; rebuilding it from the seed")
    seeded: dict[str, Any] = json.loads(dynsec_seed(admin_password(files)))
    return seeded


def _with_overlays(desired: dict[str, DeviceRights], plan: ClassPlan
                   ) -> dict[str, DeviceRights]:
    """Each device's own role made to carry what it wants beyond its class."""
    return {d: DeviceRights(plan.contents[plan.members[d]],
                            rights.own | overlay(rights.shared, plan.contents[plan.members[d]]))
            for d, rights in desired.items()}


def _counted(report: SyncReport, commands: list[dict[str, Any]], outcome: str
             ) -> list[dict[str, Any]]:
    if outcome == "created":
        report.created += 1
    elif outcome == "updated":
        report.updated += 1
    return commands
