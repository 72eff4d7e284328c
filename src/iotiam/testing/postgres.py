"""Throw-away PostgreSQL schemas for tests and benchmarks: dropping one never waits forever.

``DROP SCHEMA … CASCADE`` needs every table's exclusive lock. A connection that a test or
a server it started left open inside a transaction holds a lock on what it read, and
PostgreSQL waits for it without end (the suite once hung at its last test so). Each drop
here waits a few seconds, then ends the sessions that still hold locks in the schema and
tries again.
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

#: how long one drop waits for the schema's locks before it ends their holders
LOCK_WAIT = "5s"
ATTEMPTS = 3

_HOLDERS = text("""
    SELECT DISTINCT l.pid FROM pg_locks l
    JOIN pg_class c ON c.oid = l.relation
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :name AND l.pid <> pg_backend_pid()
""")


def drop_schema(admin: Engine, name: str) -> None:
    """Drop ``name`` and everything in it, ending the sessions that keep it locked."""
    for attempt in range(ATTEMPTS):
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
                conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
            return
        except OperationalError:
            if attempt == ATTEMPTS - 1:
                raise
            with admin.begin() as conn:
                for pid in conn.execute(_HOLDERS, {"name": name}).scalars():
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
