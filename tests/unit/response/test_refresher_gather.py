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
