"""Storing trust scores: two writers of one device's score never conflict.

The trust refresher in ``serve`` and an API request (``GET /v1/devices/{id}/trust``
rescores the device) may store the same device's score at the same moment; on
PostgreSQL a delete-then-insert made the second fail on the primary key (409).
"""

from __future__ import annotations

import threading
from datetime import timedelta

from fleet import add_device

from conftest import Installation
from iotiam.response.models import TrustFactor, TrustScore


def test_ok_concurrent_writers_of_one_score_both_succeed(installation: Installation) -> None:
    add_device(installation.api(), "t1")
    database = installation.services.database
    now = installation.clock.now()
    first = TrustScore("t1", 80, (TrustFactor("credentials", -20, "none"),), None, now)
    second = TrustScore("t1", 55, (), True, now + timedelta(seconds=1))
    stored_first, errors = threading.Event(), []

    def later_writer() -> None:
        try:
            stored_first.wait(10)
            with database() as uow:  # waits for the first transaction, then replaces it
                uow.trust.put(second)
        except Exception as e:  # reported by the assertion below
            errors.append(e)

    writer = threading.Thread(target=later_writer)
    writer.start()
    with database() as uow:
        uow.trust.put(first)
        stored_first.set()
        writer.join(0.5)  # the other writer is now waiting on this one
    writer.join(10)
    assert errors == []
    with database.reading() as uow:
        (stored,) = uow.trust.for_devices(["t1"]).values()
    assert (stored.score, stored.firmware_compliant, stored.factors) == (55, True, ())
