"""Shared fixtures: an initialised installation on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from iotiam.api.app import create_api_app, create_public_app
from iotiam.bootstrap import Services, build_services, token_config
from iotiam.clock import FrozenClock
from iotiam.config import Settings
from iotiam.discovery.ports import SightingSink
from iotiam.enrollment.queue import QueueLimits
from iotiam.installation import initialize
from iotiam.kernel import SYSTEM
from iotiam.risk.models import RiskEntry
from iotiam.storage.database import Database, make_engine
from iotiam.storage.migrate import upgrade_to_head
from iotiam.storage.tables import metadata
from iotiam.testing.environment import integration_required
from iotiam.testing.fakes.services import MemoryConfig, memory_services
from iotiam.testing.postgres import drop_schema

PG_URL = os.environ.get("IOTIAM_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """CI must exercise PostgreSQL: refuse to run when it is required but not configured."""
    if integration_required() and not PG_URL:
        raise pytest.UsageError(
            "IOTIAM_REQUIRE_INTEGRATION is set but IOTIAM_TEST_DATABASE_URL is not"
        )


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's own iotiam environment."""
    # every setting, so a new one is covered without being listed; the suite's own
    # switches (IOTIAM_TEST_*, IOTIAM_REQUIRE_INTEGRATION) stay
    for name in list(os.environ):
        if name.startswith("IOTIAM_") and not name.startswith(
                ("IOTIAM_TEST_", "IOTIAM_REQUIRE_INTEGRATION")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _name_postgres_sessions(request: pytest.FixtureRequest,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL sessions opened during a test carry its name (``application_name``
    from libpq's ``PGAPPNAME``, 63 bytes kept), so that a connection a test forgot is
    named by ``drop_schema`` when it has to end it."""
    monkeypatch.setenv("PGAPPNAME", request.node.nodeid[-63:])


def postgres_schema_url() -> Iterator[str]:
    """A throw-away PostgreSQL schema, empty; the URL pins ``search_path`` to it."""
    assert PG_URL
    name = "iotiam_t_" + secrets.token_hex(6)
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    try:
        yield schema_url(name)
    finally:
        drop_schema(admin, name)
        admin.dispose()


def schema_url(name: str) -> str:
    """``IOTIAM_TEST_DATABASE_URL`` with ``search_path`` pinned to schema ``name``."""
    assert PG_URL
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{name}"


def migrated_schema_url() -> Iterator[str]:
    """A PostgreSQL schema at the newest migration with no rows, as ``init`` leaves a new
    database before seeding it; the URL pins ``search_path`` to it. Taken from this
    process's pool and emptied for the next test after (migrating costs ~1.5 s a test)."""
    name = _schema_pool().take()
    try:
        yield schema_url(name)
    finally:
        _schema_pool().give_back(name)


# one catalog text per schema: its relations, columns, constraints, indexes, types and
# functions; a test that changed any of them leaves a schema the pool drops
SCHEMA_SHAPE = text("""
    SELECT md5(string_agg(item, E'\\n' ORDER BY item)) FROM (
      SELECT concat_ws(' ', 'r', relname, relkind) FROM pg_class
        WHERE relnamespace = current_schema()::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'a', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                       a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = current_schema()::regnamespace
          AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT concat_ws(' ', 'c', conrelid::regclass, conname, pg_get_constraintdef(oid))
        FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'i', indexdef) FROM pg_indexes
        WHERE schemaname = current_schema()
      UNION ALL
      SELECT concat_ws(' ', 't', c.relname, t.tgname) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = current_schema()::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'y', typname) FROM pg_type
        WHERE typnamespace = current_schema()::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'f', proname, md5(prosrc)) FROM pg_proc
        WHERE pronamespace = current_schema()::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'v', version_num) FROM alembic_version
    ) AS shape(item)
""")



class SchemaPool:
    """Migrated PostgreSQL schemas this test process reuses: one is handed back emptied
    (rows deleted, sequences restarted) when its catalog is still the one the migrations
    made, and dropped otherwise."""

    def __init__(self, url: str) -> None:
        self._admin = make_engine(url)
        self._free: list[str] = []
        self._made: list[str] = []
        #: the first schema's SCHEMA_SHAPE, and the statements that empty one like it
        self._shape = ""
        self._emptying = ""

    def take(self) -> str:
        """An empty migrated schema."""
        if self._free:
            return self._free.pop()
        name = "iotiam_t_" + secrets.token_hex(6)
        with self._admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}"))
        self._made.append(name)
        engine = make_engine(schema_url(name))
        try:
            upgrade_to_head(engine)
        finally:
            engine.dispose()
        if not self._shape:
            with self._admin.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL search_path = {name}")
                self._shape = conn.execute(SCHEMA_SHAPE).scalar_one()
                sequences = conn.execute(text(
                    "SELECT sequencename FROM pg_sequences WHERE schemaname = :name"
                ), {"name": name}).scalars()
                # children before parents, so that no foreign key refuses a delete
                self._emptying = "; ".join(
                    [f'DELETE FROM "{table.name}"' for table in reversed(metadata.sorted_tables)]
                    + [f'ALTER SEQUENCE "{sequence}" RESTART' for sequence in sequences])
        return name

    def give_back(self, name: str) -> None:
        """Empty ``name`` for the next test, or drop it if the test changed its catalog
        or its rows cannot be deleted (a connection a test left open holds them)."""
        try:
            with self._admin.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL search_path = {name}; "
                                     "SET LOCAL lock_timeout = '5s'")
                if conn.execute(SCHEMA_SHAPE).scalar_one() != self._shape:
                    raise LookupError(f"schema {name} changed")
                conn.exec_driver_sql(self._emptying)  # one round trip
        except (LookupError, SQLAlchemyError):
            self._drop(name)
        else:
            self._free.append(name)

    def _drop(self, name: str) -> None:
        self._made.remove(name)
        drop_schema(self._admin, name)

    def close(self) -> None:
        """Drop every schema the pool made."""
        for name in list(self._made):
            self._drop(name)
        self._free.clear()
        self._admin.dispose()


_pools: list[SchemaPool] = []


def _schema_pool() -> SchemaPool:
    assert PG_URL
    if not _pools:
        _pools.append(SchemaPool(PG_URL))
    return _pools[0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the pooled PostgreSQL schemas."""
    while _pools:
        _pools.pop().close()
    while _sqlite_templates:
        shutil.rmtree(_sqlite_templates.pop().parent, ignore_errors=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """``None`` (SQLite in the data directory) or a fresh PostgreSQL schema."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        yield from postgres_schema_url()
    else:
        yield None


@dataclass
class Installation:
    """An initialised data directory with wired services and the bootstrap admin token."""

    settings: Settings
    services: Services
    clock: FrozenClock
    admin_token: str
    _clients: list[TestClient] = field(default_factory=list)

    def api(self, token: str | None = None) -> TestClient:
        """An in-process client of the admin API, authenticated with ``token``."""
        client = TestClient(create_api_app(self.services), raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {token or self.admin_token}"
        self._clients.append(client)
        return client

    def public(self) -> TestClient:
        """An in-process client of the plain-HTTP endpoints."""
        client = TestClient(create_public_app(self.services), raise_server_exceptions=False)
        self._clients.append(client)
        return client

    def token(self, role: str, org: str | None = None) -> str:
        """Mint an admin-API token through the API."""
        body: dict[str, Any] = {"name": f"{role}-{secrets.token_hex(3)}", "role": role}
        if org:
            body["org"] = org
        answer = self.api().post("/v1/tokens", json=body)
        assert answer.status_code == 201, answer.text
        token: str = answer.json()["token"]
        return token

    def risk_entries(self) -> dict[str, RiskEntry]:
        """Every entry of the risk register, by id (paged through the service)."""
        found: dict[str, RiskEntry] = {}
        after = None
        while True:
            page, _, after = self.services.risk.entries(SYSTEM, after=after, limit=1000)
            found.update((e.id, e) for e in page)
            if after is None:
                return found

    def close(self) -> None:
        """Release clients and connections."""
        for client in self._clients:
            client.close()
        self.services.close()


def make_installation(data_dir: Path, database_url: str | None) -> Installation:
    """Run ``init`` and wire the services on a frozen clock."""
    clock = FrozenClock(START)
    settings = Settings(data_dir=data_dir, database_url=database_url, port=18443,
                        http_port=18080)
    initialize(settings, clock=clock)
    services = build_services(settings, clock=clock)
    token = json.loads((data_dir / "profile.json").read_text())["token"]
    return Installation(settings=settings, services=services, clock=clock, admin_token=token)


@pytest.fixture(params=BACKENDS)
def installation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Installation]:
    """A fresh installation on each configured backend."""
    yield from _installation(request.param, tmp_path)


@pytest.fixture(params=BACKENDS)
def sql_installation(request: pytest.FixtureRequest, tmp_path: Path
                     ) -> Iterator[Installation]:
    """``installation``, for a test of what the database stores in a module whose
    other tests run in memory."""
    yield from _installation(request.param, tmp_path)


def _installation(backend: str, tmp_path: Path) -> Iterator[Installation]:
    # the schema comes migrated (the migrations' own tests run on installations too, on
    # the pool's first schema and the SQLite template): ``init`` finds nothing to upgrade
    data_dir = tmp_path / "data"
    if backend == "postgresql":
        gen = migrated_schema_url()
        url: str | None = next(gen)
    else:
        gen, url = None, None
        data_dir.mkdir(mode=0o700)
        shutil.copyfile(migrated_sqlite_template(), data_dir / "iotiam.db")
    inst = make_installation(data_dir, url)
    try:
        yield inst
    finally:
        inst.close()
        if gen is not None:
            for _ in gen:
                pass


_sqlite_templates: list[Path] = []


def migrated_sqlite_template() -> Path:
    """A SQLite database at the newest migration with no rows, made once per test
    process; copying it is what migrating a new one per test cost (~0.4 s)."""
    if not _sqlite_templates:
        path = Path(tempfile.mkdtemp(prefix="iotiam-template-")) / "iotiam.db"
        engine = make_engine(f"sqlite:///{path}")
        try:
            upgrade_to_head(engine)
        finally:
            engine.dispose()  # the last connection closing folds the WAL into the file
        _sqlite_templates.append(path)
    return _sqlite_templates[0]


@contextmanager
def store_database(kind: str, tmp_path: Path) -> Iterator[Any]:
    """A new database at the newest migration for a store test: ``memory`` (the fakes),
    ``sqlite`` (a copy of the template) or ``postgresql`` (a pooled migrated schema)."""
    if kind == "memory":
        from iotiam.testing.fakes.unit_of_work import MemoryDatabase

        yield MemoryDatabase()
        return
    if kind == "sqlite":
        shutil.copyfile(migrated_sqlite_template(), tmp_path / "store.db")
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'store.db'}"])
    else:
        urls = migrated_schema_url()
    database = Database(make_engine(next(urls)))
    try:
        yield database
    finally:
        database.dispose()
        for _ in urls:  # hands a pooled schema back
            pass


def make_memory_installation(data_dir: Path, *,
                             sightings: SightingSink | None = None) -> Installation:
    """An installation whose stores live in memory (``iotiam.testing.fakes``): seeded
    like ``init``, wired like ``build_services``, on the same frozen clock. No data
    directory is written; ``settings`` names one only for what reads its values.
    What its own traffic sees of unmanaged identities goes to ``sightings`` (its own
    discovery when None)."""
    clock = FrozenClock(START)
    settings = Settings(data_dir=data_dir, port=18443, http_port=18080)
    config = MemoryConfig(pki=settings.pki, tokens=token_config(settings),
                          queue=QueueLimits(
                              retry_after_seconds=settings.est_retry_after_seconds),
                          detection_learning_seconds=settings.detection_learning_seconds)
    memory = memory_services(config, clock=clock, sightings=sightings)
    services = Services(
        settings=settings, clock=clock,
        database=memory.database,  # type: ignore[arg-type]  # the memory Transactions
        changes=memory.changes,
        audit=memory.audit, checkpoints=memory.checkpoints, admin_tokens=memory.admin_tokens,
        inventory=memory.inventory, pki=memory.pki, enrollment=memory.enrollment,
        psks=memory.psks, manufacturers=memory.manufacturers,
        enrollment_queue=memory.enrollment_queue, first_contact=memory.first_contact,
        transfers=memory.transfers, policies=memory.policies, decisions=memory.decisions,
        subjects=memory.subjects, inquiry=memory.inquiry, oauth=memory.oauth,
        firmware=memory.firmware, attestation=memory.attestation, response=memory.response,
        trust=memory.trust, ingest=memory.ingest, alerts=memory.alerts,
        discovery=memory.discovery, adoption=memory.adoption, risk=memory.risk,
        gateways=memory.gateways)
    return Installation(settings=settings, services=services, clock=clock,
                        admin_token=memory.admin_token)


@pytest.fixture
def memory_installation(tmp_path: Path) -> Iterator[Installation]:
    """A fresh installation in memory: for tests of use cases, not of storage."""
    inst = make_memory_installation(tmp_path / "data")
    try:
        yield inst
    finally:
        inst.close()


@contextmanager
def writer_held(database: Database) -> Iterator[threading.Event]:
    """Another thread holds a write transaction until the block ends or the yielded
    event is set."""
    holding, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with database():
            holding.set()
            leave.wait(10)

    writer = threading.Thread(target=hold)
    writer.start()
    try:
        assert holding.wait(10)
        yield leave
    finally:
        leave.set()
        writer.join(10)
