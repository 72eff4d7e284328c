"""Storage the audit log needs, and what every other domain needs from it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Protocol

from iotiam.audit.models import AuditDraft, AuditRecord, ChainHead, StoredCheckpoint

#: told of the records each append added (inside its transaction: a rollback after it
#: leaves them counted); the metrics count issuance, revocations and findings from them
AuditObserver = Callable[[Sequence[AuditRecord]], None]


class AuditLog(Protocol):
    """Append-only storage of chain links plus the chain head."""

    def lock_head(self) -> ChainHead | None:
        """Read the head, holding a lock on it until the transaction ends."""
        ...

    def append(self, records: Sequence[AuditRecord], head: ChainHead) -> None:
        """Store consecutive records and move the head to the last."""
        ...

    def head(self) -> ChainHead | None:
        """Read the head without locking."""
        ...

    def iter_records(self, *, org_path: str | None = None, after_seq: int = 0,
                     limit: int | None = None) -> Iterator[AuditRecord]:
        """Records in sequence order, optionally only those under ``org_path``."""
        ...


class CheckpointLog(Protocol):
    """Signed checkpoints, kept where a database writer cannot reach (G7)."""

    def latest(self) -> StoredCheckpoint | None:
        """The last checkpoint written, or None before the first."""
        ...

    def history(self) -> Iterator[StoredCheckpoint]:
        """Every checkpoint written, oldest first."""
        ...

    def append(self, checkpoint: StoredCheckpoint) -> None:
        """Add ``checkpoint`` to the history and make it the latest, durably."""
        ...


class AuditUnitOfWork(Protocol):
    """A transaction that can hold audit records: every domain's unit of work is one."""

    @property
    def audit(self) -> AuditLog:
        """The chain the records of this transaction are appended to."""
        ...


class Auditor(Protocol):
    """Appends audit records (``audit.service.AuditTrail``): what a use case calls to
    record the change it makes in the same transaction, or a refusal in its own."""

    def append(self, uow: AuditUnitOfWork, draft: AuditDraft) -> AuditRecord:
        """Append inside the caller's transaction."""
        ...

    def append_many(self, uow: AuditUnitOfWork,
                    drafts: Sequence[AuditDraft]) -> list[AuditRecord]:
        """Append consecutive records inside the caller's transaction."""
        ...

    def record(self, draft: AuditDraft) -> AuditRecord:
        """Append in a transaction of its own."""
        ...

    def refusals(self, draft: AuditDraft) -> AbstractContextManager[None]:
        """Record the refusal of the request run inside, then let the error go on."""
        ...


#: a daily tally's key: (day in UTC, org path of the audited object, kind of activity)
ActivityKey = tuple[date, str, str]


class ActivityTallies(Protocol):
    """Daily counts of enrollments and revocations, kept from the audit log
    (``audit.activity``): the console's charts read them instead of the certificates."""

    def lock_cursor(self) -> int:
        """The last audit sequence number counted, locked until the transaction ends."""
        ...

    def add(self, counts: Mapping[ActivityKey, int], cursor: int) -> None:
        """Add ``counts`` to the tallies and move the cursor to ``cursor``."""
        ...

    def daily(self, org_path: str, since: date) -> dict[tuple[date, str], int]:
        """Counts by (day, kind) from ``since`` on, of the rows at ``org_path`` exactly
        (each count was added at every ancestor of its own path: the subtree's sum)."""
        ...


class ActivityUnitOfWork(AuditUnitOfWork, Protocol):
    """A transaction that reads the audit log and keeps the daily tallies."""

    @property
    def activity(self) -> ActivityTallies:
        """The daily tallies and their cursor."""
        ...
