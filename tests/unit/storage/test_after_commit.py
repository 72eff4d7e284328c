"""Work a transaction asks for after its commit (``iotiam.storage.after_commit``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from iotiam.errors import InvalidInput
from iotiam.storage.after_commit import after_commit
from iotiam.storage.database import Database, make_engine
from iotiam.storage.migrate import upgrade_to_head


@pytest.fixture
def db(tmp_path: Path) -> Database:
    engine = make_engine(f"sqlite:///{tmp_path / 'iotiam.db'}")
    upgrade_to_head(engine)
    return Database(engine)


def test_ok_runs_once_after_the_commit_with_the_engine(db: Database) -> None:
    seen: list[int] = []

    def job(engine: Engine) -> None:
        with engine.connect() as conn:  # the commit is visible to another connection
            seen.append(conn.execute(text("SELECT count(*) FROM sites")).scalar_one())

    with db() as uow:
        uow.conn.execute(text("INSERT INTO sites (name, timezone, networks, created_at) "
                              "VALUES ('s1', 'UTC', '[]', '2026-12-07 00:00:00')"))
        after_commit(uow.conn, job)
        assert seen == []
    with db():
        pass
    assert seen == [1]


def test_fail_rolled_back_transaction_runs_nothing_now_or_later(db: Database) -> None:
    seen: list[str] = []
    with pytest.raises(InvalidInput), db() as uow:
        after_commit(uow.conn, lambda engine: seen.append("ran"))
        raise InvalidInput("refused")
    with db():
        pass
    assert seen == []


def test_fail_a_failing_job_is_logged_and_the_others_still_run(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def broken(engine: Engine) -> None:
        raise RuntimeError("housekeeping broke")

    with db() as uow:
        after_commit(uow.conn, broken)
        after_commit(uow.conn, lambda engine: seen.append("second"))
    assert seen == ["second"]
    assert "work after a commit failed" in caplog.text


def test_fail_a_rolled_back_savepoint_takes_its_jobs_along(db: Database) -> None:
    seen: list[str] = []
    with db() as uow:
        after_commit(uow.conn, lambda engine: seen.append("outer"))
        with pytest.raises(InvalidInput), uow.savepoint():
            after_commit(uow.conn, lambda engine: seen.append("inner"))
            raise InvalidInput("refused")
    assert seen == ["outer"]
