"""Storage the audit log needs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from iotiam.audit.models import AuditRecord, ChainHead, StoredCheckpoint


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
