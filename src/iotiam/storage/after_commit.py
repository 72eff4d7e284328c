"""Work a transaction asks for once it has committed (``Database`` runs it).

Some maintenance cannot run inside the transaction that makes it needed: PostgreSQL's
``VACUUM`` refuses a transaction block, and a vacuum in another session cannot mark rows
all-visible before they are committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

#: ``Connection.info`` key: the jobs the open transaction asked for
AFTER_COMMIT = "iotiam_after_commit"

Job = Callable[[Engine], object]


def after_commit(conn: Connection, job: Job) -> None:
    """Run ``job`` with the engine once this transaction commits (never if it rolls back)."""
    conn.info.setdefault(AFTER_COMMIT, []).append(job)


def run_jobs(jobs: Sequence[Job], engine: Engine) -> None:
    """The committed transaction's jobs; one that fails is logged, not raised (the data is
    stored, and what failed was housekeeping)."""
    for job in jobs:
        try:
            job(engine)
        except Exception:
            log.exception("work after a commit failed")


def vacuum_analyse(tables: Sequence[str]) -> Job:
    """``VACUUM (ANALYZE)`` of ``tables`` (PostgreSQL): fresh planner statistics, and the
    visibility map set, so that a count over an index is an index-only scan instead of a
    visit to every heap page the rewrite touched."""
    def vacuum(engine: Engine) -> None:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in tables:
                conn.execute(text(f"VACUUM (ANALYZE) {table}"))
    return vacuum
