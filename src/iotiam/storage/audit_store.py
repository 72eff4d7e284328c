"""SQL implementation of the audit log."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, select

from iotiam.audit.models import AuditRecord, ChainHead
from iotiam.storage.raw import RawSql, RawStatement
from iotiam.storage.rows import dump_json, load_json, under_path
from iotiam.storage.tables import audit as t

_HEAD_ID = 1
# every audited change runs these three: hand-written (see storage/raw.py)
_LOCK_HEAD = RawStatement("SELECT seq, hash, mac, frontier FROM audit_head WHERE id = 1")
_LOCK_HEAD_FOR_UPDATE = RawStatement(_LOCK_HEAD.sqlite + " FOR UPDATE")
_INSERT_RECORD = RawStatement(
    "INSERT INTO audit_records (seq, at, tag, actor, org_path, subject, outcome, reason, "
    "details, prev_hash, hash) VALUES (:seq, :at, :tag, :actor, :org_path, :subject, :outcome, "
    ":reason, :details, :prev_hash, :hash)")
# the head's row is made by the first append; no answer is needed of either statement,
# so PostgreSQL gets both with the COMMIT (``RawSql.defer``)
_MOVE_HEAD = RawStatement(
    "INSERT INTO audit_head (id, seq, hash, mac, frontier) VALUES (1, :seq, :hash, :mac, "
    ":frontier) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
    "mac = excluded.mac, frontier = excluded.frontier")


class SqlAuditLog:
    """Chain links in ``audit_records``; the head in the one-row ``audit_head``."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def lock_head(self) -> ChainHead | None:
        """Read the head under a row lock (SQLite: the write transaction already serialises)."""
        raw = RawSql(self._c)
        row = raw.first(_LOCK_HEAD if raw.is_sqlite else _LOCK_HEAD_FOR_UPDATE, {})
        return ChainHead(seq=row[0], hash=row[1], mac=row[2], frontier=row[3]) if row else None

    def head(self) -> ChainHead | None:
        """Read the head."""
        row = self._c.execute(select(t.audit_head).where(t.audit_head.c.id == _HEAD_ID)).first()
        return ChainHead(seq=row.seq, hash=row.hash, mac=row.mac,
                         frontier=row.frontier) if row else None

    def append(self, records: Sequence[AuditRecord], head: ChainHead) -> None:
        """Store consecutive records and move the head in the same transaction."""
        raw = RawSql(self._c)
        # the records of one append share their instant: convert it once
        when = functools.lru_cache(maxsize=4)(raw.when)
        raw.defer(_INSERT_RECORD, [{
            "seq": record.seq, "at": when(record.at), "tag": record.tag,
            "actor": record.actor, "org_path": record.org_path, "subject": record.subject,
            "outcome": record.outcome, "reason": record.reason,
            "details": dump_json(record.details), "prev_hash": record.prev_hash,
            "hash": record.hash,
        } for record in records])
        raw.defer(_MOVE_HEAD, [{"seq": head.seq, "hash": head.hash, "mac": head.mac,
                                "frontier": head.frontier}])

    def iter_records(
        self, *, org_path: str | None = None, after_seq: int = 0, limit: int | None = None
    ) -> Iterator[AuditRecord]:
        """Records in storage sequence order."""
        query = select(t.audit_records).where(t.audit_records.c.seq > after_seq)
        if org_path is not None:
            query = query.where(under_path(t.audit_records.c.org_path, org_path))
        query = query.order_by(t.audit_records.c.seq)
        if limit is not None:
            query = query.limit(limit)
        for row in self._c.execute(query):
            yield _audit_record(row)


def _audit_record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        at=row.at,
        tag=row.tag,
        actor=row.actor,
        org_path=row.org_path,
        subject=row.subject,
        outcome=row.outcome,
        reason=row.reason,
        details=load_json(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
