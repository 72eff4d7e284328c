"""Engine set-up and the SQL unit of work.

SQLite runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so two writers queue instead of deadlocking on upgrade.
PostgreSQL needs nothing special here: row locks and ``ON CONFLICT`` do the work.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import IO, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DataError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from iotiam.changes import Published
from iotiam.errors import Conflict, IamError, InvalidInput
from iotiam.storage.activity_store import SqlActivityTallies
from iotiam.storage.admin_store import SqlAdminTokenStore
from iotiam.storage.after_commit import AFTER_COMMIT, run_jobs
from iotiam.storage.attestation_store import SqlFirmwareStore
from iotiam.storage.audit_store import SqlAuditLog
from iotiam.storage.change_table import RECORDED, SqlChangeRecorder
from iotiam.storage.credential_store import SqlPskStore
from iotiam.storage.discovery_store import SqlDiscoveryStore
from iotiam.storage.enrollment_store import (
    SqlClaimTokenStore,
    SqlEnrollmentRequestStore,
    SqlManifestStore,
    SqlManufacturerStore,
)
from iotiam.storage.fleet_counts import SqlFleetCounts
from iotiam.storage.gateway_store import SqlGatewayLinkStore
from iotiam.storage.inventory_store import (
    SqlDeviceStore,
    SqlDeviceTypeStore,
    SqlGroupStore,
    SqlOrgUnitStore,
)
from iotiam.storage.oauth_store import (
    SqlAssertionJtiStore,
    SqlDeviceCodeStore,
    SqlOAuthClientStore,
    SqlSigningKeyStore,
    SqlTokenDenyList,
)
from iotiam.storage.ownership_store import SqlOwnershipStore
from iotiam.storage.pki_store import SqlCaStore, SqlCertificateStore, SqlCounterStore, SqlCrlStore
from iotiam.storage.policy_store import (
    SqlAttachmentStore,
    SqlPolicyStore,
    SqlSiteStore,
    SqlTargetDirectory,
)
from iotiam.storage.raw import RawSql, drop_deferred, send_deferred
from iotiam.storage.registered_identities import SqlRegisteredIdentities
from iotiam.storage.response_store import (
    SqlDetectionSettingsStore,
    SqlFindingStore,
    SqlMitigationStore,
    SqlTrustStore,
)
from iotiam.storage.revocation_set_store import SqlRevocationSetStore
from iotiam.storage.risk_store import SqlRiskStore

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
#: a pooled PostgreSQL connection idle this long is pinged before it is used again
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "iotiam_idle_since"


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
    engine = create_engine(url, pool_size=10, max_overflow=10, **kwargs)
    _configure_postgresql(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping`` for connections idle ``PING_AFTER_IDLE_S`` or more: a pooled
    connection that died (a database restart, a killed backend) is replaced before a
    transaction uses it. One used a moment ago is not asked first: the ping was a round
    trip (and a BEGIN) of every transaction, a tenth of an issuance's CPU on PostgreSQL;
    a database that went away within that moment fails the ping and the statement
    alike."""

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except engine.dialect.loaded_dbapi.Error as e:
            raise DisconnectionError(f"pooled connection is gone: {e}") from e  # retried


