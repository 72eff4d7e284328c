"""Singleton job leadership across replicas (PostgreSQL): session-level advisory locks.

Each job's lock is ``pg_try_advisory_lock`` on a key derived from the job's name and
the schema the installation lives in (advisory locks are per database: two
installations in two schemas of one database must not share them). The locks are
held by a connection of their own, outside the pool: when it drops, or its process
dies, PostgreSQL ends the session and frees every lock it held, and the next replica
to campaign takes them (``iotiam.election``).

Each job's term is a row of ``singleton_terms``, written only by the lock's holder: a
winner marks it open, a leader that ended its job marks it released before unlocking.
A winner that finds the last term released starts at once; one that finds it open (the
leader was killed, or lost its connection and may not have noticed yet) waits
``TAKEOVER_SECONDS`` first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
from typing import Any

import psycopg

from iotiam.storage.database import Database, StorageUnavailable

log = logging.getLogger("iotiam.server")

#: a winner's wait: a leader that lost its connection notices within one check of its
#: elector (``iotiam.election.CHECK_SECONDS``, 0.5 s) and its jobs see their stop
#: within about half a second more
TAKEOVER_SECONDS = 2.0


_LAST_TERM = "SELECT released FROM singleton_terms WHERE job = %s"
_OPEN_TERM = """INSERT INTO singleton_terms (job, holder, began_at, released)
VALUES (%s, %s, now() AT TIME ZONE 'UTC', false)
ON CONFLICT (job) DO UPDATE SET holder = EXCLUDED.holder, began_at = EXCLUDED.began_at,
  released = false"""
_RELEASE_TERM = "UPDATE singleton_terms SET released = true WHERE job = %s"


class AdvisoryLocks:
    """``Leadership`` over PostgreSQL advisory locks on one dedicated connection."""

    takeover_seconds = TAKEOVER_SECONDS

    def __init__(self, database: Database) -> None:
        self._database = database
        self._conn: psycopg.Connection[Any] | None = None
        self._schema = ""
        self._held: set[str] = set()
        #: a lock was lost since the last check (the connection failed while holding it)
        self._lost = False
        # the elector's thread and a test may both call in: one statement at a time
        self._lock = threading.Lock()

    def acquire(self, job: str) -> float | None:
        """Take the job's advisory lock if no session holds it, and open a term: 0 s to
        wait when the last term was released (or there was none), else
        ``takeover_seconds``."""
        with self._lock:
            if not self._scalar("SELECT pg_try_advisory_lock(%s)", self._key(job)):
                return None
            self._held.add(job)
            released = self._scalar(_LAST_TERM, job)
            self._scalar(_OPEN_TERM, job, self._holder)
            return 0.0 if released in (None, True) else self.takeover_seconds

    def release(self, job: str) -> None:
        """Mark the job's term released (its job has ended), then unlock."""
        with self._lock:
            if job in self._held:
                self._scalar(_RELEASE_TERM, job)
                self._held.discard(job)
                self._scalar("SELECT pg_advisory_unlock(%s)", self._key(job))

    def check(self) -> bool:
        """A round trip on the lock's connection: False when it failed while holding a
        lock, or failed earlier since the last check."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(StorageUnavailable):
                    self._scalar("SELECT 1")
            lost, self._lost = self._lost, False
            return not lost

    def close(self) -> None:
        """Give every lock up, then end the session. The locks go in a statement
        answered before this returns: a closed connection's backend frees them only as
        it exits, a moment after the client let go, and a replica campaigning then would
        still find them held. The terms of locks given up here stay open (a job may
        still be stopping): only ``release`` lets the next leader start at once."""
        with self._lock:
            if self._conn is not None and self._held:
                with contextlib.suppress(psycopg.Error, OSError):
                    self._conn.execute("SELECT pg_advisory_unlock_all()")
            self._held.clear()
            self._drop()

    def backend_pid(self) -> int | None:
        """The server process holding the locks (tests end it to drop the connection)."""
        conn = self._conn
        return int(conn.info.backend_pid) if conn is not None else None

    @property
    def _holder(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"[:255]

    def _key(self, job: str) -> int:
        if self._conn is None:
            self._connect()
        digest = hashlib.blake2b(f"iotiam singleton {self._schema} {job}".encode(),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def _connect(self) -> None:
        try:
            raw = self._database.engine.raw_connection()
            conn: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
            raw.detach()  # ours alone: the pool must never hand a lock holder out
            conn.rollback()
            conn.autocommit = True
            row = conn.execute("SELECT current_schema()").fetchone()
        except (psycopg.Error, OSError) as e:
            raise StorageUnavailable(f"cannot open the leadership connection: {e}") from e
        self._conn, self._schema = conn, str(row[0] if row else "")

    def _scalar(self, statement: str, *params: object) -> object:
        if self._conn is None:
            self._connect()
        assert self._conn is not None
        try:
            cursor = self._conn.execute(statement, params)
            row = cursor.fetchone() if cursor.description is not None else None
        except (psycopg.Error, OSError) as e:
            self._lost = self._lost or bool(self._held)
            self._held.clear()
            self._drop()
            raise StorageUnavailable(f"the leadership connection failed: {e}") from e
        return row[0] if row else None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
