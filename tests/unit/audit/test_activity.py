"""The daily enrollment and revocation tallies kept from the audit log (``audit.activity``),
on the memory stores."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

import pytest

from iotiam.audit.activity import ActivityKind, DailyActivity, tally
from iotiam.audit.models import AuditDraft, AuditTag, Outcome
from iotiam.audit.service import AuditTrail
from iotiam.clock import FrozenClock
from iotiam.kernel import SYSTEM, Principal, Role
from iotiam.testing.fakes.unit_of_work import MemoryDatabase

DAY1 = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
ROOT, ACME, GLOBEX = "/root/", "/root/acme/", "/root/globex/"


class World:
    def __init__(self) -> None:
        self.clock = FrozenClock(DAY1)
        self.database = MemoryDatabase()
        self.audit = AuditTrail(self.database, self.clock, secrets.token_bytes(32))
        self.activity = DailyActivity(self.database, self.clock, batch=3)

    def record(self, tag: AuditTag, org_path: str = ACME, *,
               outcome: Outcome = Outcome.SUCCESS, **details: object) -> None:
        self.audit.record(AuditDraft(tag=tag, actor="test", org_path=org_path,
                                     subject="device:d", outcome=outcome, details=details))

    @property
    def counts(self) -> dict[tuple[date, str, str], int]:
        return dict(self.database.uow.activity.counts)


@pytest.fixture
def world() -> World:
    return World()


def test_ok_counts_by_utc_day_org_and_kind_and_moves_the_cursor(world: World) -> None:
    world.record(AuditTag.ENROLLMENT_SUCCEEDED)
    world.record(AuditTag.REENROLLMENT_SUCCEEDED)
    world.clock.advance(timedelta(minutes=2))  # past midnight UTC
    world.record(AuditTag.ENROLLMENT_SUCCEEDED, GLOBEX)
    assert world.activity.count_batch() == 3
    day1, day2 = DAY1.date(), DAY1.date() + timedelta(days=1)
    # at the record's org path and at each ancestor's: a subtree's count is one row
    assert world.counts == {(day1, ACME, "enrollment"): 1, (day1, ACME, "reenrollment"): 1,
                            (day2, GLOBEX, "enrollment"): 1,
                            (day1, ROOT, "enrollment"): 1, (day1, ROOT, "reenrollment"): 1,
                            (day2, ROOT, "enrollment"): 1}
    assert world.database.uow.activity.cursor == 3
    assert world.activity.count_batch() == 0  # nothing new: nothing added again
    assert sum(world.counts.values()) == 6


def test_ok_batch_records_count_by_their_size_and_other_tags_not(world: World) -> None:
    world.record(AuditTag.REVOCATION_SET_BATCH_REVOKED, certificates=40, psks=2,
                 oauth_clients=1, devices=41)
    world.record(AuditTag.CA_CERTIFICATES_REVOKED, ROOT, certificates=500, devices=9)
    world.record(AuditTag.CERTIFICATE_REVOKED)
    world.record(AuditTag.PSK_REVOKED)
    world.record(AuditTag.CERTIFICATE_ISSUED)
    world.record(AuditTag.ENROLLMENT_REFUSED, outcome=Outcome.FAILURE)
    world.record(AuditTag.CERTIFICATE_REVOKED, outcome=Outcome.DENIED)
    world.record(AuditTag.REVOCATION_SET_BATCH_REVOKED, certificates="many")
    assert world.activity.catch_up() == 8
    day = DAY1.date()
    assert world.counts == {(day, ACME, "revocation"): 45, (day, ROOT, "revocation"): 545}


def test_ok_catch_up_runs_batches_until_one_is_short(world: World) -> None:
    for _ in range(7):
        world.record(AuditTag.CERTIFICATE_REVOKED)
    assert world.activity.catch_up(batches=2) == 6  # a bounded pass: 2 batches of 3
    assert world.database.uow.activity.cursor == 6
    assert world.activity.catch_up() == 1
    assert world.counts == {(DAY1.date(), ACME, "revocation"): 7,
                            (DAY1.date(), ROOT, "revocation"): 7}


def test_fail_a_failed_transaction_neither_counts_nor_moves_the_cursor(world: World) -> None:
    world.record(AuditTag.CERTIFICATE_REVOKED)
    tallies = world.database.uow.activity
    original = tallies.add

    def add_then_crash(counts: object, cursor: int) -> None:
        original(counts, cursor)  # type: ignore[arg-type]
        raise RuntimeError("the process died before the commit")

    tallies.add = add_then_crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.activity.count_batch()
    del tallies.add  # the instance attribute: the class's method again
    assert world.database.uow.activity.counts == {}
    assert world.database.uow.activity.cursor == 0
    assert world.activity.count_batch() == 1
    assert world.counts == {(DAY1.date(), ACME, "revocation"): 1,
                            (DAY1.date(), ROOT, "revocation"): 1}


def test_ok_series_is_the_callers_subtree_over_30_days(world: World) -> None:
    world.record(AuditTag.CERTIFICATE_REVOKED, ACME)
    world.record(AuditTag.CERTIFICATE_REVOKED, "/root/acme/berlin/")
    world.record(AuditTag.CERTIFICATE_REVOKED, GLOBEX)
    world.clock.advance(timedelta(days=31))
    world.record(AuditTag.ENROLLMENT_SUCCEEDED, ACME)
    world.activity.catch_up()
    acme = Principal(name="a", role=Role.ADMIN, org_unit_id="acme", org_path=ACME)
    series = world.activity.series(acme)
    assert len(series.days) == 30 and series.days[-1] == world.clock.now().date()
    assert series.total(ActivityKind.ENROLLMENT) == 1
    assert series.total(ActivityKind.REVOCATION) == 0  # 31 days ago: out of the window
    world.clock.set(DAY1 + timedelta(days=1))
    assert world.activity.series(acme).total(ActivityKind.REVOCATION) == 2
    assert world.activity.series(SYSTEM).total(ActivityKind.REVOCATION) == 3


def test_ok_tally_of_no_records_is_empty() -> None:
    assert tally([]) == {}
