"""Writes ``RawSql.defer`` holds back (PostgreSQL sends them with the next statement
that is waited for, or with the COMMIT): the transaction reads and stores exactly what
it would have with each write sent at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import BACKENDS, store_database
from iotiam.errors import Conflict
from iotiam.storage.database import Database, StorageUnavailable
from iotiam.storage.raw import RawSql, RawStatement

_ADD = RawStatement("INSERT INTO sites (name, timezone, networks, created_at) "
                    "VALUES (:name, 'UTC', '[]', '2026-12-07 00:00:00')")
_RENAME = RawStatement("UPDATE sites SET timezone = :zone WHERE name = :name")
_NAMES = RawStatement("SELECT name FROM sites ORDER BY name")


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with store_database(request.param, tmp_path) as database:
        yield database


def _sites(db: Database) -> list[tuple[Any, ...]]:
    with db.reading() as uow:
        return [tuple(r) for r in uow.conn.execute(
            text("SELECT name, timezone FROM sites ORDER BY name"))]


def test_ok_deferred_writes_are_read_back_in_order_and_committed(db: Database) -> None:
    with db() as uow:
        raw = RawSql(uow.conn)
        raw.defer(_ADD, [{"name": "s1"}, {"name": "s2"}])
        raw.defer(_RENAME, [{"name": "s1", "zone": "Europe/Berlin"}])
        # a raw read, a Core read and a batch of reads each see every write before them
        assert [r[0] for r in raw.all(_NAMES, {})] == ["s1", "s2"]
        raw.defer(_ADD, [{"name": "s3"}])
        assert uow.conn.execute(text("SELECT count(*) FROM sites")).scalar_one() == 3
        raw.defer(_ADD, [{"name": "s4"}])
        (names, zones) = raw.all_together([
            (_NAMES, {}), (RawStatement("SELECT timezone FROM sites WHERE name = 's1'"), {})])
        assert [r[0] for r in names] == ["s1", "s2", "s3", "s4"]
        assert zones[0][0] == "Europe/Berlin"
        raw.defer(_ADD, [{"name": "s5"}])  # nothing after it: sent with the COMMIT
    assert [name for name, _ in _sites(db)] == ["s1", "s2", "s3", "s4", "s5"]
    assert ("s1", "Europe/Berlin") in _sites(db)


def test_ok_a_check_gets_the_rows_its_write_touched(db: Database) -> None:
    touched: list[int] = []
    with db() as uow:
        raw = RawSql(uow.conn)
        raw.defer(_ADD, [{"name": "s1"}, {"name": "s2"}])
        raw.defer(_RENAME, [{"name": "s1", "zone": "A"}, {"name": "nope", "zone": "B"}],
                  touched.append)
    assert touched == [1]


def test_fail_a_check_that_raises_stores_nothing_of_the_transaction(db: Database) -> None:
    def refuse(count: int) -> None:
        raise Conflict(f"{count} row(s) touched, none expected")

    # the check's write is the last: its check runs before the COMMIT is sent
    with pytest.raises(Conflict), db() as uow:
        raw = RawSql(uow.conn)
        raw.defer(_ADD, [{"name": "s1"}])
        raw.defer(_RENAME, [{"name": "s1", "zone": "A"}], refuse)
    assert _sites(db) == []
    with db() as uow:
        RawSql(uow.conn).defer(_ADD, [{"name": "s2"}])
    assert _sites(db) == [("s2", "UTC")]


def test_fail_a_deferred_write_that_the_database_refuses_fails_its_transaction(
        db: Database) -> None:
    with db() as uow:
        RawSql(uow.conn).defer(_ADD, [{"name": "s1"}])
    with pytest.raises(Conflict), db() as uow:  # the unique name, as a write sent at once
        raw = RawSql(uow.conn)
        raw.defer(_ADD, [{"name": "s2"}])
        raw.defer(_ADD, [{"name": "s1"}])
        raw.all(_NAMES, {})
    assert _sites(db) == [("s1", "UTC")]


def test_fail_a_rollback_drops_what_was_not_sent(db: Database) -> None:
    with pytest.raises(RuntimeError), db() as uow:
        RawSql(uow.conn).defer(_ADD, [{"name": "s1"}])
        raise RuntimeError("the use case failed")
    with db() as uow:  # the next transaction on the pooled connection sends nothing old
        RawSql(uow.conn).defer(_ADD, [{"name": "s2"}])
    assert _sites(db) == [("s2", "UTC")]


def test_ok_a_savepoint_rolled_back_keeps_the_writes_deferred_before_it(db: Database) -> None:
    with db() as uow:
        RawSql(uow.conn).defer(_ADD, [{"name": "before"}])
        with pytest.raises(RuntimeError), uow.savepoint():
            RawSql(uow.conn).defer(_ADD, [{"name": "inside"}])
            raise RuntimeError("only the savepoint's work goes")
    assert [name for name, _ in _sites(db)] == ["before"]


@pytest.mark.parametrize("db", BACKENDS[1:], indirect=True)  # PostgreSQL: a backend dies
def test_fail_a_lost_connection_is_storage_unavailable(db: Database) -> None:
    with pytest.raises(StorageUnavailable), db() as uow:
        RawSql(uow.conn).defer(_ADD, [{"name": "s1"}])
        uow.conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    with db() as uow:  # the pool hands out a live connection next
        RawSql(uow.conn).defer(_ADD, [{"name": "s2"}])
    assert _sites(db) == [("s2", "UTC")]
