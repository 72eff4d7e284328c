"""``Database.writer_if_free``: SQLite's writer is taken only when nobody holds it.

The token endpoint runs a batch on the event loop only when this says True, so a True
must mean that the transactions inside start without waiting, and a writer elsewhere (a
thread of this process, or another process on the same file) must make it say False.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import Installation, writer_held
from iotiam.storage.database import Database, make_engine
from iotiam.storage.tables.audit import audit_records

#: SQLite's writer lock; PostgreSQL has none (its own test below)
sqlite_only = pytest.mark.parametrize("installation", ["sqlite"], indirect=True)


@pytest.fixture
def sqlite_file(installation: Installation) -> Database:
    """The installation's SQLite database (a file in the data directory)."""
    database = installation.services.database
    assert database.is_sqlite
    return database


@pytest.fixture
def other_process(installation: Installation) -> Iterator[Database]:
    """A second ``Database`` on the same file: its own flock, as another process has."""
    url = installation.settings.effective_database_url
    database = Database(make_engine(url))
    yield database
    database.dispose()


@sqlite_only
def test_ok_free_writer_is_held_and_writes_inside_do_not_wait(
        sqlite_file: Database, other_process: Database) -> None:
    with sqlite_file.writer_if_free() as free:
        assert free
        with other_process.writer_if_free() as other_free:
            assert not other_free  # the flock is held for the whole block
        with sqlite_file() as uow:  # nested: the same thread's writer passes through
            uow.conn.execute(audit_records.delete().where(
                audit_records.c.seq < 0))
    with other_process.writer_if_free() as other_free:
        assert other_free  # released afterwards


@sqlite_only
def test_ok_a_writing_thread_makes_it_busy(sqlite_file: Database) -> None:
    with writer_held(sqlite_file), sqlite_file.writer_if_free() as free:
        assert not free
    with sqlite_file.writer_if_free() as free:
        assert free


@sqlite_only
def test_ok_another_process_writing_makes_it_busy(sqlite_file: Database,
                                                  other_process: Database) -> None:
    with other_process(), sqlite_file.writer_if_free() as free:
        assert not free
    with sqlite_file.writer_if_free() as free:
        assert free


def test_ok_never_free_on_postgresql(installation: Installation) -> None:
    database = installation.services.database
    with database.writer_if_free() as free:
        assert free is database.is_sqlite
