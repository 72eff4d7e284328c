"""The risk store answers alike in memory, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import BACKENDS, store_database
from iotiam.inventory.models import Criticality, DeviceClass
from iotiam.risk.models import (
    Acceptance,
    EntryFilter,
    RiskEntry,
    RiskFactor,
    Subject,
    Weighting,
    entry_id,
    hit,
)
from iotiam.storage.database import Database
from iotiam.testing.fakes.unit_of_work import MemoryDatabase

ACME, BETA = "/root/acme/", "/root/beta/"
NOW = 1_800_000_000.0


@pytest.fixture(params=["memory", *BACKENDS])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with store_database(request.param, tmp_path) as database:
        yield database


def entry(subject_id: str, score: int, *factors: RiskFactor, org: str = ACME,
          subject: Subject = Subject.DEVICE, site: str | None = "hall",
          type_name: str | None = "sensor") -> RiskEntry:
    return RiskEntry(entry_id(subject, subject_id), subject, subject_id, org, site, type_name,
                     score, tuple(hit(f, f"{f} here", {"n": 1}) for f in factors), (),
                     Weighting(Criticality.HIGH, DeviceClass.GATEWAY, True))


def fill(db: Any, generation: int = 1) -> list[RiskEntry]:
    rows = [entry("d1", 50, RiskFactor.NEVER_ROTATED),
            entry("d2", 150, RiskFactor.UNMANAGED, RiskFactor.WEAK_KEY, subject=Subject.ASSET,
                  type_name=None),
            entry("d3", 50, RiskFactor.ZOMBIE, site="yard"),
            entry("d4", 90, RiskFactor.UNMANAGED, org=BETA)]
    with db() as uow:
        uow.risk.put_entries(rows, generation=generation,
                             holder={rows[0].id: "d1", rows[2].id: "d3"}, now=NOW)
    return rows


def test_ok_entries_round_trip_and_page_by_score(db: Any) -> None:
    rows = fill(db)
    with db.reading() as uow:
        assert uow.risk.get(rows[1].id) == rows[1]
        assert uow.risk.get("device-nosuch") is None
        page = uow.risk.page(org_path=ACME, where=EntryFilter(), after=None, limit=2, now=NOW)
        assert [e.subject_id for e in page] == ["d2", *sorted(["d1", "d3"],
                                                key=lambda s: entry_id(Subject.DEVICE, s))[:1]]
        rest = uow.risk.page(org_path=ACME, where=EntryFilter(),
                             after=(page[-1].score, page[-1].id), limit=2, now=NOW)
        assert {e.subject_id for e in page + rest} == {"d1", "d2", "d3"} and len(rest) == 1
        assert uow.risk.count(org_path="/root/", where=EntryFilter(), now=NOW) == 4
        assert [e.subject_id for e in uow.risk.iter_entries(
            org_path=BETA, where=EntryFilter(), now=NOW)] == ["d4"]


@pytest.mark.parametrize(("where", "expected"), [
    (EntryFilter(factor=RiskFactor.UNMANAGED), {"d2"}),
    (EntryFilter(site="yard"), {"d3"}), (EntryFilter(type="sensor"), {"d1", "d3"}),
    (EntryFilter(subject=Subject.ASSET), {"d2"}), (EntryFilter(min_score=51), {"d2"}),
    (EntryFilter(org_path=BETA), set())],
    ids=["ok/factor", "ok/site", "ok/type", "ok/subject", "ok/min-score",
         "ok/org-outside-scope-narrows-nothing"])
def test_ok_filters(db: Any, where: EntryFilter, expected: set[str]) -> None:
    fill(db)
    with db.reading() as uow:
        found = uow.risk.page(org_path=ACME, where=where, after=None, limit=10, now=NOW)
        if where.org_path == BETA:
            # the store narrows only inside the caller's scope; the service refuses the rest
            assert {e.org_path for e in found} <= {ACME}
            return
        assert {e.subject_id for e in found} == expected
        assert uow.risk.count(org_path=ACME, where=where, now=NOW) == len(expected)


def test_ok_acceptance_hides_factor_until_expiry(db: Any) -> None:
    rows = fill(db)
    with db() as uow:
        uow.risk.accept(Acceptance(rows[1].id, RiskFactor.UNMANAGED, "lab kit", NOW + 100,
                                   "alice", NOW, ACME))
        uow.risk.set_score(rows[1].id, 50)
    with db.reading() as uow:
        stored = uow.risk.get(rows[1].id)
        assert stored.score == 50 and stored.accepted[0].reason == "lab kit"
        unmanaged = EntryFilter(factor=RiskFactor.UNMANAGED)
        assert uow.risk.count(org_path=ACME, where=unmanaged, now=NOW) == 0
        assert uow.risk.count(org_path=ACME, where=unmanaged, now=NOW + 100) == 1
        total, by_factor, by_severity = uow.risk.factor_counts(org_path=ACME, now=NOW)
        assert total == 3 and "unmanaged" not in by_factor and by_factor["weak-key"] == 1
        assert sum(by_severity.values()) == 3
        assert [a.entry_id for a in uow.risk.live_acceptances(NOW)] == [rows[1].id]
        assert uow.risk.live_acceptances(NOW + 100) == []
        assert uow.risk.with_expired_acceptances(NOW + 100, since=NOW) == [rows[1].id]
        assert uow.risk.with_expired_acceptances(NOW + 50, since=NOW) == []


def test_ok_generations_remove_stale_and_devices(db: Any) -> None:
    rows = fill(db)
    with db() as uow:
        first = uow.risk.start_rebuild(NOW)
        second = uow.risk.start_rebuild(NOW + 1)
        assert second > first and uow.risk.current_generation() == second
        uow.risk.put_entries([rows[0]], generation=second, holder={rows[0].id: "d1"},
                             now=NOW)
        # rows[0] is the same as stored: the store may leave it as it was, the rebuild
        # names it as its own
        assert uow.risk.remove_stale(second, kept={rows[0].id}) == 3
    with db() as uow:
        assert uow.risk.remove_for_devices(["d1"]) == 1
    with db.reading() as uow:
        assert uow.risk.count(org_path="/root/", where=EntryFilter(), now=NOW) == 0
        assert uow.risk.factor_counts(org_path="/root/", now=NOW) == (0, {}, {})


def test_ok_a_rewrite_changes_what_changed_and_keeps_the_rest(db: Any) -> None:
    rows = fill(db, generation=0)
    changed = replace(rows[1], score=151)
    with db() as uow:
        # an acceptance rescored rows[2]: written again with its old content, it is that
        uow.risk.set_score(rows[2].id, 5)
    with db() as uow:
        second = uow.risk.start_rebuild(NOW)
        uow.risk.put_entries([rows[0], changed, rows[2]], generation=second,
                             holder={rows[0].id: "d1", rows[2].id: "d3"}, now=NOW + 5)
        assert uow.risk.remove_stale(second, kept={rows[0].id, changed.id, rows[2].id}) == 1
    with db.reading() as uow:
        assert [uow.risk.get(r.id) for r in rows] == [rows[0], changed, rows[2], None]
    assert_totals_agree(db, NOW)
    with db() as uow:
        # the holder is part of what is stored: a new holder is a change
        uow.risk.put_entries([rows[0]], generation=second, holder={rows[0].id: "d9"},
                             now=NOW)
        assert uow.risk.remove_for_devices(["d9"]) == 1
    assert_totals_agree(db, NOW)


def test_ok_trend_sums_under_scope(db: Any) -> None:
    with db() as uow:
        for n in (1, 2):
            number = uow.risk.start_rebuild(NOW + n)
            uow.risk.finish_rebuild(number, NOW + n + 0.5, {
                ACME: {"unmanaged": n, "managed": 3}, "/root/acme/site/": {"unmanaged": 1},
                BETA: {"unmanaged": 10}})
        uow.risk.start_rebuild(NOW + 9)  # unfinished: not in the trend
    with db.reading() as uow:
        points = uow.risk.trend(org_path=ACME, limit=10)
        assert [p.counts for p in points] == [{"unmanaged": 2, "managed": 3},
                                              {"unmanaged": 3, "managed": 3}]
        assert points[-1].at == NOW + 2.5
        assert [p.counts for p in uow.risk.trend(org_path="/root/", limit=1)] == [
            {"unmanaged": 13, "managed": 3}]


# -- the tallies (SQL: risk_tallies) agree with a full count ------------------------------

FACTORS = (None, RiskFactor.UNMANAGED, RiskFactor.WEAK_KEY, RiskFactor.NEVER_ROTATED,
           RiskFactor.ZOMBIE, RiskFactor.EXPIRED_IN_USE)


def assert_totals_agree(db: Any, now: float) -> None:
    """Every org/site/factor total (tallied on SQL) equals the same question counted row
    by row (``min_score=0`` matches every entry and bypasses the tallies), and the
    summary's counts equal the factor pages'."""
    with db.reading() as uow:
        for org in ("/root/", ACME, BETA, "/root/acme/site/"):
            for site in (None, "hall", "yard", "nowhere"):
                for factor in FACTORS:
                    where = EntryFilter(factor=factor, site=site)
                    counted = uow.risk.count(org_path=org, now=now,
                                             where=EntryFilter(factor=factor, site=site,
                                                               min_score=0))
                    assert uow.risk.count(org_path=org, where=where, now=now) == counted, \
                        (org, site, factor)
            total, by_factor, by_severity = uow.risk.factor_counts(org_path=org, now=now)
            everything = list(uow.risk.iter_entries(org_path=org, where=EntryFilter(),
                                                    now=now))
            assert total == len(everything)
            visible = [h for e in everything for h in e.visible(now)]
            assert by_factor == {f.value: n for f, n in
                                 Counter(h.factor for h in visible).items()}
            assert by_severity == dict(Counter(h.severity.label for h in visible))
            for factor in FACTORS[1:]:
                assert by_factor.get(factor.value, 0) == uow.risk.count(
                    org_path=org, where=EntryFilter(factor=factor, min_score=0), now=now)


def test_ok_tallies_follow_every_write(db: Any) -> None:
    rows = fill(db, generation=0)
    assert_totals_agree(db, NOW)
    # rewritten in place (a rebuild over a full register): same ids, changed factors/site
    moved = [replace(rows[0], factors=(hit(RiskFactor.ZOMBIE, "z"),
                                       hit(RiskFactor.EXPIRED_IN_USE, "e")), site="yard"),
             replace(rows[1], site=None)]
    with db() as uow:
        generation = uow.risk.start_rebuild(NOW)
        uow.risk.put_entries(moved, generation=generation, holder={moved[0].id: "d1"},
                             now=NOW)
    assert_totals_agree(db, NOW)
    with db() as uow:
        uow.risk.accept(Acceptance(rows[1].id, RiskFactor.UNMANAGED, "lab kit", NOW + 100,
                                   "alice", NOW, ACME))
        uow.risk.set_score(rows[1].id, 40)
    assert_totals_agree(db, NOW)  # hidden: out of the factor's total and the summary
    assert_totals_agree(db, NOW + 100)  # expired: counts again, with no write at all
    with db() as uow:
        assert uow.risk.remove_for_devices(["d1"]) == 1
    assert_totals_agree(db, NOW)
    with db() as uow:
        assert uow.risk.remove_stale(generation) == 2
    assert_totals_agree(db, NOW)
    with db.reading() as uow:
        assert uow.risk.count(org_path="/root/", where=EntryFilter(), now=NOW) == 1


def test_ok_tally_rows_equal_a_recount(db: Any) -> None:
    if isinstance(db, MemoryDatabase):
        pytest.skip("the tallies are a table of the SQL store")
    rows = fill(db)
    with db() as uow:
        uow.risk.put_entries([replace(rows[2], site=None)], generation=2, holder={}, now=NOW)
        uow.risk.remove_for_devices(["d1"])
    with db.reading() as uow:
        conn = uow.conn
        tallied = {(o, s, f, v): n for o, s, f, v, n in conn.execute(text(
            "SELECT org_path, site, factor, severity, count FROM risk_tallies "
            "WHERE count != 0"))}
        recount = {(o, s or "", "", 0): n for o, s, n in conn.execute(text(
            "SELECT org_path, site, count(*) FROM risk_entries GROUP BY org_path, site"))}
        recount |= {(o, s or "", f, v): n for o, s, f, v, n in conn.execute(text(
            "SELECT org_path, site, factor, severity, count(*) FROM risk_entry_factors "
            "GROUP BY org_path, site, factor, severity"))}
    assert tallied == recount and len(recount) == 7


def test_ok_a_finished_rebuild_leaves_fresh_statistics_on_postgresql(db: Any) -> None:
    """Pages walk the (score, id) indexes only when the planner knows the register's size,
    and a filtered total reads an index alone only where the visibility map says so: the
    rebuild vacuums and analyses what it rewrote instead of waiting for autovacuum."""
    if not isinstance(db, Database) or db.engine.dialect.name != "postgresql":
        pytest.skip("statistics are PostgreSQL's")
    rows = [entry(f"s{n}", n % 200, RiskFactor.NEVER_ROTATED) for n in range(1500)]
    with db() as uow:
        generation = uow.risk.start_rebuild(NOW)
        uow.risk.put_entries(rows, generation=generation, holder={}, now=NOW)
    vacuums_before = _vacuums(db)
    with db() as uow:
        uow.risk.finish_rebuild(generation, NOW + 1, {ACME: {"entries": 1500}})
    # other tests of this module rebuild in the same schema: count this rebuild's
    assert {t: n - vacuums_before[t] for t, n in _vacuums(db).items()} == {
        "risk_entries": 1, "risk_entry_factors": 1}
    with db.reading() as uow:
        for table in ("risk_entries", "risk_entry_factors"):
            planned = uow.conn.execute(text(
                "SELECT reltuples FROM pg_class WHERE relname = :t "
                "AND relnamespace = current_schema()::regnamespace"), {"t": table}).scalar_one()
            counted = uow.conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            assert (planned, counted) == (1500, 1500), table


def _vacuums(db: Database) -> dict[str, int]:
    """``VACUUM`` runs so far of the register's two big tables in the test's schema."""
    with db.reading() as uow:
        return {table: int(uow.conn.execute(text(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = :t "
            "AND schemaname = current_schema()"), {"t": table}).scalar_one())
            for table in ("risk_entries", "risk_entry_factors")}
