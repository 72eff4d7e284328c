"""Throw-away PostgreSQL schemas for tests and benchmarks: dropping one never waits forever.

``DROP SCHEMA … CASCADE`` needs every table's exclusive lock. A connection that a test or
a server it started left open inside a transaction holds a lock on what it read, and
PostgreSQL waits for it without end (the suite once hung at its last test so). Each drop
here waits a few seconds, then ends the sessions that still hold locks in the schema and
tries again.
"""

from __future__ import annotations

import sys
import warnings

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

#: how long one drop waits for the schema's locks before it ends their holders
LOCK_WAIT = "5s"
ATTEMPTS = 3

_HOLDERS = text("""
    SELECT DISTINCT l.pid, a.application_name, a.state, left(a.query, 120) AS query
    FROM pg_locks l
    JOIN pg_class c ON c.oid = l.relation
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stat_activity a ON a.pid = l.pid
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
                for holder in conn.execute(_HOLDERS, {"name": name}).all():
                    # who forgot a connection: the warning names the test it ended in,
                    # and the line on stderr shows one found when the session finishes
                    said = (f"schema {name} was held by a session {holder.state} "
                            f"({holder.application_name!r}, last query {holder.query!r}): "
                            "ended")
                    print(f"iotiam.testing.postgres: {said}", file=sys.__stderr__)
                    warnings.warn(said, stacklevel=2)
                    # an xdist worker's stderr may be lost: the server's log keeps it
                    logged = said.replace("'", "''").replace("$", "_")
                    conn.exec_driver_sql(f"DO $$BEGIN RAISE LOG 'iotiam tests: {logged}'; END$$")
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                                 {"pid": holder.pid})
