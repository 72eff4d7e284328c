"""Rows written from two places at once: both writers succeed and the later one wins.

The trust refresher in ``serve`` and an API request (``GET /v1/devices/{id}/trust``
rescores the device) may store the same device's score at the same moment, as two
admins may set the same detection mode or playbook; on PostgreSQL a delete-then-insert
made the second writer fail on the primary key (409).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fleet import add_device

from conftest import Installation
from iotiam.detection.models import DetectionMode
from iotiam.response.models import TrustFactor, TrustScore
from iotiam.response.ports import ResponseUnitOfWork

Write = Callable[[ResponseUnitOfWork, int], None]
Read = Callable[[ResponseUnitOfWork], Any]


def _at(n: int) -> datetime:
    return datetime(2026, 3, 1, 12, tzinfo=UTC) + timedelta(seconds=n)


def _score(uow: ResponseUnitOfWork, n: int) -> None:
    uow.trust.put(TrustScore("t1", 50 + n, (TrustFactor("credentials", -n, "none"),),
                             n % 2 == 0, _at(n)))


def _mode(uow: ResponseUnitOfWork, n: int) -> None:
    mode = (DetectionMode.MONITOR, DetectionMode.ENFORCE)[n]
    uow.detection_settings.set_mode("sensor", mode, _at(n), f"admin-{n}")


def _document(uow: ResponseUnitOfWork, n: int) -> None:
    uow.detection_settings.put_document("playbook", f'{{"rules": [], "n": {n}}}', _at(n))


CASES: dict[str, tuple[Write, Read, Any]] = {
    "trust-score": (_score, lambda uow: uow.trust.for_devices(["t1"])["t1"].score, 51),
    "detection-mode": (_mode, lambda uow: uow.detection_settings.modes()["sensor"],
                       DetectionMode.ENFORCE),
    "playbook": (_document, lambda uow: uow.detection_settings.get_document("playbook"),
                 '{"rules": [], "n": 1}'),
}


@pytest.mark.parametrize("case", list(CASES), ids=[f"ok/{c}" for c in CASES])
def test_ok_concurrent_writers_of_one_row_both_succeed(installation: Installation,
                                                        case: str) -> None:
    write, read, expected = CASES[case]
    add_device(installation.api(), "t1")
    database = installation.services.database
    first_written, errors = threading.Event(), []

    def later_writer() -> None:
        try:
            first_written.wait(10)
            with database() as uow:  # waits for the first transaction, then replaces it
                write(uow, 1)
        except Exception as e:  # reported by the assertion below
            errors.append(e)

    writer = threading.Thread(target=later_writer)
    writer.start()
    with database() as uow:
        write(uow, 0)
        first_written.set()
        writer.join(0.5)  # the other writer is now waiting on this one
    writer.join(10)
    assert errors == []
    with database.reading() as uow:
        assert read(uow) == expected


def test_ok_a_batch_of_scores_is_stored_as_one_upsert_after_another(
        installation: Installation) -> None:
    """``put_many`` is one statement on PostgreSQL (``unnest``): a device named twice keeps
    its last score, every firmware verdict (none, true, false) and instant round-trips,
    and a stored score is replaced."""
    api = installation.api()
    for device_id in ("b1", "b2", "b3"):
        add_device(api, device_id)
    database = installation.services.database
    factors = (TrustFactor("credentials", -5, "none"),)
    with database() as uow:
        uow.trust.put(TrustScore("b3", 10, factors, True, _at(0)))
    with database() as uow:
        uow.trust.put_many([
            TrustScore("b1", 40, factors, None, _at(1)),
            TrustScore("b2", 60, (), False, _at(2)),
            TrustScore("b1", 70, (), True, _at(3)),
            TrustScore("b3", 90, factors, None, _at(4)),
        ])
    with database.reading() as uow:
        stored = uow.trust.for_devices(["b1", "b2", "b3"])
    assert {d: (s.score, s.firmware_compliant, s.computed_at, s.factors)
            for d, s in stored.items()} == {
        "b1": (70, True, _at(3), ()),
        "b2": (60, False, _at(2), ()),
        "b3": (90, None, _at(4), factors),
    }
