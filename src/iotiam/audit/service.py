"""Use cases of the audit log: append inside a transaction, verify, export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from iotiam.audit.anchor import TreeWalk, held_to_checkpoints, open_history
from iotiam.audit.chain import GENESIS_HASH, make_head, seal, verify_chain
from iotiam.audit.checkpoint import Verifier, open_note
from iotiam.audit.merkle import Frontier, consistency_proof, inclusion_proof, record_leaf
from iotiam.audit.models import (
    AuditDraft,
    AuditRecord,
    ChainHead,
    StoredCheckpoint,
    VerifyReport,
    refused,
)
from iotiam.audit.ports import AuditLog, AuditObserver, AuditUnitOfWork, CheckpointLog
from iotiam.audit.proofs import ConsistencyProof, InclusionProof
from iotiam.audit.search import DEFAULT_SCAN, AuditQuery, AuditSearch, search
from iotiam.clock import Clock
from iotiam.errors import Conflict, Forbidden, IamError, InvalidInput, NotFound
from iotiam.kernel import Principal, Role, Transactions


class AuditTrail:
    """The hash-chained audit log (G7): the ``Auditor`` of every domain."""

    def __init__(self, uow: Transactions[AuditUnitOfWork], clock: Clock, head_key: bytes,
                 checkpoints: CheckpointLog | None = None,
                 verifier: Verifier | None = None,
                 observer: AuditObserver | None = None) -> None:
        self._uow = uow
        self._observer = observer
        self._clock = clock
        self._key = head_key
        self._checkpoints = checkpoints
        self._verifier = verifier

    def append(self, uow: AuditUnitOfWork, draft: AuditDraft) -> AuditRecord:
        """Append inside the caller's transaction, so the change and its record commit together."""
        (record,) = self.append_many(uow, [draft])
        return record

    def append_many(self, uow: AuditUnitOfWork, drafts: Sequence[AuditDraft]
                    ) -> list[AuditRecord]:
        """Append consecutive records inside the caller's transaction, moving the head once."""
        if not drafts:
            return []
        head = uow.audit.lock_head()
        seq = head.seq if head else 0
        prev_hash = head.hash if head else GENESIS_HASH
        tree = _tree_of(uow.audit, head)
        at = self._clock.now()
        records = []
        for draft in drafts:
            seq += 1
            record = seal(draft, seq=seq, at=at, prev_hash=prev_hash)
            records.append(record)
            prev_hash = record.hash
            # O(1) hashes amortised per record: the compact range, not the whole tree
            tree.append(record_leaf(record.hash))
        uow.audit.append(records, make_head(records[-1], self._key, tree.encode()))
        if self._observer is not None:
            self._observer(records)
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
        """Check the whole chain, then hold it to every signed checkpoint (G7).

        Only a global admin may, as it spans every tenant.
        """
        _require_root_admin(actor, "verifying the audit chain")
        signed = None
        if self._checkpoints is not None and self._verifier is not None:
            try:
                signed = open_history(self._checkpoints.history(), self._verifier)
            except InvalidInput as e:
                return VerifyReport(ok=False, records=0, head_seq=0, problem=e.detail)
        with self._uow.reading() as uow:
            head = uow.audit.head()
            walk = TreeWalk(uow.audit.iter_records(),
                            (s.checkpoint.size for s in signed or ()))
            report = verify_chain(walk, head, self._key)
        if report.ok and head is not None and head.frontier not in (None,
                                                                    walk.frontier.encode()):
            # appends would extend a wrong tree, and the checkpoint writer refuses to sign it
            report = replace(report, ok=False, problem=(
                "the chain head's Merkle tree does not match the records: it was altered"))
        return report if signed is None else held_to_checkpoints(report, walk, signed)

    def latest_checkpoint(self, actor: Principal) -> StoredCheckpoint | None:
        """The latest signed checkpoint (it counts every tenant's records: root admins)."""
        _require_root_admin(actor, "reading audit checkpoints")
        return self._checkpoints.latest() if self._checkpoints else None

    def prove_inclusion(self, actor: Principal, seq: int, size: int | None = None
                        ) -> InclusionProof:
        """RFC 9162 §2.1.3.1: record ``seq`` is in the tree of the checkpoint of ``size``."""
        _require_root_admin(actor, "proving audit records")
        note, size = self._checkpoint_note(size)
        if not 1 <= seq <= size:
            raise InvalidInput(f"record {seq} is not in the checkpoint of {size} records")
        leaves, record = self._leaves(note, size, keep=seq)
        assert record is not None  # all `size` records were read, seq among them
        return InclusionProof(checkpoint=note, record=record,
                              path=inclusion_proof(leaves, seq - 1))

    def prove_consistency(self, actor: Principal, old_size: int, new_size: int | None = None
                          ) -> ConsistencyProof:
        """RFC 9162 §2.1.4.1: the checkpoint of ``old_size`` is a prefix of ``new_size``'s."""
        _require_root_admin(actor, "proving audit checkpoints")
        new_note, new_size = self._checkpoint_note(new_size)
        old_note, old_size = self._checkpoint_note(old_size)
        if not 0 < old_size <= new_size:
            raise InvalidInput(f"no consistency proof from {old_size} to {new_size} records")
        leaves, _ = self._leaves(new_note, new_size, keep=None)
        return ConsistencyProof(old_checkpoint=old_note, new_checkpoint=new_note,
                                path=consistency_proof(leaves, old_size))

    def _checkpoint_note(self, size: int | None) -> tuple[str, int]:
        """The stored checkpoint of ``size`` (default: the latest)."""
        if self._checkpoints is None or self._verifier is None:
            raise NotFound("no audit checkpoints are kept here")
        if size is None:
            latest = self._checkpoints.latest()
            if latest is None:
                raise NotFound("no audit checkpoint was written yet")
            return latest.note, latest.size
        for stored in self._checkpoints.history():
            if stored.size == size:
                return stored.note, size
        raise NotFound(f"no checkpoint signed {size} records; prove against one that did")

    def _leaves(self, note: str, size: int, keep: int | None
                ) -> tuple[list[bytes], AuditRecord | None]:
        """The leaf hashes of records 1..size (and record ``keep``), checked against ``note``."""
        assert self._verifier is not None
        checkpoint = open_note(note, self._verifier)
        leaves: list[bytes] = []
        kept = None
        with self._uow.reading() as uow:
            for record in uow.audit.iter_records(limit=size):
                leaves.append(record_leaf(record.hash))
                if record.seq == keep:
                    kept = record
        if len(leaves) != size or Frontier.of(leaves).root() != checkpoint.root:
            raise Conflict(f"the database no longer holds the {size} records the checkpoint "
                           "signed; run `iotiam audit verify`")
        return leaves, kept

    def export(
        self, actor: Principal, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditRecord]:
        """Records the caller may see (its subtree only, G9), in sequence order."""
        with self._uow.reading() as uow:
            return list(
                uow.audit.iter_records(org_path=actor.org_path, after_seq=after_seq, limit=limit)
            )

    def search(self, actor: Principal, query: AuditQuery, *, before_seq: int | None = None,
               limit: int = 50, scan: int = DEFAULT_SCAN) -> AuditSearch:
        """Records of the caller's subtree matching ``query``, newest first, read a bounded
        window at a time (``audit/search.py``)."""
        return search(self._uow, actor, query, before_seq=before_seq, limit=limit, scan=scan)

    def iter_all(self, actor: Principal, *, page: int = 5000) -> Iterator[AuditRecord]:
        """Every visible record, fetched page by page."""
        after = 0
        while True:
            batch = self.export(actor, after_seq=after, limit=page)
            if not batch:
                return
            yield from batch
            after = batch[-1].seq


def _require_root_admin(actor: Principal, what: str) -> None:
    if not (actor.is_global and actor.has_role(Role.ADMIN)):
        raise Forbidden(f"{what} needs an admin token scoped to the root")


def _tree_of(audit: AuditLog, head: ChainHead | None) -> Frontier:
    """The compact range at the head; rebuilt once from the records for a head older
    than the tree."""
    if head is None:
        return Frontier()
    if head.frontier is not None:
        try:
            return Frontier.decode(head.seq, head.frontier)
        except ValueError:
            pass  # damaged: rebuilt below, and verify/checkpoints will tell if it mattered
    return Frontier.of(record_leaf(r.hash) for r in audit.iter_records(limit=head.seq))
