"""Anchoring the audit chain outside the database (G7).

The hash chain and its MAC'd head live in the database, so someone who can write to
it can delete the whole chain, or cut its tail and put back an older head row, and
the chain still verifies. Signed checkpoints close that gap: every N records and every
minute the tree head is signed with a key the database never sees and written to a file
in the data directory (and to the SIEM). ``audit verify`` then holds the chain to every
checkpoint: a checkpoint that signed more records than the database holds, or a root
the database's records no longer produce, is a wiped, truncated, rolled-back or
rewritten chain.

The writer extends its *own* tree (the compact range kept with the last checkpoint)
with the records appended since, so a checkpoint is always a continuation of the
previous one: a database rolled back behind it is refused and reported, never signed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from iotiam.audit.chain import GENESIS_HASH
from iotiam.audit.checkpoint import Checkpoint, CheckpointKey, Verifier, open_note
from iotiam.audit.merkle import Frontier, record_leaf
from iotiam.audit.models import AuditRecord, StoredCheckpoint, VerifyReport
from iotiam.audit.ports import AuditUnitOfWork, CheckpointLog
from iotiam.clock import Clock
from iotiam.errors import InvalidInput
from iotiam.kernel import Transactions

log = logging.getLogger(__name__)
#: ranges of records read "records 1,101 to 1,234" with an en dash
DASH = "\u2013"


@dataclass(frozen=True)
class Written:
    """A new checkpoint was signed and stored."""

    checkpoint: StoredCheckpoint


@dataclass(frozen=True)
class Unchanged:
    """No record since the last checkpoint."""

    size: int


@dataclass(frozen=True)
class Refused:
    """The database does not continue the last checkpoint: nothing was signed."""

    reason: str


CheckpointOutcome = Written | Unchanged | Refused
#: where checkpoints go besides the file (the SIEM): the note or the refusal, and which
Publish = Callable[[str, bool], None]


def when(at: datetime) -> str:
    """How a checkpoint's time reads in a message."""
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


class CheckpointWriter:
    """Signs the tree head when the chain continues the last checkpoint."""

    def __init__(self, uow: Transactions[AuditUnitOfWork], clock: Clock,
                 checkpoints: CheckpointLog, key: CheckpointKey,
                 publish: Publish | None = None) -> None:
        self._uow = uow
        self._clock = clock
        self._log = checkpoints
        self._key = key
        self._publish = publish

    @property
    def latest(self) -> StoredCheckpoint | None:
        """The last checkpoint written."""
        return self._log.latest()

    def pending(self) -> int:
        """Records appended since the last checkpoint (negative: the chain shrank)."""
        with self._uow.reading() as uow:
            head = uow.audit.head()
        last = self._log.latest()
        return (head.seq if head else 0) - (last.size if last else -1)

    def write(self) -> CheckpointOutcome:
        """Sign and store a checkpoint of the records appended since the last one."""
        last = self._log.latest()
        outcome = self._extend(last)
        if isinstance(outcome, Refused):
            log.error("audit checkpoint refused: %s", outcome.reason)
            if self._publish:
                self._publish(f"audit checkpoint refused: {outcome.reason}", True)
            return outcome
        if isinstance(outcome, Unchanged):
            return outcome
        frontier, last_hash = outcome
        note = self._key.sign(Checkpoint(self._key.name, frontier.size, frontier.root()))
        stored = StoredCheckpoint(note=note, at=self._clock.now(), size=frontier.size,
                                  frontier=frontier.encode(), last_hash=last_hash)
        self._log.append(stored)
        if self._publish:
            self._publish(note, False)
        return Written(stored)

    def _extend(self, last: StoredCheckpoint | None
                ) -> Refused | Unchanged | tuple[Frontier, str]:
        base = last.size if last else 0
        frontier = Frontier.decode(base, last.frontier) if last else Frontier()
        prev = last.last_hash if last else GENESIS_HASH
        with self._uow.reading() as uow:
            head = uow.audit.head()
            size = head.seq if head else 0
            if last is not None and size < base:
                return Refused(
                    f"the checkpoint of {when(last.at)} signed {base:,} records but the "
                    f"database's chain head is at {size:,}: the chain was truncated, wiped "
                    "or rolled back")
            if last is not None and size == base:
                if head is not None and head.hash != prev:
                    return Refused(f"record {size:,} is not the one the checkpoint of "
                                   f"{when(last.at)} signed: the chain was rewritten")
                return Unchanged(size)
            for record in uow.audit.iter_records(after_seq=base, limit=size - base):
                if record.seq != frontier.size + 1 or record.prev_hash != prev:
                    return Refused(
                        f"record {record.seq:,} does not continue the chain the last "
                        f"checkpoint signed ({base:,} records): the chain was rolled back "
                        "or rewritten")
                frontier.append(record_leaf(record.hash))
                prev = record.hash
        if frontier.size != size:
            return Refused(f"records {frontier.size + 1:,}{DASH}{size:,} are missing below the "
                           "chain head")
        if head is not None and head.frontier is not None and head.frontier != \
                frontier.encode():
            return Refused("the database's Merkle tree head does not match its records")
        return frontier, prev


