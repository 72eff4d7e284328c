"""The daily activity tallies answer alike in memory, on SQLite and on PostgreSQL, and
two leaders counting at once count each audit record once."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import BACKENDS, store_database
from iotiam.audit.activity import ActivityKind, DailyActivity
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.clock import FrozenClock
from iotiam.kernel import SYSTEM, Principal, Role

ACME, ACME2 = "/root/acme/", "/root/acme2/"
START = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", *BACKENDS])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with store_database(request.param, tmp_path) as database:
        yield database


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
