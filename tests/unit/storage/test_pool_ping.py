"""A pooled PostgreSQL connection idle ``PING_AFTER_IDLE_S`` or more is pinged before a
transaction uses it: one whose backend died meanwhile is replaced, and the transaction
runs on a live one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import PG_URL, store_database
from iotiam.storage import database as database_module
from iotiam.storage.database import Database

pytestmark = pytest.mark.skipif(not PG_URL, reason="PostgreSQL's pool")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with store_database("postgresql", tmp_path) as database:
        yield database


def _backend(db: Database) -> int:
    with db.reading() as uow:
        return int(uow.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(db: Database, pid: int) -> None:
    with db.reading() as uow:  # another pooled connection (the first is checked in)
        killer = uow.conn.connection.dbapi_connection
        assert killer is not None
        killer.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])


def test_ok_an_idle_connection_whose_backend_died_is_replaced(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database_module, "PING_AFTER_IDLE_S", 0.0)
    with db.reading() as one, db.reading() as two:  # two pooled connections
        first = int(one.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        two.conn.execute(text("SELECT 1"))
    _kill(db, first)
    seen = {_backend(db) for _ in range(3)}
    assert first not in seen


def test_fail_a_backend_that_died_under_a_recent_connection_is_storage_unavailable(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database_module, "PING_AFTER_IDLE_S", 3600.0)
    with db.reading() as one, db.reading() as two:
        first = int(one.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        two.conn.execute(text("SELECT 1"))
    _kill(db, first)
    outcomes = []
    for _ in range(3):  # the dead one fails its transaction alone; the pool replaces it
        try:
            outcomes.append(_backend(db))
        except database_module.StorageUnavailable:
            outcomes.append(-1)
    assert first not in outcomes
    assert -1 in outcomes  # not asked first: its own transaction is what found it gone
    assert [o for o in outcomes if o != -1]
