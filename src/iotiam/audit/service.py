"""Use cases of the audit log: append inside a transaction, verify, export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from iotiam.admin.models import Principal, Role
from iotiam.audit.chain import GENESIS_HASH, make_head, seal, verify_chain
from iotiam.audit.models import AuditDraft, AuditRecord, Outcome, VerifyReport
from iotiam.clock import Clock
from iotiam.errors import Forbidden, IamError, NotFound, Unauthenticated
from iotiam.unit_of_work import UnitOfWork, UnitOfWorkFactory


def refused(draft: AuditDraft, error: IamError) -> AuditDraft:
    """The record of a refusal: denied (who may not, or what is not theirs) or failed."""
    denied = isinstance(error, Forbidden | Unauthenticated | NotFound)
    return replace(draft, outcome=Outcome.DENIED if denied else Outcome.FAILURE,
                   reason=error.detail[:500])


class AuditTrail:
    """The hash-chained audit log (G7)."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, head_key: bytes) -> None:
        self._uow = uow
        self._clock = clock
        self._key = head_key

    def append(self, uow: UnitOfWork, draft: AuditDraft) -> AuditRecord:
        """Append inside the caller's transaction, so the change and its record commit together."""
        (record,) = self.append_many(uow, [draft])
        return record

    def append_many(self, uow: UnitOfWork, drafts: Sequence[AuditDraft]) -> list[AuditRecord]:
        """Append consecutive records inside the caller's transaction, moving the head once."""
        if not drafts:
            return []
        head = uow.audit.lock_head()
        seq = head.seq if head else 0
        prev_hash = head.hash if head else GENESIS_HASH
        at = self._clock.now()
        records = []
        for draft in drafts:
            seq += 1
            record = seal(draft, seq=seq, at=at, prev_hash=prev_hash)
            records.append(record)
            prev_hash = record.hash
        uow.audit.append(records, make_head(records[-1], self._key))
        return records

    def record(self, draft: AuditDraft) -> AuditRecord:
        """Append in a transaction of its own (for refusals whose change was rolled back)."""
        with self._uow() as uow:
            return self.append(uow, draft)

    @contextmanager
    def refusals(self, draft: AuditDraft) -> Iterator[None]:
        """Audit a refused request: the change rolled back, but the attempt is recorded."""
        try:
            yield
        except IamError as e:
            self.record(refused(draft, e))
            raise

    def verify(self, actor: Principal) -> VerifyReport:
        """Check the whole chain; only a global admin may, as it spans every tenant."""
        if not (actor.is_global and actor.has_role(Role.ADMIN)):
            raise Forbidden("verifying the audit chain needs an admin token scoped to the root")
        with self._uow.reading() as uow:
            head = uow.audit.head()
            return verify_chain(uow.audit.iter_records(), head, self._key)

    def export(
        self, actor: Principal, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditRecord]:
        """Records the caller may see (its subtree only, G9), in sequence order."""
        with self._uow.reading() as uow:
            return list(
                uow.audit.iter_records(org_path=actor.org_path, after_seq=after_seq, limit=limit)
            )

    def iter_all(self, actor: Principal, *, page: int = 5000) -> Iterator[AuditRecord]:
        """Every visible record, fetched page by page."""
        after = 0
        while True:
            batch = self.export(actor, after_seq=after, limit=page)
            if not batch:
                return
            yield from batch
            after = batch[-1].seq
