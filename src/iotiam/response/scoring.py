"""Trust scores kept current: recomputed when something behind them changes.

A new score is stored with its factors; when the number or the firmware verdict moved,
the device's ``updated_at`` moves too, in the same transaction. That is what the
broker sync and the decision caches watch, so a device whose score falls below a
policy's ``min_trust_score`` loses those rights on the broker within a sync pass.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Protocol

from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    Published,
    TrustChanged,
)
from iotiam.clock import Clock, idle
from iotiam.errors import IamError, NotFound
from iotiam.inventory.credential_status import (
    HeldCredential,
    credential_status_by_device,
    held_credentials,
    never_rotated_devices,
)
from iotiam.inventory.models import CredentialStatus, Device, DeviceState
from iotiam.inventory.ports import visible_device
from iotiam.kernel import Principal, Transactions
from iotiam.response.models import TrustScore
from iotiam.response.ports import FirmwareCompliance, FirmwareStatusLike, ResponseUnitOfWork
from iotiam.response.trust import score_device

log = logging.getLogger(__name__)
#: the state a ``DeviceChanged`` names for devices just registered (``REGISTRATION_STEP``)
REGISTERED = str(DeviceState.PENDING)
#: a change committed a little late (a transaction begun before the last pass) is seen
OVERLAP = timedelta(seconds=5)
#: how long a woken refresher waits for the rest of a burst of changes before scoring
GATHER = 0.05
#: a queue this long after ``GATHER`` is a burst that may go on (a set revocation's
#: batches of 500, one commit every few hundred ms): it is gathered in steps of
#: ``GATHER_STEP`` while it grows, up to ``GATHER_MAX``, so 20 batches make a few passes,
#: not 20 (each pass a write beside the batches, and a ``TrustChanged`` every consumer
#: decides on)
BURST_DEVICES = 200
GATHER_STEP = 0.3
GATHER_MAX = 2.0
#: a burst of registrations only (``DeviceChanged`` to ``pending``: an import's batches)
#: is gathered while it grows by ``REGISTRATION_STEP``, up to ``REGISTRATION_MAX``:
#: scored once the import's requests stop, not between them, where the scoring took the
#: requests' GIL (a pending device holds no credential a token or the broker accepts, so
#: no decision waits on its first score; any other change ends the wait at once)
REGISTRATION_STEP = 1.0
REGISTRATION_MAX = 60.0
#: the most devices one scoring transaction takes (a gathered import: SQLite's writer
#: lock is held for a chunk, not for the whole burst)
RESCORE_CHUNK = 10_000
#: how soon a stop is seen while the refresher waits
STOP_SECONDS = 0.25


@dataclass(frozen=True)
class Rescored:
    """What one recomputation stored."""

    scores: dict[str, TrustScore]
    #: the devices whose score or firmware verdict moved: their ``updated_at`` is now ``at``
    moved: tuple[str, ...]
    at: datetime
    #: the ``updated_at`` of each scored device whose score did not move, as read
    unmoved: dict[str, datetime] = field(default_factory=dict)
    #: the scored devices as the transaction left them (the moved ones' ``updated_at``
    #: is ``at``): handed to the risk register, which need not read them again
    devices: dict[str, Device] = field(default_factory=dict)


class TrustScores:
    """Computes, stores and explains trust scores."""

    def __init__(self, uow: Transactions[ResponseUnitOfWork], clock: Clock,
                 firmware: FirmwareCompliance) -> None:
        self._uow = uow
        self._clock = clock
        self._firmware = firmware

    def use_firmware_source(self, firmware: FirmwareCompliance) -> None:
        """Read compliance from ``firmware`` (wired after attestation is built)."""
        self._firmware = firmware

    def recompute(self, device_ids: Sequence[str]) -> dict[str, TrustScore]:
        """Compute and store the scores of these devices; unknown ids are skipped."""
        return self.rescore(device_ids).scores

    def rescore(self, device_ids: Sequence[str], *, refreshed: bool = False) -> Rescored:
        """``recompute``, telling also whose ``updated_at`` moved, and to when
        (``refreshed``: by the trust refresher, ``TrustChanged.refreshed``)."""
        now = self._clock.now()
        if not device_ids:
            return Rescored({}, (), now)
        compliance = self._firmware.compliance_of(device_ids)
        with self._uow() as uow:
            devices = uow.devices.get_many(device_ids)  # one query, not one per device
            # the score is stamped with the time its moved devices are touched at: the
            # refresher's read of changed records knows its own touch by that
            scores = self._compute(uow, devices, compliance, now)
            before = uow.trust.for_devices(list(scores))
            uow.trust.put_many(list(scores.values()))
            moved = tuple(
                device_id for device_id, score in scores.items()
                if (old := before.get(device_id)) is None or old.score != score.score
                or old.firmware_compliant != score.firmware_compliant)
            if moved:
                uow.trust.touch_devices(moved, now)
                uow.changes.record(TrustChanged(moved, refreshed=refreshed))
        kept = set(scores) - set(moved)
        stored = dict(devices)
        for device_id in moved:
            stored[device_id] = devices[device_id].touched(now)
        return Rescored(scores, moved, now,
                        {d: device.updated_at for d, device in devices.items() if d in kept},
                        stored)

    def _compute(self, uow: ResponseUnitOfWork, devices: Mapping[str, Device],
                 compliance: Mapping[str, FirmwareStatusLike], now: datetime
                 ) -> dict[str, TrustScore]:
        device_ids = list(devices)
        findings = uow.findings.live_for_devices(device_ids)
        types = {t.name: t for t in uow.device_types.list_all()}
        held = _held_credentials(uow, device_ids)
        scores: dict[str, TrustScore] = {}
        for device_id, device in devices.items():
            certificates = held.get(device_id)
            status, never_rotated = CredentialStatus.NONE, False
            if certificates:  # a device just imported has none: nothing to classify
                device_type = types.get(device.type_name)
                rotation_age = device_type.rotation.max_credential_age if device_type \
                    else timedelta(days=365)
                status = credential_status_by_device(
                    certificates, now=now, rotation_age=rotation_age,
                ).get(device_id, CredentialStatus.NONE)
                never_rotated = device_id in never_rotated_devices(
                    certificates, now=now, max_age_by_device={device_id: rotation_age})
            firmware = compliance.get(device_id)
            scores[device_id] = score_device(
                device_id, state=device.state, credential=status, never_rotated=never_rotated,
                firmware_compliant=firmware.compliant if firmware is not None else None,
                firmware_reason=firmware.reason if firmware is not None else None,
                findings=findings.get(device_id, []), at=now)
        return scores

    def explain(self, actor: Principal, device_id: str) -> TrustScore:
        """The device's score computed now, with its factors (404 outside the subtree)."""
        with self._uow.reading() as uow:
            visible_device(uow.devices, actor, device_id)
        score = self.recompute([device_id]).get(device_id)
        if score is None:
            raise NotFound(f"device {device_id!r} not found")
        return score


