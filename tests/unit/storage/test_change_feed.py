"""The change feed: delivered after commit, in order, at least once, on both backends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import PG_URL, postgres_schema_url
from iotiam.changes import (
    KINDS,
    CertificateRevoked,
    Change,
    CredentialRevoked,
    DetectionModeChanged,
    DeviceChanged,
    Published,
    from_fields,
    kind_name,
    to_fields,
)
from iotiam.storage.change_delivery import GAP_GRACE, ChangeCursor, ChangeDelivery
from iotiam.storage.database import Database, make_engine
from iotiam.storage.migrate import upgrade_to_head
from iotiam.storage.pg_feed import ListeningChangeFeed
from iotiam.storage.polling_feed import PollingChangeFeed

REVOKED = CertificateRevoked(serial=0x1F2E3D4C5B6A79880011223344556677, issuer_id="issuing-1",
                             device_id="d1")


def _database(url: str) -> Database:
    engine = make_engine(url)
    upgrade_to_head(engine)
    return Database(engine)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'iotiam.db'}"


@pytest.fixture
def databases(sqlite_url: str) -> Iterator[Callable[[], Database]]:
    opened: list[Database] = []

    def open_one() -> Database:
        opened.append(_database(sqlite_url))
        return opened[-1]

    yield open_one
    for database in opened:
        database.dispose()


def _record(database: Database, *changes: Change) -> None:
    with database() as uow:
        for change in changes:
            uow.changes.record(change)


class Seen:
    """A consumer remembering what it was given."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.arrived = threading.Event()

    def __call__(self, published: Published) -> None:
        self.published.append(published)
        self.arrived.set()

    @property
    def changes(self) -> list[Change]:
        return [p.change for p in self.published]

    def wait_for(self, count: int, seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while len(self.published) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.published) >= count, self.changes


@pytest.mark.parametrize("change", [
    REVOKED, CredentialRevoked("psk", "psk-1", None), DeviceChanged(("a", "b"), "quarantined"),
    DetectionModeChanged("sensor", "enforce")], ids=lambda c: kind_name(c))
def test_fields_ok_round_trip(change: Change) -> None:
    assert from_fields(kind_name(change), to_fields(change)) == change
    assert KINDS[kind_name(change)] is type(change)


def test_feed_ok_own_commit_delivered_before_the_call_returns_while_another_delivers(
        databases: Callable[[], Database]) -> None:
    """A commit made while another thread is delivering (the listener catching up, a
    slow consumer) is still delivered before the committing call returns (G3)."""
    database = databases()
    feed = PollingChangeFeed(database)
    seen = Seen()
    busy = threading.Event()

    def slow(published: Published) -> None:
        if published.change == REVOKED:
            busy.set()
            time.sleep(0.3)  # another thread holds the delivery meanwhile

    feed.subscribe((CertificateRevoked,), slow)
    feed.subscribe((CertificateRevoked,), seen)
    first = threading.Thread(target=_record, args=(database, REVOKED))
    first.start()
    assert busy.wait(5)
    second = CertificateRevoked(serial=2, issuer_id="issuing-1", device_id="d2")
    _record(database, second)
    assert seen.changes == [REVOKED, second]
    first.join(5)


def test_feed_ok_own_commit_delivered_at_once_in_order(
        databases: Callable[[], Database]) -> None:
    database = databases()
    feed = PollingChangeFeed(database)
    revoked, devices = Seen(), Seen()
    feed.subscribe((CertificateRevoked, CredentialRevoked), revoked)
    feed.subscribe((DeviceChanged,), devices)
    psk = CredentialRevoked("psk", "psk-1", "d1")
    _record(database, REVOKED, DeviceChanged(("d1",), "quarantined"))
    _record(database, psk)
    # no poll ran: the committing process delivered its own changes on commit
    assert revoked.changes == [REVOKED, psk]
    assert devices.changes == [DeviceChanged(("d1",), "quarantined")]
    positions = [p.position for p in revoked.published]
    assert positions == sorted(positions) and feed.position == positions[-1]
    assert feed.deliver_pending() == 0  # nothing twice