class TreeWalk:
    """Passes records through while building their tree; keeps the roots at given sizes."""

    def __init__(self, records: Iterable[AuditRecord], sizes: Iterable[int]) -> None:
        self._records = records
        self._wanted = set(sizes)
        self.roots: dict[int, bytes] = {}
        self.frontier = Frontier()
        if 0 in self._wanted:
            self.roots[0] = self.frontier.root()

    def __iter__(self) -> Iterator[AuditRecord]:
        for record in self._records:
            self.frontier.append(record_leaf(record.hash))
            if self.frontier.size in self._wanted:
                self.roots[self.frontier.size] = self.frontier.root()
            yield record


@dataclass(frozen=True)
class Signed:
    """A stored checkpoint whose signature verified."""

    checkpoint: Checkpoint
    at: datetime


def open_history(history: Iterable[StoredCheckpoint], verifier: Verifier) -> list[Signed]:
    """Every stored checkpoint, its signature checked; InvalidInput names the first bad one."""
    opened = []
    for number, stored in enumerate(history, start=1):
        try:
            checkpoint = open_note(stored.note, verifier)
        except InvalidInput as e:
            raise InvalidInput(f"stored checkpoint {number} ({when(stored.at)}) is not "
                               f"genuine: {e.detail}") from e
        opened.append(Signed(checkpoint, stored.at))
    return opened


def held_to_checkpoints(report: VerifyReport, walk: TreeWalk,
                        signed: Sequence[Signed]) -> VerifyReport:
    """The chain report, failed if the records do not reproduce every signed checkpoint."""
    if not signed:
        return replace(report, ok=False, problem=(
            "no signed checkpoint of the audit chain exists outside the database: "
            "it cannot be told from a wiped or rolled-back one"))
    latest = max(signed, key=lambda s: s.checkpoint.size)
    report = replace(report, checkpoint_size=latest.checkpoint.size, checkpoint_at=latest.at)
    if not report.ok:
        return report
    matched = 0
    for item in sorted(signed, key=lambda s: s.checkpoint.size):
        size = item.checkpoint.size
        if size > report.records:
            break
        if walk.roots.get(size) != item.checkpoint.root:
            return replace(report, ok=False, first_bad_seq=matched + 1, problem=(
                f"records {matched + 1:,}{DASH}{size:,} are not the ones the checkpoint of "
                f"{when(item.at)} signed ({size:,} records): the chain was rewritten, "
                "reordered or rolled back"))
        matched = size
    if latest.checkpoint.size > report.records:
        have, want = report.records, latest.checkpoint.size
        return replace(report, ok=False, first_bad_seq=have + 1, problem=(
            f"the checkpoint of {when(latest.at)} signed {want:,} records; the database "
            f"has {have:,}: records {have + 1:,}{DASH}{want:,} are missing"))
    return report
