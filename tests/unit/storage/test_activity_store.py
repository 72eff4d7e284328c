"""The daily activity tallies answer alike in memory, on SQLite and on PostgreSQL, and
two leaders counting at once count each audit record once."""

from __future__ import annotations

import secrets
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import BACKENDS, migrated_schema_url
from iotiam.audit.activity import ActivityKind, DailyActivity
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.clock import FrozenClock
from iotiam.kernel import SYSTEM, Principal, Role
from iotiam.storage.database import Database, make_engine
from iotiam.storage.migrate import upgrade_to_head
from iotiam.testing.fakes.unit_of_work import MemoryDatabase

ACME, ACME2 = "/root/acme/", "/root/acme2/"
START = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("activity") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["memory", *BACKENDS])
def db(request: pytest.FixtureRequest, tmp_path: Path, migrated: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryDatabase()
        return
    if request.param == "sqlite":
        shutil.copy(migrated, tmp_path / "activity.db")
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'activity.db'}"])
    else:
        urls = migrated_schema_url()
    database = Database(make_engine(next(urls)))
    try:
        yield database
    finally:
        database.dispose()
        for _ in urls:
            pass


def audited(db: Any, clock: FrozenClock, *drafts: tuple[AuditTag, str, dict[str, Any]]
            ) -> None:
    trail = AuditTrail(db, clock, secrets.token_bytes(32))
    for tag, org_path, details in drafts:
        trail.record(AuditDraft(tag=tag, actor="test", org_path=org_path,
                                subject="device:d", details=details))


def test_ok_tallies_add_up_by_day_and_subtree(db: Any) -> None:
    clock = FrozenClock(START)
    activity = DailyActivity(db, clock, batch=2)
    audited(db, clock, (AuditTag.ENROLLMENT_SUCCEEDED, ACME, {}),
            (AuditTag.CERTIFICATE_REVOKED, ACME2, {}))
    assert activity.catch_up() == 2
    clock.advance(timedelta(hours=3))  # the next UTC day
    audited(db, clock, (AuditTag.ENROLLMENT_SUCCEEDED, ACME, {}),
            (AuditTag.ENROLLMENT_SUCCEEDED, f"{ACME}berlin/", {}),
            (AuditTag.REVOCATION_SET_BATCH_REVOKED, ACME,
             {"certificates": 7, "psks": 1, "oauth_clients": 0}))
    assert activity.catch_up() == 3
    assert activity.catch_up() == 0
    acme = activity.series(Principal(name="a", role=Role.ADMIN, org_unit_id="acme",
                                     org_path=ACME))
    assert acme.of(ActivityKind.ENROLLMENT)[-2:] == (1, 2)
    assert acme.total(ActivityKind.REVOCATION) == 8
    everyone = activity.series(SYSTEM)
    assert everyone.total(ActivityKind.ENROLLMENT) == 3
    assert everyone.of(ActivityKind.REVOCATION)[-2:] == (1, 8)


def test_ok_two_leaders_at_once_count_each_record_once(db: Any) -> None:
    clock = FrozenClock(START)
    audited(db, clock, *[(AuditTag.CERTIFICATE_REVOKED, ACME, {})] * 40)
    leaders = [DailyActivity(db, clock, batch=3) for _ in range(2)]
    threads = [threading.Thread(target=leader.catch_up) for leader in leaders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    leaders[0].catch_up()
    assert leaders[0].series(SYSTEM).total(ActivityKind.REVOCATION) == 40
