"""What changed in the fleet, in memory: the change feed (``MemoryChangeFeed``, what
``storage/polling_feed.py`` delivers from the change table) and the change log read from
the memory unit of work (what the SQL change log answers from indexed queries: the
decision point's device directory and posture lookup, the broker sync's change log and
the trust refresher's changed devices)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from iotiam.changes import Change, Consumer, Published
from iotiam.clock import Clock
from iotiam.credentials.models import PskStatus
from iotiam.gateways.rules import is_gateway_type
from iotiam.inventory.models import Device, DeviceState
from iotiam.pki.models import CertificateStatus
from iotiam.policy.models import DevicePosture
from iotiam.testing.fakes.unit_of_work import MemoryChangeRecorder, MemoryDatabase
from iotiam.tokens.models import ClientStatus


class MemoryFleetReads:
    """Change queries over the memory stores."""

    def __init__(self, database: MemoryDatabase, clock: Clock) -> None:
        self._uow = database.uow
        self._clock = clock

    def device_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        """(device, updated_at) of the devices updated after ``since``."""
        return [(d.id, d.updated_at) for d in self._uow.devices.devices.values()
                if d.updated_at > since]

    def unscored_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        """``device_changes`` but for devices whose ``updated_at`` is their score's time."""
        scores = self._uow.trust.scores
        return [(d, at) for d, at in self.device_changes(since)
                if (score := scores.get(d)) is None or score.computed_at != at]

    def psk_version(self) -> tuple[int, datetime | None]:
        """(live PSKs, newest change of a PSK or of a device holding a live one)."""
        psks = list(self._uow.psks.psks.values())
        live = [p for p in psks if p.status is PskStatus.ACTIVE]
        holders = [d.updated_at for p in live
                   if (d := self._uow.devices.get(p.device_id)) is not None]
        times = [p.created_at for p in live] + [p.revoked_at for p in psks if p.revoked_at]
        return len(live), max([*times, *holders], default=None)

    def device(self, device_id: str) -> Device | None:
        """One device by id, whatever its state."""
        return self._uow.devices.get(device_id)

    def devices_of(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """The known devices among these ids."""
        return {d: device for d in device_ids if (device := self._uow.devices.get(d))}

    def device_page(self, after_id: str | None, limit: int) -> list[Device]:
        """Devices not decommissioned, by id."""
        return [d for d in sorted(self._uow.devices.devices.values(), key=lambda d: d.id)
                if d.state is not DeviceState.DECOMMISSIONED
                and (after_id is None or d.id > after_id)][:limit]

    def groups_of(self, device_ids: Sequence[str]) -> dict[str, set[str]]:
        """Group ids per device (devices in no group are left out)."""
        found: dict[str, set[str]] = {}
        for device_id in device_ids:
            groups = self._uow.groups.groups_of(device_id)
            if groups:
                found[device_id] = set(groups)
        return found

    def children_of(self, gateway_ids: Sequence[str]) -> dict[str, list[str]]:
        """The children registered under each of these gateways, by id."""
        found: dict[str, list[str]] = {}
        for gateway_id in gateway_ids:
            children = [link.child_id for link in
                        self._uow.gateway_links.children_of(gateway_id)]
            if children:
                found[gateway_id] = children
        return found

    def gateways_of(self, device_ids: Sequence[str]) -> dict[str, str]:
        """The gateway each of these devices is registered under."""
        return {c: link.gateway_id for c, link in
                self._uow.gateway_links.get_many(device_ids).items()}

    def gateway_types(self) -> set[str]:
        """The device types whose devices are gateways."""
        return {t.name for t in self._uow.device_types.list_all() if is_gateway_type(t)}

    def posture_of(self, device_ids: Sequence[str]) -> dict[str, DevicePosture]:
        """Stored trust score, firmware verdict and credential standing of each device."""
        now = self._clock.now()
        result = {}
        for device_id in device_ids:
            score = self._uow.trust.scores.get(device_id)
            status = self._uow.firmware.status(device_id)
            result[device_id] = DevicePosture(
                None if score is None else float(score.score),
                None if status is None else status.compliant,
                credentialed=self._credentialed(device_id, now))
        return result

    def _credentialed(self, device_id: str, now: datetime) -> bool:
        """A valid credential now (G3): an issued, unexpired certificate, an active,
        unexpired PSK or an active OAuth client with its own keys."""
        uow = self._uow
        return any(c.status is CertificateStatus.ISSUED and c.not_before <= now < c.not_after
                   for c in uow.certificates.for_device(device_id)) \
            or any(p.status is PskStatus.ACTIVE and (p.expires_at is None or p.expires_at > now)
                   for p in uow.psks.for_device(device_id)) \
            or any(c.device_id == device_id and c.status is ClientStatus.ACTIVE
                   and c.jwks is not None for c in uow.oauth_clients.clients.values())


class MemoryChangeFeed:
    """A ``ChangeFeed`` in memory: delivers what a memory database's transactions
    recorded after each commit (``following``), or what ``publish`` is given, at once
    and in order; as a ``ChangeRecorder`` of a unit of work without transactions it
    publishes at once too."""

    def __init__(self, recorder: MemoryChangeRecorder | None = None) -> None:
        self._recorder = recorder
        self._subscribers: list[tuple[tuple[type[Change], ...], Consumer]] = []
        self._published: list[Published] = []
        self._read = 0

    @classmethod
    def following(cls, database: MemoryDatabase) -> MemoryChangeFeed:
        """A feed of what ``database``'s write transactions record, delivered on commit."""
        feed = cls(database.uow.changes)
        feed._read = len(database.uow.changes.recorded)
        database.after_commit.append(feed.committed)
        return feed

    def committed(self) -> None:
        """A write transaction of the followed database committed."""
        self.deliver_pending()

    def subscribe(self, kinds: tuple[type[Change], ...], consumer: Consumer, *,
                  after: int | None = None) -> None:
        """Call ``consumer`` with every change of these kinds from now on (and, with
        ``after``, with those delivered since that position)."""
        if after is not None:
            for published in self._published[after:]:
                if isinstance(published.change, kinds):
                    consumer(published)
        self._subscribers.append((kinds, consumer))

    @property
    def position(self) -> int:
        """How many changes were delivered."""
        return len(self._published)

    def publish(self, *changes: Change) -> None:
        """Deliver changes as if their transactions had just committed."""
        for change in changes:
            published = Published(len(self._published) + 1, change)
            self._published.append(published)
            for kinds, consumer in self._subscribers:
                if isinstance(change, kinds):
                    consumer(published)

    def record(self, change: Change) -> None:
        """As the ``changes`` of a unit of work that cannot roll back: publish at once."""
        self.publish(change)

    def deliver_pending(self) -> int:
        """Deliver what committed transactions recorded since the last delivery."""
        if self._recorder is None:
            return 0
        fresh = self._recorder.recorded[self._read:]
        self._read += len(fresh)
        self.publish(*fresh)  # type: ignore[arg-type]
        return len(fresh)

    def run(self, stop: threading.Event) -> None:
        """Nothing to poll: commits deliver."""
        stop.wait()

    def prune(self, keep: timedelta, now: datetime) -> int:
        """Nothing is kept to prune."""
        return 0
