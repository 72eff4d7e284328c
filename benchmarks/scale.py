"""A million devices and three million certificates: list pages, the inventory report,
the credential-status counts and the register summary in ≤ 1 s; the upgrade that
adds the maintained counts (issue 19).

Setup (not measured as a read): ``iotiam init``, then the schema is taken back to the
revision before ``0022`` (the counts do not exist yet) and filled in set-based SQL —
``generate_series`` on PostgreSQL, a recursive CTE on SQLite: ``DEVICES`` devices over
ten tenants and the root, 200 sites, in every lifecycle state, and three certificates
per device (an expired one, one revoked or expired, and a current one of a spread of
ages: active, older than the rotation age, past its renewal point; some devices hold
none, some only lapsed ones). Then, measured:

* the upgrade to the newest schema (migration 0022 fills the counts from the rows),
  as ``iotiam serve`` / ``db migrate`` runs it;
* device list pages of 100 with their total (``GET /v1/devices``, in-process ASGI
  client): the first, the one reached by cursor after ~90 % of the fleet, and a
  filtered one (state + type) at the start and at ~90 %;
* the inventory report (``GET /v1/inventory``: by state, type, site, org, credential
  status, and the register's presence) for the root and for one tenant's admin (G9);
* the credential-status counts alone (``FleetCounts.credential_tally``);
* one OCSP answer and one decision subject's load at this size (``scale_lookups.py``);
* the register summary (``GET /v1/risk/summary``) over a register rebuilt at this size
  (the rebuild itself is the risk-register benchmark's subject, at 100k; at a million
  devices it takes this benchmark ten minutes or more).

Each read is the median of ``ROUNDS`` calls after a warm-up. ``--quick`` uses 100,000
devices. Without ``--database-url`` it runs on SQLite (the embedded default must not
regress; its target is the same).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from benchmarks.harness import Result, RunConfig, Target, scratch_dir, throwaway_database
from benchmarks.scale_lookups import lookups
from iotiam.api.app import create_api_app
from iotiam.bootstrap import Services, build_services
from iotiam.config import Settings
from iotiam.installation import initialize
from iotiam.kernel import ROOT_PATH, SYSTEM
from iotiam.storage.database import make_engine
from iotiam.storage.migrate import alembic_config, upgrade_to_head

NAME = "scale"
TITLE = "1M devices + 3M certificates: list pages, report, counts, summary, upgrade (--quick: 100k)"
READ_TARGET_MS = 1000.0
ROUNDS = 5
TENANTS = 10
PAGE = 100
#: the revision that adds the maintained counts: the fill happens before it
COUNTS_REVISION = "0022"


@dataclass
class Sized:
    """The filled installation, its engine and its admin token."""

    settings: Settings
    engine: Engine
    token: str


@contextmanager
def filled(config: RunConfig, devices: int) -> Iterator[tuple[Sized, float]]:
    """``iotiam init``, schema taken back before the counts, ``devices`` filled in; the
    seconds the fill took."""
    with scratch_dir("scale") as root, throwaway_database(config) as database_url:
        settings = Settings(data_dir=root / "data", database_url=database_url, port=18443,
                            http_port=18080)
        initialize(settings)
        token = json.loads((settings.data_dir / "profile.json").read_text())["token"]
        engine = make_engine(settings.effective_database_url)
        try:
            _downgrade_before_counts(engine)
            started = time.perf_counter()
            _fill(engine, devices)
            yield Sized(settings, engine, token), time.perf_counter() - started
        finally:
            engine.dispose()


def _downgrade_before_counts(engine: Engine) -> None:
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, f"{COUNTS_REVISION}-1")
        conn.commit()


# One statement per table. Device n: a gateway when n % 10 == 0; in the root unit when n
# is even, else in tenant (n % 10); state by n % 20; site by n % 200. Certificate k of
# device n: k = 0 expired long ago, k = 1 revoked (n % 3 == 0) or expired, k = 2 current,
# aged n % 80 days of a 90-day life (past the rotation age after 30 days, past the
# renewal point after ~64.5); devices with n % 50 == 0 have no current one (expired),
# n % 100 == 1 no certificate at all. k = 2 keeps k = 1's key when n % 4 == 0.
_PG_DEVICES = """
INSERT INTO devices (id, type_name, org_unit_id, org_path, state, site, location,
                     attributes, created_at, updated_at)