class ChangedDevices(Protocol):
    """Devices whose record or credentials changed (``storage.fleet_reads``)."""

    def unscored_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        """(device, updated_at) of devices updated after ``since``, but for those whose
        ``updated_at`` is their stored score's ``computed_at`` (``TrustScores.rescore``'s
        own touch: nothing changed since they were scored)."""
        ...


#: who is handed the devices each pass scored (the risk register's job, ``serving.py``):
#: their ids, and those found as the scoring transaction stored them, with their scores
Scored = Callable[[Sequence[str], Mapping[str, Device], Mapping[str, TrustScore]], None]


class TrustRefresher:
    """Keeps stored scores current as devices change (state, credentials, firmware).

    Findings recompute their device's score themselves; this catches the rest: a
    revoked credential or a changed device (``rescore_later``, subscribed to the change
    feed), and what moves a device's ``updated_at`` without publishing a change (a
    renewed certificate, a new attestation verdict). A recomputation that moves a score
    moves ``updated_at`` too, to the score's ``computed_at``: the read of changed
    records leaves those out in the query, so a pass does not even read back the
    devices scored for their own touch.

    Each pass reads the devices updated since the last pass began, less ``OVERLAP`` (a
    change committed a little late is seen); a device whose score did not move and was
    already rescored at the ``updated_at`` the read names is not rescored again, so an
    import of 100,000 devices is scored once per device, not once per pass its changes
    stay in the window.

    A change on the feed wakes the loop: the devices it names are scored within
    ``GATHER`` seconds (one batch for a burst of changes), not at the next pass, so a
    device registered a moment ago is not held below a policy's ``min_trust_score`` by a
    score nobody computed yet. Only the full pass reads the window. A burst of
    registrations alone (an import) waits for the import's requests to stop
    (``REGISTRATION_STEP``): its devices are pending, with no credential to be judged
    on, until an enrollment, whose change ends the wait.

    After each pass the devices it scored go to ``then``: the risk register judges them
    with their new scores, once (the ``TrustChanged`` this publishes says ``refreshed``,
    and the register's job leaves it to this hand-off).
    """

    def __init__(self, trust: TrustScores, changes: ChangedDevices, clock: Clock, *,
                 every: float = 2.0, then: Scored | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._trust = trust
        self._changes = changes
        self._clock = clock
        self._every = every
        self._then = then
        #: the seconds a burst is gathered in (injected: tests step it)
        self._monotonic = monotonic
        self._since = clock.now() - OVERLAP
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        #: set when the queue holds more than registrations (``REGISTRATION_STEP``)
        self._urgent = threading.Event()
        #: device -> the ``updated_at`` it was last rescored at, for the devices whose
        #: score did not move (a later window starts no earlier: older ones never return)
        self._scored_at: dict[str, datetime] = {}
        #: how many device scores the passes computed (an import's: one per device)
        self.scored = 0

    def rescore_later(self, published: Published) -> None:
        """Queue the devices a revocation or a device change touched for the next pass."""
        change = published.change
        with self._lock:
            if isinstance(change, CertificateRevoked | CredentialRevoked):
                if change.device_id is not None:
                    self._queued.add(change.device_id)
                    self._urgent.set()
            elif isinstance(change, DeviceChanged):
                self._queued.update(change.device_ids)
                if change.state != REGISTERED and change.device_ids:
                    self._urgent.set()
            if self._queued:
                self._wake.set()

    def queued(self) -> int:
        """How many devices wait for the next pass."""
        with self._lock:
            return len(self._queued)

    def refresh_queued(self) -> int:
        """Score the devices the feed named since the last pass (no window read); returns
        how many were rescored."""
        with self._taken() as devices:
            if not devices:
                return 0
            unmoved = self._rescore(devices)
        # the full pass that reads their record in the window does not score them again
        self._scored_at.update(unmoved)
        return len(devices)

    def refresh_once(self) -> int:
        """One pass; returns how many devices were rescored."""
        now = self._clock.now()
        start = self._since - OVERLAP
        with self._taken() as devices:
            changed = self._changes.unscored_changes(start)
            devices |= {d for d, at in changed if self._scored_at.get(d) != at}
            scored_at = dict(changed)
            if devices:
                scored_at.update(self._rescore(devices))
        # only once the scores are stored (a failed pass reads the same window again)
        self._scored_at, self._since = scored_at, now
        return len(devices)

    @contextlib.contextmanager
    def _taken(self) -> Iterator[set[str]]:
        """The devices the feed queued, taken for one pass (which may add to them); a
        pass that fails puts them all back, so the next one scores them."""
        with self._lock:
            devices, self._queued = self._queued, set()
            self._wake.clear()
            self._urgent.clear()
        try:
            yield devices
        except BaseException:
            with self._lock:
                self._queued |= devices
                self._urgent.set()  # retried after ``STOP_SECONDS``, not gathered
            raise

    def _rescore(self, devices: set[str]) -> dict[str, datetime]:
        """Score ``devices``, ``RESCORE_CHUNK`` a transaction, handing each chunk to
        ``then`` (unknown ones too: a deleted device's register entries go); returns
        ``Rescored.unmoved`` of them all."""
        ordered = sorted(devices)
        unmoved: dict[str, datetime] = {}
        for start in range(0, len(ordered), RESCORE_CHUNK):
            chunk = ordered[start:start + RESCORE_CHUNK]
            rescored = self._trust.rescore(chunk, refreshed=True)
            self.scored += len(rescored.scores)
            if self._then is not None:
                self._then(chunk, rescored.devices, rescored.scores)
            unmoved.update(rescored.unmoved)
        return unmoved

    def _gather(self, stop: threading.Event) -> None:
        """Wait ``GATHER``; a burst (``BURST_DEVICES`` queued) is waited on in
        ``GATHER_STEP``s while it grows, up to ``GATHER_MAX``, a burst of registrations
        alone in ``REGISTRATION_STEP``s up to ``REGISTRATION_MAX`` (a few changed devices
        are scored after ``GATHER``, as before)."""
        began = self._monotonic()
        stop.wait(GATHER)
        size = self.queued()
        if self._gathering_registrations():
            size = self._gather_registrations(stop, began + REGISTRATION_MAX)
        deadline = began + GATHER_MAX
        while size >= BURST_DEVICES and not stop.is_set() and self._monotonic() < deadline:
            stop.wait(min(GATHER_STEP, max(0.0, deadline - self._monotonic())))
            size, before = self.queued(), size
            if size == before:
                return

    def _gather_registrations(self, stop: threading.Event, deadline: float) -> int:
        """Wait in ``REGISTRATION_STEP``s while a burst of registrations grows, until
        ``deadline`` or until another change joins it (then it is a burst like any other,
        gathered as one); returns the queue's size (0: done gathering)."""
        size = self.queued()
        while not stop.is_set() and (left := deadline - self._monotonic()) > 0:
            idle(self._urgent, stop, min(REGISTRATION_STEP, left), STOP_SECONDS)
            if self._urgent.is_set():
                return self.queued()
            size, before = self.queued(), size
            if size == before:
                return 0
        return 0

    def _gathering_registrations(self) -> bool:
        """Whether the queue is a burst of registrations only."""
        return self.queued() >= BURST_DEVICES and not self._urgent.is_set()

    def run(self, stop: threading.Event) -> None:
        """Refresh until ``stop`` is set (a failed pass is logged and retried): in full
        every ``every`` seconds, and the devices a change names as soon as it comes."""
        next_full = time.monotonic() + self._every
        while not stop.is_set():
            idle(self._wake, stop, max(0.0, next_full - time.monotonic()), STOP_SECONDS)
            if stop.is_set():
                return
            try:
                # a registration burst being gathered holds the full pass back too: it
                # would read the burst's devices in its window and score them piecemeal
                if time.monotonic() < next_full or self._gathering_registrations():
                    self._gather(stop)  # the rest of the burst joins this batch
                    self.refresh_queued()
                    continue
                next_full = time.monotonic() + self._every
                self.refresh_once()
            except IamError as e:
                log.warning("trust refresh failed: %s", e)
                stop.wait(STOP_SECONDS)  # a failing store is not retried in a tight loop


def _held_credentials(uow: ResponseUnitOfWork, device_ids: list[str]
                      ) -> dict[str, list[HeldCredential]]:
    """Every credential of these devices, as the inventory's credential status judges
    them (certificates, PSKs, the OAuth client): one query per kind, not per device."""
    found: dict[str, list[HeldCredential]] = {}
    for held in held_credentials(
            chain.from_iterable(uow.certificates.for_devices(device_ids).values()),
            chain.from_iterable(uow.psks.for_devices(device_ids).values()),
            uow.oauth_clients.for_devices(device_ids).values()):
        found.setdefault(held.device_id, []).append(held)
    return found
