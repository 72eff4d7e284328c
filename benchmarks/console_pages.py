"""Console pages: server time per page at 1M devices (issue 14; ``--quick``: 100k).

The fleet is the scale benchmark's (``scale.filled``: devices over ten tenants and 200
sites in every lifecycle state, three certificates each, filled in set-based SQL), then
upgraded to the newest schema as ``iotiam serve`` would, and the risk register is
rebuilt over it (at 1M this takes minutes; the fleet row says how long), so the register
pages read a register of the fleet's size. The overview's charts over time read daily
tallies seeded for 1,000 org paths over 90 days (``_activity``).

A console signed in with the root admin token (in-process ASGI client over "https", so
the Secure cookie travels) asks each page once to warm up, then ``ROUNDS`` times; a row
gives the median (p50) and p95 wall time and the CPU this process spent per page
(rendering included; not the PostgreSQL server's). List pages are timed at the start
and deep in the list: the page the keyset cursor reaches ~90 % in.

Target: ≤ 300 ms server time a page, issue 14's figure (item 3). On this shared 2-core
host a page that spends ~100 ms CPU reaches 300 ms wall when other jobs hold the cores,
so the target is tight on purpose: a page that needs a scan of the fleet misses it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import Engine, insert, text

from benchmarks.harness import Result, RunConfig, Target
from benchmarks.scale import filled
from iotiam.bootstrap import Services, build_services
from iotiam.kernel import ROOT_PATH, SYSTEM
from iotiam.storage.migrate import upgrade_to_head
from iotiam.storage.tables.audit import activity_daily
from iotiam.testing.console import Console

NAME = "console-pages"
TITLE = "console pages: server time per page at 1M devices (--quick: 100k)"
PAGE_TARGET_MS = 300.0
ROUNDS = 11
#: org paths with enrollments or revocations every day, and the days of them, seeded
ACTIVITY_PATHS, ACTIVITY_DAYS = 1000, 90


def pages(devices: int) -> list[tuple[str, str]]:
    """(label, path) of every page timed, for a fleet of ``devices``."""
    deep = f"dev-{devices * 9 // 10:07d}"
    one = f"dev-{devices // 2 + 42:07d}"
    return [
        ("overview", "/console/"),
        ("inventory, first page", "/console/devices"),
        (f"inventory, page after {deep} (~90 %)", f"/console/devices?after={deep}"),
        ("inventory, type=gateway", "/console/devices?type=gateway"),
        ("inventory, state=quarantined", "/console/devices?state=quarantined"),
        (f"inventory, state+type, after {deep}",
         f"/console/devices?state=active&type=gateway&after={deep}"),
        ("inventory, site=hall-7", "/console/devices?site=hall-7"),
        ("inventory, credential=expired", "/console/devices?credential=expired"),
        ("inventory, 100 rows", "/console/devices?rows=100"),
        ("device detail", f"/console/devices/{one}"),
        ("risk register", "/console/risk"),
        ("risk register, site=hall-7", "/console/risk?site=hall-7"),
        ("risk register, factor=never-rotated",
         "/console/risk?factor=never-rotated"),
        ("risk register, type + min score", "/console/risk?type=gateway&min_score=20"),
        ("discovered assets", "/console/assets"),
        ("findings", "/console/findings"),
        ("detection modes, would-act 7 days", "/console/detection"),
        ("detection modes, would-act 90 days", "/console/detection?days=90"),
        ("audit search", "/console/audit"),
        ("audit search, by device", f"/console/audit?device={one}"),
        ("policies", "/console/policies"),
        ("decision simulator", f"/console/policies/simulate?device={one}"
         f"&action=mqtt:publish&topic=devices/{one}/t"),
        ("who can", f"/console/policies/who-can?action=mqtt:publish&topic=devices/{one}/t"),
        ("enrollment", "/console/enrollment"),
        ("compliance report", "/console/compliance"),
        ("compliance report, worst first", "/console/compliance?sort=status"),
        ("compliance HTML export", "/console/compliance/export"),
    ]


def per_page(call: Callable[[], int]) -> tuple[float, float, float]:
    """p50 and p95 wall ms and mean CPU ms of ``ROUNDS`` calls after a warm-up (each
    must answer 200)."""
    call()
    walls: list[float] = []
    cpu_started = time.process_time()
    for _ in range(ROUNDS):
        started = time.perf_counter()
        status = call()
        walls.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise AssertionError(f"the page answered {status}")
    walls.sort()
    p95 = walls[min(len(walls) - 1, round(0.95 * (len(walls) - 1)))]
    return statistics.median(walls), p95, (time.process_time() - cpu_started) * 1000 / ROUNDS


def run(config: RunConfig) -> list[Result]:
    """Fill, upgrade, (``--quick``) rebuild the register, then time every page."""
    devices = config.size(1_000_000, 100_000)
    backend = "PostgreSQL" if config.database_url else "SQLite"
    with filled(config, devices) as (sized, fill_seconds):
        upgrade_to_head(sized.engine)
        tallies = _activity(sized.engine)
        services = build_services(sized.settings)
        try:
            register = _register(services)
            context = (f"{devices:,} devices on {backend} (filled in {fill_seconds:.0f} s); "
                       f"register {register}; {tallies}")
            return [Result(f"{NAME}: fleet", float(devices), "devices", None, context),
                    *_timed(services, sized.token, devices)]
        finally:
            services.close()


def _activity(engine: Engine) -> str:
    """Daily enrollment and revocation tallies the overview charts (``audit.activity``),
    pessimistic for the root admin: ``ACTIVITY_PATHS`` org paths with activity every day
    of ``ACTIVITY_DAYS``, each day a row per kind (the scale fleet's audit log is nearly
    empty: its devices and certificates were filled in SQL)."""
    today = datetime.now(UTC).date()
    paths = [ROOT_PATH, *(f"{ROOT_PATH}scale-t{t}/" for t in range(10)),
             *(f"{ROOT_PATH}scale-t{n % 10}/unit-{n}/" for n in range(ACTIVITY_PATHS - 11))]
    rows = [{"day": today - timedelta(days=d), "org_path": path, "kind": kind,
             "count": 1 + (d * 7 + n) % 40}
            for d in range(ACTIVITY_DAYS) for n, path in enumerate(paths)
            for kind in ("enrollment", "reenrollment", "revocation")]
    with engine.begin() as conn:
        conn.execute(insert(activity_daily), rows)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("ANALYZE activity_daily"))
    return (f"{len(rows):,} activity tallies ({ACTIVITY_PATHS} org paths, "
            f"{ACTIVITY_DAYS} days)")


def _register(services: Services) -> str:
    started = time.perf_counter()
    services.risk.rebuild(SYSTEM)
    return f"rebuilt in {time.perf_counter() - started:.0f} s"


def _timed(services: Services, token: str, devices: int) -> list[Result]:
    console = Console(services, token)
    if console.sign_in().status_code != 303:
        raise AssertionError("the root admin token did not sign in")
    try:
        results = []
        for label, path in pages(devices):
            try:
                p50, p95, cpu = per_page(partial(_status, console, path))
            except AssertionError as e:  # one broken page does not hide the others
                results.append(Result(f"{NAME}: {label}", float("nan"), "ms", None,
                                      str(e)[:200]))
                continue
            results.append(Result(f"{NAME}: {label}", p50, "ms",
                                  Target(PAGE_TARGET_MS, at_least=False),
                                  f"p95 {p95:.0f} ms, CPU {cpu:.0f} ms/page"))
        return results
    finally:
        console.close()


def _status(console: Console, path: str) -> int:
    answer = console.page(path)
    if answer.status_code != 200:
        raise AssertionError(f"{path} answered {answer.status_code}: {answer.text[:300]}")
    return answer.status_code
