"""The managed broker when iotiam's plugin authorizes its devices (``--broker-auth plugin``).

Nothing about the fleet is written to the broker: the plugin asks the decision point
over ``DecisionSocket`` and caches the answers. What stays here is what the broker
still reads itself (the CRL and the PSK file, installed then SIGHUP), keeping the
broker alive (restarted only when it is dead, as with dynsec) and turning the change
feed into the plugin's pushes:

* a revoked credential: the new CRL first (a reconnect with that certificate then
  fails at TLS), then the device's answers are forgotten and its session dropped (G3).
  Both are done by a thread of their own, woken by the change (not the upkeep loop,
  whose safety net may be busy with thousands of changed devices): the revoking call
  does not wait for them, and the revocations of one transaction (a set revocation's batch of
  500 devices) cost one CRL check and install, then a kick each;
* a changed device or trust score: its answers are forgotten, and its session dropped
  if it may no longer connect at all (disabled, quarantined to nothing, retired);
* a policy change: every answer is forgotten. Nothing is rewritten, nobody is kicked
  (G11): the next publish of each device is decided on the new policy set.

As under the dynsec sync, a poll of devices' ``updated_at`` and of the policy generation
every ``SAFETY_NET_SECONDS`` catches a change that was not published (a restored backup,
a hand edit) and is treated like a published one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from iotiam.broker.decision_socket import DecisionSocket
from iotiam.broker.dynsec import BrokerUnavailable
from iotiam.broker.installed_files import BrokerFileInstaller
from iotiam.broker.layout import ADMIN_USERNAME, BrokerFiles
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.roles import laid_out_state
from iotiam.broker.sync import (
    DEAD_AFTER,
    HEALTH_SECONDS,
    SAFETY_NET_SECONDS,
    stored_dynsec_state,
)
from iotiam.broker.sync_ports import Updates
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    PolicyChanged,
    Published,
    TrustChanged,
)
from iotiam.clock import Clock, SystemClock
from iotiam.config import write_private_file
from iotiam.errors import IamError
from iotiam.gateways.models import in_reports_namespace
from iotiam.policy.actions import CONNECT
from iotiam.policy.models import Decision, Deny
from iotiam.policy.mqtt_requests import Decider, ForgettingSubjects, decide_mqtt_request

log = logging.getLogger("iotiam.broker")


class PluginAuthorization:
    """Keeps a plugin-authorized broker running and its plugin's cache truthful."""

    def __init__(self, files: BrokerFiles, installer: BrokerFileInstaller,
                 broker: ManagedMosquitto, socket: DecisionSocket,
                 may_connect: Callable[[Sequence[str]], set[str]], *,
                 updates: Callable[[datetime], Updates] | None = None,
                 reread: Callable[[str], None] | None = None, clock: Clock | None = None,
                 gateways_for: Callable[[Iterable[str]], set[str]] | None = None) -> None:
        self._files = files
        #: a gateway's answers name its children's topics: they follow the children
        self._gateways_for = gateways_for
        self._updates = updates
        self._reread = reread
        self._clock = clock or SystemClock()
        self._installer = installer
        self._broker = broker
        self._socket = socket
        self._may_connect = may_connect
        self._silent = 0
        self._lock = threading.Lock()
        self.wake = threading.Event()
        #: devices whose credential was revoked, to kick once the CRL is installed
        self._revoked: set[str] = set()
        self._revoked_lock = threading.Lock()
        self._revoked_wake = threading.Event()

    def follow(self, published: Published) -> None:
        """Act on a published change (subscribed to the change feed in ``serving.py``)."""
        change = published.change
        if isinstance(change, CertificateRevoked | CredentialRevoked):
            if change.device_id is not None:
                with self._revoked_lock:
                    self._revoked.add(change.device_id)
                self._revoked_wake.set()
        elif isinstance(change, DeviceChanged | TrustChanged):
            self._devices_changed(change.device_ids)
        elif isinstance(change, PolicyChanged):
            self._socket.forget_all()

    def kick_revoked(self) -> None:
        """The CRL, then a kick for each device a revocation named since the last call."""
        with self._revoked_lock:
            revoked, self._revoked = self._revoked, set()
        if not revoked:
            return
        try:
            self._install_files()
        finally:
            # a CRL that cannot be installed now (the upkeep loop retries it) must not
            # keep the sessions: the decision point already denies them
            for device_id in sorted(revoked):
                self._socket.kick(device_id)
            self._forget_gateways(revoked)  # a gateway no longer speaks for them

    def _devices_changed(self, device_ids: Iterable[str]) -> None:
        device_ids = list(device_ids)
        allowed = self._may_connect(device_ids) if device_ids else set()
        for device_id in device_ids:
            if device_id in allowed:
                self._socket.forget(device_id)
            else:
                self._socket.kick(device_id)
        self._forget_gateways(device_ids)

    def _forget_gateways(self, device_ids: Iterable[str]) -> None:
        if self._gateways_for is not None:
            for gateway in sorted(self._gateways_for(device_ids)):
                self._socket.forget(gateway)

    def cold_start(self) -> str:
        """Start the broker with dynsec holding iotiam's admin alone, and the files."""
        with self._lock:
            self._broker.stop()
            state = laid_out_state(stored_dynsec_state(self._files), ADMIN_USERNAME, {})
            write_private_file(self._files.dynsec, json.dumps(state))
            self._installer.forget()
            self._installer.install()
            self._broker.start()
            return f"plugin authorization on {self._files.plugin_socket}"

    def run(self, stop: threading.Event) -> None:
        """Restart a dead broker, install changed files and act on unpublished changes
        until ``stop``."""
        kicker = threading.Thread(target=self._kick_loop, args=(stop,), daemon=True,
                                  name="broker-kicks")
        kicker.start()
        since = self._clock.now()
        next_health = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + HEALTH_SECONDS
                    self._check_broker()
                    self._install_files()
                since = self._safety_net(since)
            except (BrokerUnavailable, IamError, OSError) as e:
                log.warning("broker upkeep failed, retrying: %s", e)
            except Exception:  # a bug: logged, and the broker is still looked after
                log.exception("broker upkeep failed unexpectedly")
            self.wake.wait(SAFETY_NET_SECONDS)
            self.wake.clear()

    def _kick_loop(self, stop: threading.Event) -> None:
        """Kick the devices revocations name, as soon as they are queued, until ``stop``."""
        while not stop.is_set():
            self._revoked_wake.wait(SAFETY_NET_SECONDS)
            self._revoked_wake.clear()
            try:
                self.kick_revoked()
            except (BrokerUnavailable, IamError, OSError) as e:
                log.warning("installing the CRL before kicks failed, retried: %s", e)
            except Exception:  # a bug: logged, and the next revocation is kicked still
                log.exception("kicking revoked devices failed unexpectedly")

    def _safety_net(self, since: datetime) -> datetime:
        """Devices and policies that changed without a published change."""
        if self._updates is None:
            return since
        changes = self._updates(since)
        if changes.policies_changed:
            self._socket.forget_all()
        for device_id in changes.changed:
            if self._reread is not None:
                self._reread(device_id)  # the subject cache has not seen it either
        self._devices_changed(sorted(changes.changed))
        return changes.until or since

    def close(self) -> None:
        """Stop answering: the plugin then denies everything (fail closed)."""
        self._socket.stop()

    def _install_files(self) -> None:
        with self._lock:
            self._installer.install()

    def _check_broker(self) -> None:
        if self._broker.pid is None:
            log.warning("mosquitto is not running; starting it again")
            self.cold_start()
        elif self._broker.answers():
            self._silent = 0
        else:
            self._silent += 1
            if self._silent >= DEAD_AFTER:
                log.warning("mosquitto (pid %s) has not answered %d liveness probes; "
                            "restarting it", self._broker.pid, self._silent)
                self._silent = 0
                self.cold_start()


