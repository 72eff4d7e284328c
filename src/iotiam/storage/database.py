"""Engine set-up and the SQL unit of work.

SQLite runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so two writers queue instead of deadlocking on upgrade.
PostgreSQL needs nothing special here: row locks and ``ON CONFLICT`` do the work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from iotiam.errors import Conflict, IamError, InvalidInput
from iotiam.storage.admin_store import SqlAdminTokenStore
from iotiam.storage.audit_store import SqlAuditLog
from iotiam.storage.credential_store import SqlPskStore
from iotiam.storage.enrollment_store import SqlClaimTokenStore
from iotiam.storage.inventory_store import (
    SqlDeviceStore,
    SqlDeviceTypeStore,
    SqlGroupStore,
    SqlOrgUnitStore,
)
from iotiam.storage.pki_store import SqlCaStore, SqlCertificateStore, SqlCounterStore, SqlCrlStore

SQLITE_BUSY_TIMEOUT_MS = 10_000


class StorageUnavailable(IamError):
    """The database could not be reached or is locked for too long."""

    kind = "storage-unavailable"
    title = "Storage unavailable"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings iotiam relies on for each backend."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=8,
            max_overflow=8,
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        # let us emit BEGIN ourselves (pysqlite's implicit BEGIN is DEFERRED)
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the last
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # org-path prefix matches must be exact (see storage/rows.py)
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.info.pop("iotiam_begin", "BEGIN IMMEDIATE"))


class SqlUnitOfWork:
    """Every store bound to one connection inside one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.org_units = SqlOrgUnitStore(conn)
        self.device_types = SqlDeviceTypeStore(conn)
        self.devices = SqlDeviceStore(conn)
        self.groups = SqlGroupStore(conn)
        self.cas = SqlCaStore(conn)
        self.certificates = SqlCertificateStore(conn)
        self.crls = SqlCrlStore(conn)
        self.counters = SqlCounterStore(conn)
        self.audit = SqlAuditLog(conn)
        self.admin_tokens = SqlAdminTokenStore(conn)
        self.claims = SqlClaimTokenStore(conn)
        self.psks = SqlPskStore(conn)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction; an exception inside rolls back only its own work."""
        with self.conn.begin_nested():
            yield


class Database:
    """Opens units of work on an engine (the ``UnitOfWorkFactory`` of the domain)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer; queueing writers of this process here, instead of in
        # SQLite's busy handler (which sleeps with backoff), keeps tail latency low
        self._sqlite_writer = threading.RLock()

    @contextmanager
    def __call__(self) -> Iterator[SqlUnitOfWork]:
        """A write transaction."""
        if not self.is_sqlite:
            with self._transaction("BEGIN") as uow:
                yield uow
            return
        with self._sqlite_writer, self._transaction("BEGIN IMMEDIATE") as uow:
            yield uow

    @contextmanager
    def reading(self) -> Iterator[SqlUnitOfWork]:
        """A read transaction; on SQLite it never waits for the writer."""
        with self._transaction("BEGIN") as uow:
            yield uow

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[SqlUnitOfWork]:
        try:
            with self.engine.connect() as conn:
                if self.is_sqlite:
                    conn.info["iotiam_begin"] = begin
                with conn.begin():
                    yield SqlUnitOfWork(conn)
        except IntegrityError as e:
            raise Conflict(f"the change conflicts with stored data: {e.orig}") from e
        except DataError as e:
            # PostgreSQL refuses NUL bytes and over-long text that SQLite stores: still bad input
            raise InvalidInput(f"a value cannot be stored: {e.orig}") from e
        except OperationalError as e:
            raise StorageUnavailable(f"database error: {e.orig}") from e

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
