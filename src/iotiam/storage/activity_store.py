"""SQL implementation of the daily activity tallies (``audit.ports.ActivityTallies``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from iotiam.audit.ports import ActivityKey
from iotiam.storage.tables import audit as t

_CURSOR_ID = 1


class SqlActivityTallies:
    """Tallies in ``activity_daily``; the cursor in the one-row ``activity_cursor``."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def lock_cursor(self) -> int:
        """The cursor under a row lock (SQLite: the write transaction already serialises;
        PostgreSQL: a second leader waits here, then reads the moved cursor)."""
        postgres = self._c.dialect.name == "postgresql"
        # the row first: ``FOR UPDATE`` locks no row that is not there, and two leaders
        # would both count from 0 (a second insert waits for the first's commit)
        upsert = pg_insert if postgres else sqlite_insert
        self._c.execute(upsert(t.activity_cursor).values(id=_CURSOR_ID, seq=0)
                        .on_conflict_do_nothing(index_elements=["id"]))
        query = select(t.activity_cursor.c.seq).where(t.activity_cursor.c.id == _CURSOR_ID)
        if postgres:
            query = query.with_for_update()
        row = self._c.execute(query).first()
        return int(row.seq) if row else 0

    def add(self, counts: Mapping[ActivityKey, int], cursor: int) -> None:
        """Add to each day's row (inserted at its first count), then move the cursor."""
        upsert = pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert
        daily = t.activity_daily
        if counts:
            statement = upsert(daily)
            self._c.execute(statement.on_conflict_do_update(
                index_elements=["org_path", "day", "kind"],
                set_={"count": daily.c.count + statement.excluded.count}),
                [{"day": day, "org_path": path, "kind": kind, "count": n}
                 for (day, path, kind), n in sorted(counts.items(),
                                                    key=lambda kv: (kv[0][1], kv[0][0]))])
        moved = upsert(t.activity_cursor).values(id=_CURSOR_ID, seq=cursor)
        self._c.execute(moved.on_conflict_do_update(index_elements=["id"],
                                                    set_={"seq": moved.excluded.seq}))

    def daily(self, org_path: str, since: date) -> dict[tuple[date, str], int]:
        """Counts by (day, kind) from ``since``, of the rows at ``org_path``: a range of
        the primary key, one row per day and kind."""
        daily = t.activity_daily
        rows = self._c.execute(
            select(daily.c.day, daily.c.kind, daily.c.count.label("n"))
            .where(daily.c.org_path == org_path, daily.c.day >= since))
        # ``row.count`` would be the tuple's own method
        return {(row.day, row.kind): int(row.n) for row in rows}
