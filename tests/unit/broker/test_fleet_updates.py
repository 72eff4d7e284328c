"""The broker's safety net (``LiveFleet.updates_since``) reports each device change once:
its windows overlap by five seconds and are polled every second, and a set revocation's
10,000 touched devices were decided again at every poll of that overlap."""

from __future__ import annotations

from datetime import timedelta

from fleet import add_device

from conftest import Installation
from iotiam.serving import broker_fleet


def test_updates_since_ok_a_change_is_reported_once(installation: Installation) -> None:
    api, clock = installation.api(), installation.clock
    start = clock.now() - timedelta(seconds=1)
    add_device(api, "d1")
    add_device(api, "d2")
    fleet = broker_fleet(installation.services)
    first = fleet.updates_since(start)
    assert {"d1", "d2"} <= first.changed
    assert first.until is not None
    clock.advance(timedelta(seconds=1))
    # the next poll's window still holds them (OVERLAP), but they were acted on
    second = fleet.updates_since(first.until)
    assert not second.changed & {"d1", "d2"}
    assert second.until is not None
    clock.advance(timedelta(seconds=1))
    add_device(api, "d3")
    third = fleet.updates_since(second.until)
    assert "d3" in third.changed and not third.changed & {"d1", "d2"}


def test_updates_since_ok_a_caller_that_failed_is_told_everything_again(
        installation: Installation) -> None:
    api, clock = installation.api(), installation.clock
    start = clock.now() - timedelta(seconds=1)
    add_device(api, "d1")
    fleet = broker_fleet(installation.services)
    assert "d1" in fleet.updates_since(start).changed
    clock.advance(timedelta(seconds=1))
    # a pass that failed asks from its old watermark: nothing is left out
    assert "d1" in fleet.updates_since(start).changed
