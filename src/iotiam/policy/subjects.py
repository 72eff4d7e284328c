"""Decision subjects of inventory devices: read fresh for admins, cached for hot hooks.

A broker's authorization hook asks about the same devices thousands of times a second.
Reading the device and its groups for each question would cost far more than the
decision (~4 µs), so ``cached`` keeps each device's ``Subject`` and drops it as soon as
the device changes. Published changes (``iotiam.changes``: a revoked or new credential,
a device's state, registration, groups or firmware verdict, its trust score) come
through the change feed (``changed``, subscribed in ``bootstrap.py``), from this process
at commit and from any other process or replica as soon as its feed delivers them. A
check stays as the safety net for a change that was not published: one indexed
query ("devices updated since …") at most every ``check_every`` seconds for the whole
cache. Keeping the same
``Subject`` object also keeps the engine's per-subject memo (the compiled view), which a
new policy generation replaces by itself.

A change is recognised by its (device, ``updated_at``) pair: the query looks back
``OVERLAP`` further to catch transactions that committed late, and a pair already acted
on is not acted on again. So the clocks of the processes writing devices must agree
within ``OVERLAP`` (as for the broker sync), and a clock that does not move (a test's
frozen clock) must be advanced between two changes of one device.

Credentials are part of the subject (G3): a certificate, PSK or OAuth client revoked
drops its device at once, so the hook denies a device whose last credential was
revoked. A subject without a valid credential is kept only until the next check
(``check_every``), so a device that gets one again (re-enrollment, a new PSK) is read
again soon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    Published,
    TrustChanged,
)
from iotiam.clock import Clock
from iotiam.inventory.models import Device
from iotiam.policy.models import Subject
from iotiam.policy.ports import DeviceDirectory, PostureLookup

#: rows committed late (a transaction that began before the last check) are still seen
OVERLAP = timedelta(seconds=5)


class DeviceSubjects:
    """Subjects for decisions: ``subject_of`` reads fresh, ``cached`` serves the hook."""

    def __init__(
        self, devices: DeviceDirectory, clock: Clock, *, check_every: float = 0.5,
        max_age: float = 300.0, max_entries: int = 100_000,
        posture: PostureLookup | None = None,
    ) -> None:
        self._devices = devices
        #: trust scores and firmware verdicts; a change moves the device's updated_at
        self._posture = posture
        self._clock = clock
        self._check_every = check_every
        # a safety net only: changes are seen through the check, not through expiry
        self._max_age = max_age
        self._max_entries = max_entries
        #: device id -> (subject, or None for an unknown device; monotonic load time)
        self._entries: dict[str, tuple[Subject | None, float]] = {}
        #: changes acted on whose ``updated_at`` is still inside the look-back window
        self._seen: dict[str, datetime] = {}
        self._since: datetime = clock.now()
        self._checked = time.monotonic()
        #: moves on every check: a device read before a check is not cached after it
        self._epoch = 0
        self._lock = threading.Lock()

    def subject_of(self, device: Device) -> Subject:
        """The subject of ``device`` with its current groups, read now."""
        return self.subjects_of([device])[0]

    def subjects_of(self, devices: Sequence[Device]) -> list[Subject]:
        """The subjects of a page of devices, read now (one query for every group)."""
        ids = [d.id for d in devices]
        groups = self._devices.groups_of(ids)
        postures = self._posture.posture_of(ids) if self._posture is not None else {}
        return [Subject.from_device(d, groups.get(d.id, set()), postures.get(d.id))
                for d in devices]

    def cached(self, device_id: str) -> Subject | None:
        """The subject of a device (None: unknown), no older than the last change check."""
        now = time.monotonic()
        if now - self._checked >= self._check_every:
            self._drop_changed()
        entry = self._entries.get(device_id)
        if entry is not None and now - entry[1] < self._lifetime(entry[0]):
            return entry[0]
        epoch = self._epoch
        device = self._devices.device(device_id)
        subject = self.subject_of(device) if device is not None else None
        if epoch == self._epoch:  # no check ran while reading: nothing newer was missed
            if len(self._entries) >= self._max_entries:
                self._evict_oldest()
            self._entries[device_id] = (subject, now)
        return subject

    def cached_many(self, device_ids: Sequence[str]) -> dict[str, Subject | None]:
        """``cached`` for many devices at once: those not cached are read together (a
        batch of changed devices, e.g. a set revocation's: a few queries per 500 devices,
        not three per device)."""
        now = time.monotonic()
        if now - self._checked >= self._check_every:
            self._drop_changed()
        found: dict[str, Subject | None] = {}
        missing: list[str] = []
        for device_id in dict.fromkeys(device_ids):
            entry = self._entries.get(device_id)
            if entry is not None and now - entry[1] < self._lifetime(entry[0]):
                found[device_id] = entry[0]
            else:
                missing.append(device_id)
        if not missing:
            return found
        epoch = self._epoch
        devices = list(self._devices.devices_of(missing).values())
        read = {s.device_id: s for s in self.subjects_of(devices)}
        for device_id in missing:
            found[device_id] = read.get(device_id)
        if epoch == self._epoch:  # as in ``cached``: nothing newer was missed meanwhile
            for device_id in missing:
                if len(self._entries) >= self._max_entries:
                    self._evict_oldest()
                self._entries[device_id] = (found[device_id], now)
        return found

    def _lifetime(self, subject: Subject | None) -> float:
        # nothing moves updated_at when a device gets a credential: re-read such subjects
        if subject is not None and subject.credentialed is False:
            return self._check_every
        return self._max_age

    def forget(self, device_id: str | None = None) -> None:
        """Drop one device's entry (every entry when None): the next question reads it."""
        with self._lock:
            if device_id is None:
                self._entries.clear()
            else:
                self._entries.pop(device_id, None)

    def changed(self, published: Published) -> None:
        """Drop the devices a published change touched: the next question reads them."""
        change = published.change
        if isinstance(change, CertificateRevoked | CredentialRevoked):
            devices: tuple[str | None, ...] = (change.device_id,)
        elif isinstance(change, DeviceChanged | TrustChanged):
            devices = change.device_ids
        else:
            return
        with self._lock:
            self._epoch += 1  # a read that began before this must not be cached
            for device_id in devices:
                if device_id is not None:
                    self._entries.pop(device_id, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _drop_changed(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked < self._check_every:
                return  # another thread checked meanwhile
            started = self._clock.now()
            since = self._since - OVERLAP
            changes = self._devices.device_changes(since)
            self._epoch += 1
            seen = self._seen
            # a change the feed did not bring: read it again
            for device_id, at in changes:
                if seen.get(device_id) != at:
                    self._entries.pop(device_id, None)
            self._seen = dict(changes)
            self._since = started
            self._checked = time.monotonic()

    def _evict_oldest(self) -> None:
        with self._lock:
            for _ in range(max(1, self._max_entries // 10)):
                try:
                    del self._entries[next(iter(self._entries))]
                except (StopIteration, KeyError, RuntimeError):
                    break
