"""The audit stores in memory (``iotiam.audit.ports``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date

from iotiam.audit.models import AuditDraft, AuditRecord, ChainHead, StoredCheckpoint
from iotiam.audit.ports import ActivityKey
from iotiam.errors import Conflict, IamError
from iotiam.testing.fakes.memory import MemoryStore, under


@dataclass
class MemoryAuditLog(MemoryStore):
    """``AuditLog``: the chain links in sequence order and the head."""

    records: list[AuditRecord] = field(default_factory=list)
    chain_head: ChainHead | None = None

    def lock_head(self) -> ChainHead | None:
        """Read the head (one writer at a time holds the memory anyway)."""
        return self.chain_head

    def append(self, records: Sequence[AuditRecord], head: ChainHead) -> None:
        """Store consecutive records and move the head to the last."""
        taken = {r.seq for r in self.records}
        if any(r.seq in taken for r in records):
            raise Conflict("an audit sequence number is taken")
        self.records += records
        self.chain_head = head

    def head(self) -> ChainHead | None:
        """Read the head."""
        return self.chain_head

    def iter_records(self, *, org_path: str | None = None, after_seq: int = 0,
                     limit: int | None = None) -> Iterator[AuditRecord]:
        """Records in sequence order, optionally only those under ``org_path``."""
        found = [r for r in sorted(self.records, key=lambda r: r.seq) if r.seq > after_seq
                 and (org_path is None or under(r.org_path, org_path))]
        return iter(found if limit is None else found[:limit])


@dataclass
class MemoryCheckpointLog:
    """``CheckpointLog`` in memory (the real one is a directory of files)."""

    checkpoints: list[StoredCheckpoint] = field(default_factory=list)

    def latest(self) -> StoredCheckpoint | None:
        """The last checkpoint written."""
        return self.checkpoints[-1] if self.checkpoints else None

    def history(self) -> Iterator[StoredCheckpoint]:
        """Every checkpoint written, oldest first."""
        return iter(list(self.checkpoints))

    def append(self, checkpoint: StoredCheckpoint) -> None:
        """Add a checkpoint and make it the latest."""
        self.checkpoints.append(checkpoint)


@dataclass
class AuditRecorder:
    """An ``Auditor`` that keeps the drafts it is given: appended ones and refusals
    (for a service tested alone; the whole fleet uses the real ``AuditTrail``)."""

    appended: list[AuditDraft] = field(default_factory=list)
    refused: list[AuditDraft] = field(default_factory=list)

    def append(self, uow: object, draft: AuditDraft) -> None:
        """Keep an appended draft."""
        self.appended.append(draft)

    @contextmanager
    def refusals(self, draft: AuditDraft) -> Iterator[None]:
        """Keep the draft of a refused request, with the refusal as its reason."""
        try:
            yield
        except IamError as e:
            self.refused.append(replace(draft, reason=e.detail))
            raise


@dataclass
class MemoryActivityTallies(MemoryStore):
    """``ActivityTallies``: the daily counts and the cursor in memory."""

    counts: dict[ActivityKey, int] = field(default_factory=dict)
    cursor: int = 0

    def lock_cursor(self) -> int:
        """The cursor (one writer at a time holds the memory anyway)."""
        return self.cursor

    def add(self, counts: Mapping[ActivityKey, int], cursor: int) -> None:
        """Add to each day's count and move the cursor."""
        for key, n in counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.cursor = cursor

    def daily(self, org_path: str, since: date) -> dict[tuple[date, str], int]:
        """Counts by (day, kind) from ``since``, of the rows at ``org_path``."""
        return {(day, kind): n for (day, path, kind), n in self.counts.items()
                if day >= since and path == org_path}
