"""Singleton leadership over PostgreSQL advisory locks: two electors on two
connections (as two replicas), one job that must never run twice at once; a winner waits
the takeover time only after a term that did not end cleanly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from conftest import PG_URL, migrated_schema_url
from iotiam.background import Job
from iotiam.election import Elector
from iotiam.storage.database import Database, make_engine
from iotiam.storage.pg_leadership import TAKEOVER_SECONDS, AdvisoryLocks

CHECK = 0.05


class Exclusive:
    """A singleton job's loop that counts how many copies run at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: list[str] = []
        self.most = 0
        self.runs: list[str] = []

    def job(self, who: str) -> Job:
        def run(stop: threading.Event) -> None:
            with self._lock:
                self.running.append(who)
                self.runs.append(who)
                self.most = max(self.most, len(self.running))
            stop.wait()
            with self._lock:
                self.running.remove(who)
        return Job("crl-refresher", run, singleton=True)


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("IOTIAM_TEST_DATABASE_URL is not set")
    yield from migrated_schema_url()


class Replica:
    """One elector on its own database connection, campaigning in a thread."""

    def __init__(self, url: str, who: str, exclusive: Exclusive) -> None:
        self.database = Database(make_engine(url))
        self.locks = AdvisoryLocks(self.database)
        self.elector = Elector(self.locks, [exclusive.job(who)], check_seconds=CHECK)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        self.thread.join(20)
        self.database.dispose()


def _until(condition: Callable[[], bool], seconds: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.01)
    return time.monotonic() - started


def test_leadership_ok_one_leader_and_takeover_when_its_connection_dies(pg_url: str) -> None:
    exclusive = Exclusive()
    a = Replica(pg_url, "a", exclusive)
    b: Replica | None = None
    try:
        # a new installation's first leader has no predecessor to wait for
        took = _until(lambda: a.elector.leading() == ["crl-refresher"], TAKEOVER_SECONDS + 5)
        assert took < TAKEOVER_SECONDS
        b = Replica(pg_url, "b", exclusive)
        time.sleep(TAKEOVER_SECONDS + 10 * CHECK)  # b campaigns all along, and loses
        assert b.elector.leading() == []
        assert exclusive.runs == ["a"]
        # the lock's session ends as it would when the leader's host drops off
        with b.database() as uow:
            uow.conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                             {"pid": a.locks.backend_pid()})
        took = _until(lambda: b is not None and b.elector.leading() == ["crl-refresher"],
                      TAKEOVER_SECONDS + 5)
        # a's term was left open: b waited the time a cut-off leader needs to stop
        assert TAKEOVER_SECONDS <= took < TAKEOVER_SECONDS + 3
        assert a.elector.leading() == []  # a stopped its copy before b started one
        # b leads once its job's thread is started; the loop itself begins a moment later
        _until(lambda: len(exclusive.runs) > 1, 5)
        assert exclusive.runs == ["a", "b"]
        assert exclusive.most == 1
    finally:
        a.end()
        if b is not None:
            b.end()
    assert exclusive.most == 1


def test_leadership_ok_resigning_leader_hands_over_at_once(pg_url: str) -> None:
    exclusive = Exclusive()
    a = Replica(pg_url, "a", exclusive)
    b = Replica(pg_url, "b", exclusive)
    try:
        _until(lambda: len(exclusive.running) == 1, TAKEOVER_SECONDS + 5)
        first, second = (a, b) if exclusive.running == ["a"] else (b, a)
        first.stop.set()  # SIGTERM's drain: end the job, then unlock
        first.thread.join(20)
        assert first.locks.backend_pid() is None
        # the term was released after its job ended: one campaign and no takeover wait
        took = _until(lambda: second.elector.leading() == ["crl-refresher"],
                      TAKEOVER_SECONDS + 5)
        assert took < TAKEOVER_SECONDS
        assert exclusive.most == 1
    finally:
        a.end()
        b.end()


def test_leadership_ok_installations_in_two_schemas_do_not_share_locks(pg_url: str) -> None:
    """Advisory locks are per database: the key includes the schema."""
    other = migrated_schema_url()
    other_url = next(other)
    try:
        one, two = Exclusive(), Exclusive()
        a, b = Replica(pg_url, "a", one), Replica(other_url, "b", two)
        try:
            _until(lambda: one.runs == ["a"] and two.runs == ["b"], TAKEOVER_SECONDS + 5)
        finally:
            a.end()
            b.end()
    finally:
        for _ in other:
            pass