def test_feed_ok_rolled_back_change_never_published(databases: Callable[[], Database]) -> None:
    database = databases()
    feed = PollingChangeFeed(database)
    seen = Seen()
    feed.subscribe((CertificateRevoked,), seen)
    with pytest.raises(RuntimeError), database() as uow:
        uow.changes.record(REVOKED)
        raise RuntimeError("the use case failed")
    assert feed.deliver_pending() == 0 and seen.changes == []


def test_feed_ok_starts_after_what_was_committed_before(
        databases: Callable[[], Database]) -> None:
    database = databases()
    _record(database, REVOKED)
    feed = PollingChangeFeed(database)
    seen = Seen()
    feed.subscribe((CertificateRevoked,), seen)
    assert feed.deliver_pending() == 0 and seen.changes == []


def test_feed_ok_other_process_seen_by_poll(databases: Callable[[], Database]) -> None:
    """Two processes on one SQLite file (``serve --workers``): the other's poll sees it."""
    here, there = databases(), databases()
    feed = PollingChangeFeed(there, poll_seconds=0.02)
    seen = Seen()
    feed.subscribe((CertificateRevoked,), seen)
    stop = threading.Event()
    poller = threading.Thread(target=feed.run, args=(stop,))
    poller.start()
    try:
        started = time.monotonic()
        _record(here, REVOKED)
        assert seen.arrived.wait(2)
        assert time.monotonic() - started < 1.0
        assert seen.changes == [REVOKED]
    finally:
        stop.set()
        poller.join(5)


def test_feed_ok_consumer_failure_spares_the_others(databases: Callable[[], Database]) -> None:
    database = databases()
    feed = PollingChangeFeed(database)
    seen = Seen()

    def broken(published: Published) -> None:
        raise ValueError("a bug in one consumer")

    feed.subscribe((CertificateRevoked,), broken)
    feed.subscribe((CertificateRevoked,), seen)
    _record(database, REVOKED)
    assert seen.changes == [REVOKED]


def test_prune_ok_old_rows_go_newest_stays(databases: Callable[[], Database]) -> None:
    database = databases()
    feed = PollingChangeFeed(database)
    _record(database, REVOKED)
    _record(database, REVOKED)
    later = datetime.now(UTC) + timedelta(days=2)
    assert feed.prune(timedelta(days=1), later) == 1
    with database.reading() as uow:
        assert uow.conn.execute(text("SELECT count(*) FROM changes")).scalar() == 1
    # ids are never reused: a new feed and a new change still move forward
    position = feed.position
    _record(database, REVOKED)
    assert feed.position > position


def test_cursor_ok_gap_waited_for_then_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL may commit id 11 before id 10: 10 is read again until it comes (or
    ``GAP_GRACE`` passes: its transaction rolled back)."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cursor = ChangeCursor(9)
    change = Published(11, REVOKED)
    assert cursor.unseen([change]) == [change]
    cursor.delivered([11])
    assert cursor.position == 9 and cursor.unseen([change]) == []
    late = Published(10, REVOKED)
    assert cursor.unseen([late, change]) == [late]
    cursor.delivered([10])
    assert cursor.position == 11
    cursor.delivered([13])
    assert cursor.position == 11
    now[0] += GAP_GRACE
    cursor.delivered([])
    cursor.delivered([14])
    assert cursor.position == 14


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("IOTIAM_TEST_DATABASE_URL is not set")
    yield from postgres_schema_url()


def _running(feed: ListeningChangeFeed, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=feed.run, args=(stop,), daemon=True)
    thread.start()
    # listening: a connection ended before its LISTEN is not counted in ``connections``
    deadline = time.monotonic() + 10
    while feed.connections < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert feed.connections >= 1 and feed.listener_pid() is not None
    return thread


