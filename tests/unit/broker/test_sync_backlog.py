"""``BrokerSync.backlog``: what ``/metrics`` shows of the broker sync's queue."""

from __future__ import annotations

import time
from pathlib import Path

from iotiam.broker.layout import BrokerFiles
from iotiam.broker.sync import BrokerSync
from iotiam.clock import FrozenClock


def test_backlog_ok_counts_devices_and_ages_from_the_oldest(tmp_path: Path) -> None:
    sync = BrokerSync(None, FrozenClock(), BrokerFiles(tmp_path),  # type: ignore[arg-type]
                      lambda: None, None)  # type: ignore[arg-type,return-value]
    assert sync.backlog() == (0, 0.0)
    sync.request(["d1", "d2"])
    time.sleep(0.05)
    sync.request(["d2", "d3"], kick=True)  # a later request keeps the oldest's age
    queued, oldest = sync.backlog()
    assert queued == 3 and oldest >= 0.05
    sync.request([])  # nothing queued by an empty request
    assert sync.backlog()[0] == 3