def _configure_postgresql(engine: Engine) -> None:
    """Pooled connections pinged when idle a while; writes deferred by ``RawSql.defer``
    go before any statement of SQLAlchemy's own (a savepoint included) and with the
    COMMIT; a rollback forgets them."""
    _ping_when_idle(engine)

    @event.listens_for(engine, "before_cursor_execute")
    def _before_statement(conn: Connection, *args: Any) -> None:
        send_deferred(conn)

    @event.listens_for(engine, "commit")
    def _on_commit(conn: Connection) -> None:
        RawSql(conn).flush(commit=True)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Connection) -> None:
        drop_deferred(conn)


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
    """Every store bound to one connection inside one transaction: the unit of work of
    every domain (``InventoryUnitOfWork``, ``ResponseUnitOfWork``, ...), structurally."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # Each store is made when a transaction first uses it: a transaction uses a few of
    # them, and making all thirty-odd cost ~50 µs of every read and write.
    @cached_property
    def org_units(self) -> SqlOrgUnitStore:
        """The org units in this transaction."""
        return SqlOrgUnitStore(self.conn)

    @cached_property
    def device_types(self) -> SqlDeviceTypeStore:
        """The device types in this transaction."""
        return SqlDeviceTypeStore(self.conn)

    @cached_property
    def devices(self) -> SqlDeviceStore:
        """The devices in this transaction."""
        return SqlDeviceStore(self.conn)

    @cached_property
    def groups(self) -> SqlGroupStore:
        """The groups in this transaction."""
        return SqlGroupStore(self.conn)

    @cached_property
    def cas(self) -> SqlCaStore:
        """The cas in this transaction."""
        return SqlCaStore(self.conn)

    @cached_property
    def certificates(self) -> SqlCertificateStore:
        """The certificates in this transaction."""
        return SqlCertificateStore(self.conn)

    @cached_property
    def fleet_counts(self) -> SqlFleetCounts:
        """The fleet counts in this transaction."""
        return SqlFleetCounts(self.conn)

    @cached_property
    def crls(self) -> SqlCrlStore:
        """The crls in this transaction."""
        return SqlCrlStore(self.conn)

    @cached_property
    def counters(self) -> SqlCounterStore:
        """The counters in this transaction."""
        return SqlCounterStore(self.conn)

    @cached_property
    def audit(self) -> SqlAuditLog:
        """The audit in this transaction."""
        return SqlAuditLog(self.conn)

    @cached_property
    def activity(self) -> SqlActivityTallies:
        """The daily enrollment and revocation tallies in this transaction."""
        return SqlActivityTallies(self.conn)

    @cached_property
    def admin_tokens(self) -> SqlAdminTokenStore:
        """The admin tokens in this transaction."""
        return SqlAdminTokenStore(self.conn)

    @cached_property
    def claims(self) -> SqlClaimTokenStore:
        """The claims in this transaction."""
        return SqlClaimTokenStore(self.conn)

    @cached_property
    def psks(self) -> SqlPskStore:
        """The psks in this transaction."""
        return SqlPskStore(self.conn)

    @cached_property
    def gateway_links(self) -> SqlGatewayLinkStore:
        """Children and their gateways in this transaction."""
        return SqlGatewayLinkStore(self.conn)

    @cached_property
    def manufacturers(self) -> SqlManufacturerStore:
        """The manufacturers in this transaction."""
        return SqlManufacturerStore(self.conn)

    @cached_property
    def manifest(self) -> SqlManifestStore:
        """The manifest in this transaction."""
        return SqlManifestStore(self.conn)

    @cached_property
    def enrollment_requests(self) -> SqlEnrollmentRequestStore:
        """The enrollment requests in this transaction."""
        return SqlEnrollmentRequestStore(self.conn)

    @cached_property
    def ownership(self) -> SqlOwnershipStore:
        """The ownership in this transaction."""
        return SqlOwnershipStore(self.conn)

    @cached_property
    def policies(self) -> SqlPolicyStore:
        """The policies in this transaction."""
        return SqlPolicyStore(self.conn)

    @cached_property
    def policy_attachments(self) -> SqlAttachmentStore:
        """The policy attachments in this transaction."""
        return SqlAttachmentStore(self.conn)

    @cached_property
    def policy_targets(self) -> SqlTargetDirectory:
        """The policy targets in this transaction."""
        return SqlTargetDirectory(self.conn)

    @cached_property
    def sites(self) -> SqlSiteStore:
        """The sites in this transaction."""
        return SqlSiteStore(self.conn)

    @cached_property
    def oauth_clients(self) -> SqlOAuthClientStore:
        """The oauth clients in this transaction."""
        return SqlOAuthClientStore(self.conn)

    @cached_property
    def oauth_signing_keys(self) -> SqlSigningKeyStore:
        """The oauth signing keys in this transaction."""
        return SqlSigningKeyStore(self.conn)

    @cached_property
    def oauth_assertion_jtis(self) -> SqlAssertionJtiStore:
        """The oauth assertion jtis in this transaction."""
        return SqlAssertionJtiStore(self.conn)

    @cached_property
    def oauth_revoked_tokens(self) -> SqlTokenDenyList:
        """The oauth revoked tokens in this transaction."""
        return SqlTokenDenyList(self.conn)

    @cached_property
    def oauth_device_codes(self) -> SqlDeviceCodeStore:
        """The oauth device codes in this transaction."""
        return SqlDeviceCodeStore(self.conn)

    @cached_property
    def firmware(self) -> SqlFirmwareStore:
        """The firmware in this transaction."""
        return SqlFirmwareStore(self.conn)

    @cached_property
    def findings(self) -> SqlFindingStore:
        """The findings in this transaction."""
        return SqlFindingStore(self.conn)

    @cached_property
    def mitigations(self) -> SqlMitigationStore:
        """The mitigations in this transaction."""
        return SqlMitigationStore(self.conn)

    @cached_property
    def detection_settings(self) -> SqlDetectionSettingsStore:
        """The detection settings in this transaction."""
        return SqlDetectionSettingsStore(self.conn)

    @cached_property
    def trust(self) -> SqlTrustStore:
        """The trust in this transaction."""
        return SqlTrustStore(self.conn)

    @cached_property
    def discovery(self) -> SqlDiscoveryStore:
        """The discovery in this transaction."""
        return SqlDiscoveryStore(self.conn)

    @cached_property
    def registered_identities(self) -> SqlRegisteredIdentities:
        """The registered identities in this transaction."""
        return SqlRegisteredIdentities(self.conn)

    @cached_property
    def risk(self) -> SqlRiskStore:
        """The risk in this transaction."""
        return SqlRiskStore(self.conn)

    @cached_property
    def revocation_sets(self) -> SqlRevocationSetStore:
        """Set revocation's selection and bulk writes in this transaction."""
        return SqlRevocationSetStore(self.conn)

    @property
    def changes(self) -> SqlChangeRecorder:
        """Records the changes this transaction publishes (``iotiam.changes``)."""
        return SqlChangeRecorder(self.conn)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction; an exception inside rolls back only its own work (the
        changes it recorded and the work it asked for after the commit included)."""
        recorded = len(self.conn.info.get(RECORDED, ()))
        asked = len(self.conn.info.get(AFTER_COMMIT, ()))
        try:
            with self.conn.begin_nested():
                yield
        except BaseException:
            del self.conn.info.get(RECORDED, [])[recorded:]
            del self.conn.info.get(AFTER_COMMIT, [])[asked:]
            raise


class Database:
    """Opens units of work on an engine (the ``Transactions`` of every domain)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer; queueing writers here, instead of in SQLite's busy
        # handler (which sleeps with backoff), keeps tail latency low: threads of this
        # process on a lock, processes sharing the file (serve --workers) on a flock
        self._sqlite_writer = threading.RLock()
        self._writer_depth = 0
        self._writer_file = self._open_writer_lock()
        self._on_changes: list[Callable[[list[Published]], object]] = []

    def on_changes_committed(self, callback: Callable[[list[Published]], object]) -> None:
        """Call ``callback`` with the changes of every commit of this process that recorded
        some (the change feed delivers them at once, without waiting for its next poll)."""
        self._on_changes.append(callback)

    def _open_writer_lock(self) -> IO[str] | None:
        path = self.engine.url.database if self.is_sqlite else None
        if not path or path == ":memory:":
            return None
        return open(f"{path}.writer-lock", "a")  # open as long as we are

    def after_fork(self) -> None:
        """In a forked process: own connections and an own writer lock (a flock is per
        open file, so an inherited one would not keep the two processes apart)."""
        self.engine.dispose(close=False)
        self._writer_file = self._open_writer_lock()

    @contextmanager
    def __call__(self) -> Iterator[SqlUnitOfWork]:
        """A write transaction."""
        if not self.is_sqlite:
            with self._transaction("BEGIN") as uow:
                uow.conn.info.pop(RECORDED, None)
                uow.conn.info.pop(AFTER_COMMIT, None)
                yield uow
                recorded = uow.conn.info.pop(RECORDED, None)
                jobs = uow.conn.info.pop(AFTER_COMMIT, ())
        else:
            with self._sqlite_writer, self._other_processes(), \
                    self._transaction("BEGIN IMMEDIATE") as uow:
                uow.conn.info.pop(RECORDED, None)  # left by a transaction that failed
                uow.conn.info.pop(AFTER_COMMIT, None)
                yield uow
                recorded = uow.conn.info.pop(RECORDED, None)
                jobs = uow.conn.info.pop(AFTER_COMMIT, ())
        # committed, and every lock released
        run_jobs(jobs, self.engine)
        if recorded:
            for callback in self._on_changes:
                try:
                    callback(recorded)
                except Exception:  # the change is stored: its feed delivers it at the next poll
                    log.exception("delivering committed changes failed")

    @contextmanager
    def _other_processes(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the cross-process writer lock (held by this thread's outermost writer);
        with ``wait=False``, False instead of waiting for another process's."""
        if self._writer_file is None or self._writer_depth:
            self._writer_depth += 1
            try:
                yield True
            finally:
                self._writer_depth -= 1
            return
        try:
            fcntl.flock(self._writer_file.fileno(),
                        fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        self._writer_depth = 1
        try:
            yield True
        finally:
            self._writer_depth = 0
            fcntl.flock(self._writer_file.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def writer_if_free(self) -> Iterator[bool]:
        """Hold SQLite's writer locks if no one holds them now (True), else don't wait
        (False; always False on PostgreSQL, whose writers wait on rows, not here).

        While True, this thread's write transactions start without waiting for iotiam's
        other threads and processes; only a writer outside iotiam (a ``sqlite3`` shell)
        could still make ``BEGIN IMMEDIATE`` wait.
        """
        if not self.is_sqlite or not self._sqlite_writer.acquire(blocking=False):
            yield False
            return
        try:
            with self._other_processes(wait=False) as free:
                yield free
        finally:
            self._sqlite_writer.release()

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
        if self._writer_file is not None:
            self._writer_file.close()
            self._writer_file = None
