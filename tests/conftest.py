"""Shared fixtures: an initialised installation on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import json
import os
import secrets
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

from iotiam.api.app import create_api_app, create_public_app
from iotiam.bootstrap import Services, build_services, token_config
from iotiam.clock import FrozenClock
from iotiam.config import Settings
from iotiam.discovery.ports import SightingSink
from iotiam.enrollment.queue import QueueLimits
from iotiam.installation import initialize
from iotiam.storage.database import Database, make_engine
from iotiam.testing.environment import integration_required
from iotiam.testing.fakes.services import MemoryConfig, memory_services

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


def postgres_schema_url() -> Iterator[str]:
    """A throw-away PostgreSQL schema; the URL pins ``search_path`` to it."""
    assert PG_URL
    name = "iotiam_t_" + secrets.token_hex(6)
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


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
    if backend == "postgresql":
        gen = postgres_schema_url()
        url: str | None = next(gen)
    else:
        gen, url = None, None
    inst = make_installation(tmp_path / "data", url)
    try:
        yield inst
    finally:
        inst.close()
        if gen is not None:
            for _ in gen:
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
        discovery=memory.discovery, adoption=memory.adoption, risk=memory.risk)
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