SELECT 'dev-' || lpad(n::text, 7, '0'), CASE WHEN n % 10 = 0 THEN 'gateway' ELSE 'sensor' END,
       CASE WHEN n % 2 = 0 THEN :root_id ELSE 'scale-t' || (n % 10) END,
       CASE WHEN n % 2 = 0 THEN :root_path ELSE :root_path || 'scale-t' || (n % 10) || '/' END,
       CASE n % 20 WHEN 0 THEN 'pending' WHEN 1 THEN 'suspended'
                   WHEN 2 THEN 'decommissioned' WHEN 3 THEN 'quarantined' ELSE 'active' END,
       'hall-' || (n % 200), NULL, '{}', :now, :now
FROM generate_series(0, :count - 1) AS n
"""
_PG_CERTIFICATES = """
INSERT INTO certificates (issuer_id, serial, device_id, org_unit_id, org_path, profile,
                          subject, not_before, not_after, status, fingerprint_sha256, pem,
                          created_at, revoked_at, revocation_reason, public_key_sha256)
SELECT :issuer,
       lpad(to_hex(n * 3 + k + 1), (length(to_hex(n * 3 + k + 1)) + 1) / 2 * 2, '0'),
       d.id, d.org_unit_id, d.org_path,
       'device', 'CN=' || d.id, c.nb, c.nb + interval '90 days',
       CASE WHEN k = 1 AND n % 3 = 0 THEN 'revoked' ELSE 'issued' END, NULL, NULL, c.nb,
       CASE WHEN k = 1 AND n % 3 = 0 THEN c.nb + interval '1 day' END,
       CASE WHEN k = 1 AND n % 3 = 0 THEN 'superseded' END,
       md5(d.id || CASE WHEN k = 2 AND n % 4 <> 0 THEN 'b' WHEN k = 2 THEN 'a'
                        ELSE k::text END)
FROM generate_series(0, :count - 1) AS n
CROSS JOIN generate_series(0, 2) AS k
JOIN devices d ON d.id = 'dev-' || lpad(n::text, 7, '0')
CROSS JOIN LATERAL (SELECT CAST(:now AS timestamp) - make_interval(
    days => CASE k WHEN 0 THEN 300 + n % 60 WHEN 1 THEN 150 + n % 60 ELSE n % 80 END,
    secs => n % 86400) AS nb) c
WHERE n % 100 <> 1 AND NOT (k = 2 AND n % 50 = 0)
"""
_SQLITE_SERIES = "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s " \
                 "WHERE n + 1 < :count) "
_SQLITE_DEVICES = _SQLITE_SERIES + """
INSERT INTO devices (id, type_name, org_unit_id, org_path, state, site, location,
                     attributes, created_at, updated_at)
SELECT 'dev-' || printf('%07d', n), CASE WHEN n % 10 = 0 THEN 'gateway' ELSE 'sensor' END,
       CASE WHEN n % 2 = 0 THEN :root_id ELSE 'scale-t' || (n % 10) END,
       CASE WHEN n % 2 = 0 THEN :root_path ELSE :root_path || 'scale-t' || (n % 10) || '/' END,
       CASE n % 20 WHEN 0 THEN 'pending' WHEN 1 THEN 'suspended'
                   WHEN 2 THEN 'decommissioned' WHEN 3 THEN 'quarantined' ELSE 'active' END,
       'hall-' || (n % 200), NULL, '{}', :now, :now
FROM s
"""
_SQLITE_CERTIFICATES = _SQLITE_SERIES + """, k(k) AS (VALUES (0), (1), (2)),
c AS (SELECT n, k, strftime('%Y-%m-%d %H:%M:%f', :now,
        '-' || CASE k WHEN 0 THEN 300 + n % 60 WHEN 1 THEN 150 + n % 60 ELSE n % 80 END
        || ' days', '-' || (n % 86400) || ' seconds') AS nb FROM s, k
      WHERE n % 100 <> 1 AND NOT (k = 2 AND n % 50 = 0))