class Relays(Protocol):
    """Gateways speaking for their children (``gateways.service.Gateways``)."""

    def decide_relayed(self, gateway_id: str, action: str, topic: str, *,
                       source_ip: str | None = None) -> Decision | None:
        """The request judged as the child's the topic names, if it names a child of
        this gateway (None: it names none)."""
        ...

    def decide_report_topic(self, device_id: str, action: str, topic: str) -> Decision:
        """A request in the namespace kept for gateways' reports: only a gateway, on its
        own report and answer topics."""
        ...


class PdpAnswers:
    """The decision point as the plugin's socket asks it: one client's request, and
    whether a device may still connect at all."""

    def __init__(self, subjects: ForgettingSubjects, decisions: Decider,
                 relays: Relays | None = None) -> None:
        self._subjects = subjects
        self._decisions = decisions
        self._relays = relays

    def answer(self, username: str, action: str, source_ip: str | None, topic: str
               ) -> Decision:
        """Permit or Deny one publish, subscribe or receive; a gateway's request on a
        child's topic is judged as the child's; the namespace of gateways' reports is
        decided by its own rule, whatever the policies grant (docs/gateways.md)."""
        if in_reports_namespace(topic):
            if self._relays is None:
                return Deny("the namespace of gateways' reports is closed here")
            return self._relays.decide_report_topic(username, action, topic)
        decision = decide_mqtt_request(self._subjects, self._decisions, username, action,
                                       topic, source_ip=source_ip)
        if decision.allowed or self._relays is None:
            return decision
        relayed = self._relays.decide_relayed(username, action, topic, source_ip=source_ip)
        return decision if relayed is None else relayed

    def reread(self, device_id: str) -> None:
        """Read the device afresh at its next question (a change the feed did not carry)."""
        self._subjects.forget(device_id)

    def may_connect(self, device_id: str) -> bool:
        """Whether the device may hold a session (what dynsec's client deletion enforces)."""
        return decide_mqtt_request(self._subjects, self._decisions, device_id, CONNECT,
                                   device_id).allowed

    def may_connect_many(self, device_ids: Sequence[str]) -> set[str]:
        """Which of these devices may hold a session: the subjects not cached are read
        together (a set revocation's 10,000 changed devices: a few queries per 500, not
        eight per device), then each is decided on what was read. A store that cannot be
        read denies them all (fail closed, as ``may_connect``)."""
        try:
            subjects = self._subjects.cached_many(device_ids)
        except IamError as e:
            log.warning("deciding %d changed devices failed, denied: %s", len(device_ids), e)
            return set()
        allowed: set[str] = set()
        for device_id, subject in subjects.items():
            try:
                if subject is not None and self._decisions.decide(
                        subject, CONNECT, device_id).allowed:
                    allowed.add(device_id)
            except IamError:
                continue  # denied, as ``decide_mqtt_request`` denies it
        return allowed
