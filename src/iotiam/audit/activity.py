"""Enrollments and revocations by day, kept from the audit log for the console's charts.

Counting certificates by day on each page view would read millions of rows; instead a
singleton job (``serving.background_jobs``) reads the audit records after its cursor, a
bounded batch at a time, and adds them to daily tallies keyed by (day in UTC, org path,
kind), moving the cursor in the same transaction: a crash leaves both as they were, so a
record is never counted twice or skipped. A record counts at its org path and at each
ancestor's (a handful of rows), so a page view reads one row per day and kind: the
caller's own path, whose count is its whole subtree's (G9), however many org units
there are under it.

What counts (successful records only; refusals count nothing):

- ``enrollment``: ``device:enrollment:succeeded`` — a device's first certificate;
- ``reenrollment``: ``device:reenrollment:succeeded`` — a renewal with the current one;
- ``revocation``: every credential revoked — ``device:certificate:revoked``,
  ``device:psk:revoked`` and ``admin:oauth-client:revoked`` one each; a set revocation's
  batch record (``admin:revocation-set:batch-revoked``) its certificates, PSKs and OAuth
  clients; an issuing CA's revocation batch (``admin:ca:certificates-revoked``) its
  certificates. Batch records carry the org path of the admin who ran them (the root's
  for a CA): a tenant admin sees the set revocations run in their subtree.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, timedelta

from iotiam.audit.models import AuditRecord, AuditTag, Outcome
from iotiam.audit.ports import ActivityKey, ActivityUnitOfWork
from iotiam.clock import Clock
from iotiam.kernel import Principal, Transactions, ancestor_paths

#: audit records read per transaction of the tally job
BATCH = 5000
#: transactions one pass of the job runs at most (a backlog is caught up over passes)
BATCHES_PER_PASS = 20
#: days the console charts
DAYS = 30


class ActivityKind(enum.StrEnum):
    """What the daily tallies count."""

    ENROLLMENT = "enrollment"
    REENROLLMENT = "reenrollment"
    REVOCATION = "revocation"


_ONE: dict[str, ActivityKind] = {
    AuditTag.ENROLLMENT_SUCCEEDED: ActivityKind.ENROLLMENT,
    AuditTag.REENROLLMENT_SUCCEEDED: ActivityKind.REENROLLMENT,
    AuditTag.CERTIFICATE_REVOKED: ActivityKind.REVOCATION,
    AuditTag.PSK_REVOKED: ActivityKind.REVOCATION,
    AuditTag.OAUTH_CLIENT_REVOKED: ActivityKind.REVOCATION,
}
#: batch records: the details fields that hold how many credentials they revoked
_BATCHES: dict[str, tuple[str, ...]] = {
    AuditTag.REVOCATION_SET_BATCH_REVOKED: ("certificates", "psks", "oauth_clients"),
    AuditTag.CA_CERTIFICATES_REVOKED: ("certificates",),
}


def counted(record: AuditRecord) -> tuple[ActivityKind, int] | None:
    """What one audit record adds to the tallies (None: nothing)."""
    if record.outcome != Outcome.SUCCESS:
        return None
    if (kind := _ONE.get(record.tag)) is not None:
        return kind, 1
    if (fields := _BATCHES.get(record.tag)) is not None:
        size = sum(_count(record.details.get(f)) for f in fields)
        return (ActivityKind.REVOCATION, size) if size else None
    return None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else 0


def utc_day(record: AuditRecord) -> date:
    """The UTC day of a record (a naive time is UTC, as the stores keep it)."""
    at = record.at
    return (at.astimezone(UTC) if at.tzinfo else at).date()


def tally(records: Iterable[AuditRecord]) -> dict[ActivityKey, int]:
    """The counts these records add, by (day, org path, kind): each record counts at its
    org path and at every ancestor's, so a subtree's count is one row a day and kind."""
    counts: Counter[ActivityKey] = Counter()
    for record in records:
        if (hit := counted(record)) is not None:
            day, (kind, n) = utc_day(record), hit
            for path in ancestor_paths(record.org_path):
                counts[(day, path, kind.value)] += n
    return dict(counts)


@dataclass(frozen=True)
class ActivitySeries:
    """One count per day, oldest first, for each kind."""

    days: tuple[date, ...]
    counts: Mapping[ActivityKind, tuple[int, ...]]

    def of(self, kind: ActivityKind) -> tuple[int, ...]:
        """The daily counts of ``kind``."""
        return self.counts.get(kind, (0,) * len(self.days))

    def total(self, kind: ActivityKind) -> int:
        """The sum over the days of ``kind``."""
        return sum(self.of(kind))


class DailyActivity:
    """Keeps the daily tallies from the audit log and reads them for a caller."""

    def __init__(self, uow: Transactions[ActivityUnitOfWork], clock: Clock, *,
                 batch: int = BATCH) -> None:
        self._uow = uow
        self._clock = clock
        self._batch = batch

    def count_batch(self) -> int:
        """Count the next batch of audit records, in one transaction with the cursor's
        move; returns how many records were read."""
        with self._uow() as uow:
            cursor = uow.activity.lock_cursor()
            records = list(uow.audit.iter_records(after_seq=cursor, limit=self._batch))
            if records:
                uow.activity.add(tally(records), records[-1].seq)
            return len(records)

    def catch_up(self, batches: int = BATCHES_PER_PASS) -> int:
        """Count batches until one is short (the log is caught up) or ``batches`` ran."""
        read = 0
        for _ in range(batches):
            got = self.count_batch()
            read += got
            if got < self._batch:
                break
        return read

    def series(self, caller: Principal, days: int = DAYS) -> ActivitySeries:
        """The last ``days`` days (today included) in the caller's subtree (G9)."""
        today = self._clock.now().astimezone(UTC).date()
        first = today - timedelta(days=days - 1)
        with self._uow.reading() as uow:
            found = uow.activity.daily(caller.org_path, first)
        span = tuple(first + timedelta(days=n) for n in range(days))
        return ActivitySeries(span, {kind: tuple(found.get((d, kind.value), 0) for d in span)
                                     for kind in ActivityKind})