INSERT INTO certificates (issuer_id, serial, device_id, org_unit_id, org_path, profile,
                          subject, not_before, not_after, status, fingerprint_sha256, pem,
                          created_at, revoked_at, revocation_reason, public_key_sha256)
SELECT :issuer, substr('0' || printf('%x', c.n * 3 + c.k + 1),
       2 - length(printf('%x', c.n * 3 + c.k + 1)) % 2), d.id, d.org_unit_id, d.org_path,
       'device', 'CN=' || d.id, c.nb, strftime('%Y-%m-%d %H:%M:%f', c.nb, '+90 days'),
       CASE WHEN c.k = 1 AND c.n % 3 = 0 THEN 'revoked' ELSE 'issued' END, NULL, NULL, c.nb,
       CASE WHEN c.k = 1 AND c.n % 3 = 0 THEN strftime('%Y-%m-%d %H:%M:%f', c.nb, '+1 day')
       END,
       CASE WHEN c.k = 1 AND c.n % 3 = 0 THEN 'superseded' END,
       d.id || CASE WHEN c.k = 2 AND c.n % 4 <> 0 THEN 'b' WHEN c.k = 2 THEN 'a'
                    ELSE c.k END
FROM c JOIN devices d ON d.id = 'dev-' || printf('%07d', c.n)
"""


def _fill(engine: Engine, devices: int) -> None:
    """Tenants, devices and certificates, one statement each, then fresh statistics."""
    postgres = engine.dialect.name == "postgresql"
    # whole seconds: SQLite's strftime keeps milliseconds only
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    with engine.begin() as conn:
        root_id = conn.execute(text("SELECT id FROM org_units WHERE path = :p"),
                               {"p": ROOT_PATH}).scalar_one()
        issuer = conn.execute(text("SELECT id FROM cas WHERE role = 'issuing'")).scalar_one()
        for t in range(TENANTS):
            conn.execute(text(
                "INSERT INTO org_units (id, name, kind, parent_id, path, created_at) "
                "VALUES (:id, :id, 'tenant', :root_id, :path, :now)"),
                {"id": f"scale-t{t}", "root_id": root_id, "path": f"{ROOT_PATH}scale-t{t}/",
                 "now": now})
        params = {"count": devices, "root_id": root_id, "root_path": ROOT_PATH,
                  "now": now if postgres else now.isoformat(" "), "issuer": issuer}
        conn.execute(text(_PG_DEVICES if postgres else _SQLITE_DEVICES), params)
        conn.execute(text(_PG_CERTIFICATES if postgres else _SQLITE_CERTIFICATES), params)
    with engine.connect() as conn:
        if postgres:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE devices, certificates"))
        else:
            conn.execute(text("ANALYZE"))
            conn.commit()


def median_ms(call: Callable[[], object]) -> tuple[float, float]:
    """Median and worst milliseconds of ``ROUNDS`` calls (after one warm-up call)."""
    call()
    took = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took), max(took)


def _get(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    answer = client.get(path, params=params)
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    body: dict[str, Any] = answer.json()
    return body


def run(config: RunConfig) -> list[Result]:
    """Fill, upgrade (timed), then time the reads."""
    devices = config.size(1_000_000, 100_000)
    backend = "PostgreSQL" if config.database_url else "SQLite"
    with filled(config, devices) as (sized, fill_seconds):
        started = time.perf_counter()
        upgrade_to_head(sized.engine)
        upgraded = time.perf_counter() - started
        services = build_services(sized.settings)
        try:
            results = [Result(
                f"{NAME}: upgrade to the counts (migration {COUNTS_REVISION})", upgraded, "s",
                None, f"{devices:,} devices, {_certificates(sized.engine):,} certificates on "
                      f"{backend} (filled in {fill_seconds:.0f} s by set-based SQL)")]
            results += _reads(services, sized, devices, config)
        finally:
            services.close()
    return results


def _certificates(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM certificates")).scalar_one())


def _reads(services: Services, sized: Sized, devices: int, config: RunConfig
           ) -> list[Result]:
    target = Target(READ_TARGET_MS, at_least=False)
    client = TestClient(create_api_app(services))
    client.headers["Authorization"] = f"Bearer {sized.token}"
    tenant = TestClient(create_api_app(services))
    try:
        tenant.headers["Authorization"] = f"Bearer {_tenant_token(client)}"
        deep = f"dev-{devices * 9 // 10:07d}"
        first = _get(client, "/v1/devices", limit=PAGE)
        if first["total"] != devices:
            raise RuntimeError(f"the list's total is {first['total']:,}, not {devices:,}")
        at_deep = _get(client, "/v1/devices", limit=PAGE, after=deep)
        if at_deep["items"][0]["id"] <= deep:
            raise RuntimeError("the page after the cursor starts before it")
        rows: list[Result] = []
        for label, params in [
            ("first page", {}),
            (f"page after {deep} (~90 % in)", {"after": deep}),
            ("filtered first page (state=active, type=gateway)",
             {"state": "active", "type": "gateway"}),
            (f"filtered page after {deep}", {"state": "active", "type": "gateway",
                                             "after": deep}),
        ]:
            median, worst = median_ms(lambda p=params: _get(client, "/v1/devices",  # type: ignore[misc]
                                                            limit=PAGE, **p))
            body = _get(client, "/v1/devices", limit=PAGE, **params)
            rows.append(Result(f"{NAME}: device list, {label}", median, "ms", target,
                               f"{PAGE} rows + total {body['total']:,}; max {worst:.0f} ms"))
        report = _get(client, "/v1/inventory")
        if report["total"] != devices:
            raise RuntimeError(f"the report counts {report['total']:,} devices")
        median, worst = median_ms(lambda: _get(client, "/v1/inventory"))
        rows.append(Result(
            f"{NAME}: inventory report (GET /v1/inventory, root)", median, "ms", target,
            f"{len(report['by_site'])} sites, {len(report['by_org'])} org units; credential "
            f"status {_statuses(report)}; never rotated {report['never_rotated']:,}; "
            f"max {worst:.0f} ms"))
        scoped = _get(tenant, "/v1/inventory")
        median, worst = median_ms(lambda: _get(tenant, "/v1/inventory"))
        rows.append(Result(
            f"{NAME}: inventory report, one tenant's admin (G9)", median, "ms", target,
            f"{scoped['total']:,} devices in its subtree; max {worst:.0f} ms"))
        rows.append(_credential_counts(services, target))
        rows += lookups(NAME, services, sized.engine, devices)
        rows += _register(services, client, config, target)
        return rows
    finally:
        client.close()
        tenant.close()


def _statuses(report: dict[str, Any]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in report["by_credential_status"].items())


def _tenant_token(client: TestClient) -> str:
    answer = client.post("/v1/tokens", json={"name": "scale-tenant", "role": "viewer",
                                             "org": "scale-t1"})
    if answer.status_code != 201:
        raise RuntimeError(f"minting a tenant token answered {answer.status_code}")
    token: str = answer.json()["token"]
    return token


def _credential_counts(services: Services, target: Target) -> Result:
    """``FleetCounts.credential_tally`` for the whole fleet, as the report calls it."""
    now = datetime.now(UTC)

    def counts() -> object:
        with services.database.reading() as uow:
            return uow.fleet_counts.credential_tally(
                org_path=ROOT_PATH, now=now, rotation_age=timedelta(days=30),
                expiring_within=timedelta(days=14),
                max_age_by_type={"sensor": timedelta(days=30), "gateway": timedelta(days=90)})

    median, worst = median_ms(counts)
    return Result(f"{NAME}: credential-status counts (service)", median, "ms", target,
                  f"every status + never rotated, 14-day window; max {worst:.0f} ms")


def _register(services: Services, client: TestClient, config: RunConfig,
              target: Target) -> list[Result]:
    started = time.perf_counter()
    services.risk.rebuild(SYSTEM)
    rebuilt = time.perf_counter() - started
    summary = _get(client, "/v1/risk/summary")
    median, worst = median_ms(lambda: _get(client, "/v1/risk/summary"))
    return [Result(f"{NAME}: register summary (GET /v1/risk/summary)", median, "ms", target,
                   f"{summary['total']:,} entries (rebuilt in {rebuilt:.0f} s); "
                   f"max {worst:.0f} ms")]