def test_listening_feed_ok_two_replicas(pg_url: str) -> None:
    """Replica B learns of a revocation committed on replica A within a second."""
    a, b = _database(pg_url), _database(pg_url)
    stop = threading.Event()
    feed_a, feed_b = ListeningChangeFeed(a, idle_seconds=5), ListeningChangeFeed(b, idle_seconds=5)
    on_a, on_b = Seen(), Seen()
    feed_a.subscribe((CertificateRevoked,), on_a)
    feed_b.subscribe((CertificateRevoked,), on_b)
    threads = [_running(feed_a, stop), _running(feed_b, stop)]
    try:
        started = time.monotonic()
        _record(a, REVOKED)
        assert on_a.changes == [REVOKED]  # its own commit: at once
        assert on_b.arrived.wait(1.0)  # the other replica: through NOTIFY
        assert time.monotonic() - started < 1.0
        assert on_b.changes == [REVOKED]
        assert on_b.published[0].position == on_a.published[0].position
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        a.dispose()
        b.dispose()


def test_listening_feed_ok_lost_connection_catches_up(pg_url: str) -> None:
    a, b = _database(pg_url), _database(pg_url)
    stop = threading.Event()
    feed_b = ListeningChangeFeed(b, idle_seconds=30)  # no timed read: catch-up does it
    on_b = Seen()
    feed_b.subscribe((CertificateRevoked, DeviceChanged), on_b)
    thread = _running(feed_b, stop)
    try:
        pid = feed_b.listener_pid()
        with a() as uow:
            uow.conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        def gone() -> bool:
            with a.reading() as uow:
                return uow.conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid}).scalar() == 0

        deadline = time.monotonic() + 5
        while not gone():  # termination is asynchronous
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # committed while B has no listening connection: its NOTIFY reaches nobody
        _record(a, REVOKED)
        _record(a, DeviceChanged(("d1",)))
        on_b.wait_for(2, seconds=10)
        assert on_b.changes == [REVOKED, DeviceChanged(("d1",))]
        assert feed_b.connections >= 2
    finally:
        stop.set()
        thread.join(40)
        a.dispose()
        b.dispose()


def test_delivery_ok_is_the_base_of_both() -> None:
    assert issubclass(PollingChangeFeed, ChangeDelivery)
    assert issubclass(ListeningChangeFeed, ChangeDelivery)


def test_subscribe_ok_after_a_position_catches_up(databases: Callable[[], Database]) -> None:
    """A consumer built while changes were delivered (the broker sync during its cold
    start) asks for what it missed since the position it read before."""
    database = databases()
    feed = PollingChangeFeed(database)
    mark = feed.position
    psk = CredentialRevoked("psk", "psk-1", "d1")
    _record(database, REVOKED, DeviceChanged(("d2",)))
    _record(database, psk)
    late = Seen()
    feed.subscribe((CertificateRevoked, CredentialRevoked), late, after=mark)
    assert late.changes == [REVOKED, psk]
    _record(database, REVOKED)
    assert late.changes == [REVOKED, psk, REVOKED]


def test_feed_ok_own_commit_after_anothers_keeps_the_order(
        databases: Callable[[], Database]) -> None:
    """A's own commit follows B's, which A's poll has not read yet: A reads B's first."""
    here, there = databases(), databases()
    feed = PollingChangeFeed(here)
    seen = Seen()
    feed.subscribe((CertificateRevoked, DeviceChanged), seen)
    _record(there, DeviceChanged(("from-b",)))
    _record(here, REVOKED)
    assert seen.changes == [DeviceChanged(("from-b",)), REVOKED]
    positions = [p.position for p in seen.published]
    assert positions == sorted(positions)


def test_feed_ok_change_of_a_rolled_back_savepoint_not_published(
        databases: Callable[[], Database]) -> None:
    database = databases()
    feed = PollingChangeFeed(database)
    seen = Seen()
    feed.subscribe((CertificateRevoked, DeviceChanged), seen)
    with database() as uow:
        with pytest.raises(RuntimeError), uow.savepoint():
            uow.changes.record(DeviceChanged(("undone",)))
            raise RuntimeError("this row failed")
        uow.changes.record(REVOKED)
    assert seen.changes == [REVOKED]
    assert feed.deliver_pending() == 0
