"""The change table (``tables/changes.py``): every published change, by an increasing id.

A use case records its change in its own transaction (``SqlChangeRecorder``); the feeds
read the table by id (``change_delivery.ChangeCursor``). On PostgreSQL the recorder also
sends ``NOTIFY``, which PostgreSQL delivers when (and only if) the transaction commits.
Old rows are pruned by a background job (``prune_changes``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, select

from iotiam.changes import Change, Published, from_fields, kind_name, to_fields
from iotiam.storage.raw import RawSql, RawStatement
from iotiam.storage.tables.changes import changes

#: the PostgreSQL channel the recorder notifies and the feed listens on
NOTIFY_CHANNEL = "iotiam_changes"
#: the changes a connection's transaction recorded (``Database`` hands them to the feed)
RECORDED = "iotiam_changes_recorded"

# issuance records one change per call: written for the driver (``storage/raw.py``)
_RECORD_SQLITE = RawStatement(
    "INSERT INTO changes (kind, body, recorded_at) VALUES (:kind, :body, :at) RETURNING id")
# NOTIFY is sent when (and only if) the transaction commits; the channel is NOTIFY_CHANNEL
_RECORD_POSTGRESQL = RawStatement(
    "WITH added AS (INSERT INTO changes (kind, body, recorded_at) VALUES (:kind, :body, :at)"
    " RETURNING id) SELECT id, pg_notify('iotiam_changes', id::text) FROM added")

class SqlChangeRecorder:
    """``ChangeRecorder`` of a SQL unit of work: one row per change, in its transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def record(self, change: Change) -> None:
        """Insert the change (and, on PostgreSQL, NOTIFY: sent on commit)."""
        raw = RawSql(self._conn)
        row = raw.first(_RECORD_SQLITE if raw.is_sqlite else _RECORD_POSTGRESQL, {
            "kind": kind_name(change), "body": json.dumps(to_fields(change)),
            # the wall clock: this time only decides when the row is pruned
            "at": raw.when(datetime.now(UTC))})
        self._conn.info.setdefault(RECORDED, []).append(Published(int(row[0]), change))


def read_changes(conn: Connection, after: int, limit: int) -> list[Published]:
    """Changes with an id above ``after``, by id."""
    c = changes.c
    rows = conn.execute(select(c.id, c.kind, c.body).where(c.id > after)
                        .order_by(c.id).limit(limit))
    return [Published(r.id, from_fields(r.kind, json.loads(r.body))) for r in rows]


def last_change_id(conn: Connection) -> int:
    """The newest change's id (0: none yet)."""
    return int(conn.execute(select(func.max(changes.c.id))).scalar() or 0)


def feed_backlog(conn: Connection, delivered: int) -> tuple[int, datetime | None]:
    """The newest change's id, and when the first change after ``delivered`` was
    recorded (None: every change was delivered)."""
    newest = last_change_id(conn)
    if newest <= delivered:
        return newest, None
    c = changes.c
    first = conn.execute(select(c.recorded_at).where(c.id > delivered)
                         .order_by(c.id).limit(1)).scalar()
    if first is not None and first.tzinfo is None:  # SQLite keeps no zone: stored as UTC
        first = first.replace(tzinfo=UTC)
    return newest, first


def prune_changes(conn: Connection, keep: timedelta, now: datetime) -> int:
    """Delete changes older than ``keep`` (the newest always stays); how many."""
    c = changes.c
    newest = last_change_id(conn)
    done = conn.execute(delete(changes).where(c.recorded_at < now - keep, c.id < newest))
    return int(done.rowcount or 0)
