"""Learned baselines survive a restart; a damaged file is set aside, never trusted."""

from __future__ import annotations

from dataclasses import replace

from fleet import add_device

from conftest import Installation
from iotiam.bootstrap import build_services
from iotiam.detection.models import Event, EventKind
from iotiam.serving import save_baselines

T0 = 1_772_366_400.0


def publishes(device_id: str, count: int) -> list[Event]:
    return [Event(kind=EventKind.PUBLISH, at=T0 + 60 * i, device_id=device_id,
                  topic=f"devices/{device_id}/t", size=40) for i in range(count)]


def test_ok_restart_carries_on_from_saved_baselines(installation: Installation) -> None:
    add_device(installation.api(), "s1")
    installation.services.ingest.ingest(publishes("s1", 50))
    save_baselines(installation.services)
    saved = installation.services.ingest.engine.snapshot()
    again = build_services(installation.settings, clock=installation.clock)
    try:
        assert again.ingest.engine.snapshot() == saved
    finally:
        again.close()


def test_fail_damaged_file_is_set_aside(installation: Installation) -> None:
    path = installation.settings.baselines_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"version": 999}')
    again = build_services(installation.settings, clock=installation.clock)
    try:
        assert again.ingest.engine.snapshot()["stats"]["events"] == 0
        assert not path.exists() and path.with_suffix(".damaged").exists()
    finally:
        again.close()


def test_ok_changed_learning_period_starts_fresh(installation: Installation) -> None:
    add_device(installation.api(), "s1")
    installation.services.ingest.ingest(publishes("s1", 5))
    save_baselines(installation.services)
    settings = replace(installation.settings, detection_learning_seconds=10.0)
    again = build_services(settings, clock=installation.clock)
    try:
        snapshot = again.ingest.engine.snapshot()
        assert snapshot["learning_seconds"] == 10.0 and snapshot["stats"]["events"] == 0
    finally:
        again.close()
