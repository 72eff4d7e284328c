"""The trust refresher waits for the rest of a burst: a few changed devices are scored
after ``GATHER``, a set revocation's batches (hundreds of devices a commit) are taken
together while they keep coming, so the batches are not each followed by a pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

import pytest
from policy.fakes import T0

from iotiam.changes import DeviceChanged, Published
from iotiam.clock import FrozenClock
from iotiam.response import scoring
from iotiam.response.scoring import ChangedDevices, TrustRefresher, TrustScores


class Feeding(threading.Event):
    """A stop event that never stops and, at each wait, queues the next burst."""

    def __init__(self, refresher: TrustRefresher, bursts: Sequence[Sequence[str]]) -> None:
        super().__init__()
        self.refresher = refresher
        self.bursts = [list(b) for b in bursts]
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self.bursts:
            queue(self.refresher, self.bursts.pop(0))
        return False


def queue(refresher: TrustRefresher, device_ids: Sequence[str]) -> None:
    refresher.rescore_later(Published(1, DeviceChanged(tuple(device_ids))))


def refresher(monotonic: Callable[[], float] = time.monotonic) -> TrustRefresher:
    return TrustRefresher(cast(TrustScores, None), cast(ChangedDevices, None),
                          FrozenClock(T0), monotonic=monotonic)


def batch(number: int) -> list[str]:
    return [f"d{number}-{n}" for n in range(500)]


def test_gather_ok_a_few_devices_wait_one_gather() -> None:
    waiting = refresher()
    queue(waiting, ["d1"])
    stop = Feeding(waiting, [["d2"], ["d3"]])
    waiting._gather(stop)
    assert stop.waits == [scoring.GATHER]  # two devices: not a burst, scored at once
    assert waiting.queued() == 2


def test_gather_ok_a_growing_burst_is_taken_in_one_pass() -> None:
    waiting = refresher()
    queue(waiting, batch(0))
    stop = Feeding(waiting, [batch(1), batch(2), batch(3), []])
    waiting._gather(stop)
    # after GATHER the queue is a burst; it grew at each step, then stopped growing
    assert stop.waits == [scoring.GATHER] + [scoring.GATHER_STEP] * 3
    assert waiting.queued() == 2000


def test_gather_ok_a_burst_that_never_ends_is_scored_by_gather_max() -> None:
    # the deadline is read at 0.0: GATHER_MAX later, 2.0
    times = iter([0.0, 0.0, 0.0, 1.0, 1.9, 3.0])
    waiting = refresher(lambda: next(times))
    queue(waiting, batch(0))
    stop = Feeding(waiting, [batch(n) for n in range(1, 50)])
    waiting._gather(stop)
    # still growing at 3.0, but past the deadline: scored; the last step was cut short
    assert stop.waits == [scoring.GATHER, scoring.GATHER_STEP, pytest.approx(0.1)]
    assert len(stop.bursts) == 49 - 3


def register(refresher: TrustRefresher, device_ids: Sequence[str]) -> None:
    refresher.rescore_later(Published(1, DeviceChanged(tuple(device_ids), scoring.REGISTERED)))


class Registering(threading.Event):
    """The refresher's ``urgent`` event as ``idle`` waits on it: at each wait the next
    burst of registrations (or, at ``urgent_at``, a revocation's device change) comes."""

    def __init__(self, refresher: TrustRefresher, bursts: Sequence[Sequence[str]],
                 urgent_at: int | None = None) -> None:
        super().__init__()
        self.refresher = refresher
        self.bursts = [list(b) for b in bursts]
        self.urgent_at = urgent_at
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        if self.waits == self.urgent_at:
            queue(self.refresher, ["suspended-1"])
        elif self.bursts:
            register(self.refresher, self.bursts.pop(0))
        return self.is_set()


@pytest.fixture(autouse=True)
def one_wait_a_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """``idle`` waits once on its event (which feeds the bursts), not on the wall clock."""
    monkeypatch.setattr(scoring, "idle", lambda wake, stop, seconds, step: wake.wait(seconds))


def registering(waiting: TrustRefresher, bursts: Sequence[Sequence[str]],
                urgent_at: int | None = None) -> Registering:
    event = Registering(waiting, bursts, urgent_at)
    with waiting._lock:  # the refresher's flag, replaced by one that feeds the bursts
        if waiting._urgent.is_set():
            event.set()
        waiting._urgent = event
    return event


def test_gather_ok_an_import_is_gathered_while_its_registrations_come() -> None:
    # an import of 10 requests, each committed within REGISTRATION_STEP of the last: one
    # pass after the last, where GATHER_MAX cut it into passes between the requests
    clock = iter(n / 2 for n in range(100))
    waiting = refresher(lambda: next(clock))
    register(waiting, batch(0))
    fed = registering(waiting, [batch(n) for n in range(1, 10)])
    waiting._gather(Feeding(waiting, []))
    assert fed.waits == 10  # nine that grew the queue, one that did not
    assert waiting.queued() == 5000


def test_gather_ok_registrations_are_scored_by_registration_max() -> None:
    # an import that never stops growing: scored once REGISTRATION_MAX has passed
    longer = int(scoring.REGISTRATION_MAX) + 20
    clock = iter(float(n) for n in range(2 * longer))
    waiting = refresher(lambda: next(clock))
    register(waiting, batch(0))
    fed = registering(waiting, [batch(n) for n in range(1, longer)])
    waiting._gather(Feeding(waiting, []))
    assert fed.waits == scoring.REGISTRATION_MAX - 1
    assert len(fed.bursts) < longer - 1


def test_gather_ok_another_change_ends_the_wait_for_registrations() -> None:
    # a device change that is no registration (its score may decide a request) is not
    # held back by an import: the queue is scored as a burst like any other
    clock = iter(float(n) for n in range(100))
    waiting = refresher(lambda: next(clock))
    register(waiting, batch(0))
    fed = registering(waiting, [batch(n) for n in range(1, 50)], urgent_at=3)
    stop = Feeding(waiting, [])
    waiting._gather(stop)
    assert fed.waits == 3
    assert stop.waits == [scoring.GATHER]  # past GATHER_MAX by the injected clock
    assert "suspended-1" in waiting._queued


def test_gather_ok_a_few_registrations_wait_one_gather() -> None:
    waiting = refresher()
    register(waiting, ["d1", "d2"])
    fed = registering(waiting, [["d3"]])
    stop = Feeding(waiting, [])
    waiting._gather(stop)
    assert (stop.waits, fed.waits) == ([scoring.GATHER], 0)
