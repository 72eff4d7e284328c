"""Migration 0025 on both backends: findings stored before it keep folding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from conftest import BACKENDS, postgres_schema_url
from iotiam.detection.models import FindingType
from iotiam.storage.database import make_engine
from iotiam.storage.migrate import alembic_config
from iotiam.storage.response_store import SqlFindingStore

OLD_FINDING = text(
    "INSERT INTO findings (id, device_id, device_type, org_path, type, severity, state, "
    "mode, detector, summary, evidence, event_at, raised_at, updated_at, repeats, actions) "
    "VALUES (:id, :device, 'sensor', '/root/', 'rate_change', 2, 'open', 'monitor', "
    "'rate_change', 's', '{}', :at, :at, :at, 0, '[]')")


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'iotiam.db'}"
    else:
        yield from postgres_schema_url()


def test_migration_0025_ok_gives_old_findings_their_subject_and_episode_end(
        empty_database: str) -> None:
    """Findings stored before 0025 (folded per device and type) keep folding: a device's
    under ``device:<id>``, a fleet one under ``fleet``, their event time the episode's end."""
    engine = make_engine(empty_database)
    cfg = alembic_config()
    at = datetime(2026, 3, 1, 12, 0)
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0022")
            conn.execute(OLD_FINDING, [{"id": "fnd-1", "device": "s1", "at": at},
                                       {"id": "fnd-2", "device": None, "at": at}])
            command.upgrade(cfg, "heads")
            store = SqlFindingStore(conn)
            device = store.live_for("device:s1", FindingType.RATE_CHANGE)
            fleet = store.live_for("fleet", FindingType.RATE_CHANGE)
            conn.commit()
    finally:
        engine.dispose()
    assert device is not None and fleet is not None
    assert (device.id, fleet.id) == ("fnd-1", "fnd-2")
    assert device.last_event_at == device.finding.at == at.replace(tzinfo=UTC).timestamp()
