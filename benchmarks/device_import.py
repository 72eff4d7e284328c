"""Bulk device import: ≥ 20,000 devices/s through the service and through the API.

Rows as an inventory export has them: an id, a type (sensor or gateway), every other row
in a tenant's org unit, a site and two attributes. They are sent in chunks of
``MAX_IMPORT_ROWS`` (5,000, the API's limit per request), as ``iotiam device import``
sends them.

- through the service (``Inventory.import_devices``, as the API calls it), in this
  process: 1,000,000 devices (100,000 with ``--quick``) into one fresh installation;
  devices/s by wall clock while importing, and this process's CPU per device (on
  PostgreSQL the server's CPU is not in it). Making the rows is not timed.
- through the API over HTTPS (``POST /v1/devices/import`` on a real ``iotiam serve``,
  two requests in flight as ``iotiam device import`` keeps them):
  1,000,000 devices (20,000 with ``--quick``); devices/s, and the server's CPU per device
  (request parsing, validation, the import, the answer, and whatever background work
  ran meanwhile); then the server's CPU per device until it is idle again: the trust
  scores and the risk register entries of the new devices, which may finish after the
  last request (they share the server's GIL with the requests).
- on PostgreSQL, the CPU of the run's PostgreSQL backends per device too (``PostgresCpu``:
  local servers only), in the same windows.

Every import is checked: each row must land, and the installation must then hold
exactly that many devices; a fast import that loses rows is an error, not a number.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import (
    CpuMeter,
    Measured,
    PostgresCpu,
    Result,
    RunConfig,
    Target,
    installation,
    process_cpu_seconds,
)
from benchmarks.server import running_server
from iotiam.bootstrap import Services
from iotiam.cli.devices import IMPORT_IN_FLIGHT, import_in_flight
from iotiam.inventory.models import OrgUnitKind
from iotiam.inventory.service import MAX_IMPORT_ROWS
from iotiam.kernel import SYSTEM

NAME = "device-import"
TITLE = ("bulk device import: 1M devices through the service, 1M through the API "
         "(--quick: 100k, 20k)")
RATE_TARGET = 20_000
TENANT = "bench-tenant"
#: the server is idle again when it used less than this share of a core over ``QUIET``
IDLE_CORES = 0.03
QUIET = 2.0
#: the longest wait for the background work after an import
SETTLE_LIMIT = 300.0
#: the queues (``iotiam_queue_depth``) of the work an import leaves: scores, register
BACKGROUND_QUEUES = ("trust-refresher", "risk-register")

Rows = list[tuple[int, dict[str, Any]]]


def chunks(count: int, prefix: str) -> Iterator[Rows]:
    """The import's rows, ``MAX_IMPORT_ROWS`` at a time (row numbers as in a file)."""
    for start in range(0, count, MAX_IMPORT_ROWS):
        end = min(count, start + MAX_IMPORT_ROWS)
        yield [(n + 1, row(n, prefix)) for n in range(start, end)]


def row(n: int, prefix: str) -> dict[str, Any]:
    """One device of the export."""
    data: dict[str, Any] = {"id": f"{prefix}-{n:07d}", "type": "gateway" if n % 10 == 0
                            else "sensor", "site": f"hall-{n % 40}",
                            "attributes": {"fw": f"1.{n % 7}", "batch": f"b{n // 10000}"}}
    if n % 2:
        data["org"] = TENANT
    return data


def through_service(services: Services, count: int) -> tuple[Measured, PostgresCpu]:
    """Import ``count`` devices with ``Inventory.import_devices``; wall and CPU of the calls,
    and PostgreSQL's CPU meanwhile."""
    services.inventory.create_org_unit(SYSTEM, unit_id=TENANT, name=TENANT,
                                       kind=OrgUnitKind.TENANT, parent_id="root")
    wall = cpu = 0.0
    done = 0
    postgres = PostgresCpu(services.settings.database_url)
    postgres.start()
    for rows in chunks(count, "svc"):
        began, began_cpu = time.perf_counter(), time.process_time()
        results = services.inventory.import_devices(SYSTEM, rows)
        wall += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
        bad = [r for r in results if not r.ok]
        if bad:
            raise RuntimeError(f"row {bad[0].row} refused: {bad[0].error}")
        done += len(results)
    postgres.stop()
    stored = services.inventory.count_devices(SYSTEM)
    if stored != count:
        raise RuntimeError(f"imported {count:,} rows but {stored:,} devices are stored")
    return Measured(done, wall, cpu_seconds=cpu), postgres


@dataclass(frozen=True)
class Settled:
    """The server's CPU from the first request until it was idle again, and how long
    after the last answer that was."""

    cpu_seconds: float
    after_seconds: float
    #: PostgreSQL's CPU over the same span (None: SQLite, or not on this host)
    postgres_seconds: float | None = None


def queued_devices(metrics_url: str) -> float:
    """Devices waiting for the trust refresher or the risk register (``GET /metrics``):
    a refresher that gathers a burst before scoring it is quiet, not done."""
    text = httpx.get(metrics_url, timeout=10.0).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "iotiam_queue_depth" for sample in family.samples
               if sample.labels.get("queue") in BACKGROUND_QUEUES)


def settle(pid: int, began_cpu: float, postgres: PostgresCpu, metrics_url: str) -> Settled:
    """Wait until the server is idle (its background work for the import done): under
    ``IDLE_CORES`` over ``QUIET``, with nothing queued for the background jobs at its
    start and at its end (a pass that took its queue at the start spends its CPU inside)."""
    began = time.perf_counter()
    last = process_cpu_seconds(pid) or 0.0
    queued = queued_devices(metrics_url)
    while time.perf_counter() - began < SETTLE_LIMIT:
        time.sleep(QUIET)
        now = process_cpu_seconds(pid) or 0.0
        queued, before = queued_devices(metrics_url), queued
        if now - last < IDLE_CORES * QUIET and not queued and not before:
            postgres.stop()
            return Settled(now - began_cpu, time.perf_counter() - began - QUIET,
                           postgres.seconds)
        last = now
    raise RuntimeError(f"the server was still busy {SETTLE_LIMIT:.0f} s after the import")


def through_api(config: RunConfig, count: int, in_flight: int = IMPORT_IN_FLIGHT
                ) -> tuple[Measured, CpuMeter, PostgresCpu, Settled]:
    """Import ``count`` devices with ``POST /v1/devices/import`` on a real server,
    ``in_flight`` requests at once as ``iotiam device import`` sends them."""
    with running_server(config, "device-import-api") as server, httpx.Client(
            base_url=server.api_url, verify=server.tls_context(),
            headers=server.admin_headers(), timeout=120.0) as client:
        made = client.post("/v1/org-units", json={"id": TENANT, "kind": "tenant",
                                                  "parent": "root"})
        if made.status_code != 201:
            raise RuntimeError(f"creating the tenant answered {made.status_code}: {made.text}")
        bodies = [[{"row": n, "data": d} for n, d in rows] for rows in chunks(count, "api")]

        def post(body: list[dict[str, Any]]) -> Any:
            answer = client.post("/v1/devices/import", json={"rows": body})
            if answer.status_code != 200 or answer.json()["failed"]:
                raise RuntimeError(f"import answered {answer.status_code}: {answer.text[:300]}")
            return answer


        meter = CpuMeter(server.pid)
        postgres, postgres_until_idle = (PostgresCpu(server.database_url),
                                         PostgresCpu(server.database_url))
        meter.start()
        postgres.start()
        postgres_until_idle.start()
        began_cpu = process_cpu_seconds(server.pid) or 0.0
        began = time.perf_counter()
        for _ in import_in_flight(post, bodies, in_flight=in_flight):
            pass
        elapsed = time.perf_counter() - began
        meter.stop()
        postgres.stop()
        settled = settle(server.pid, began_cpu, postgres_until_idle,
                         f"{server.http_url}/metrics")
        total = client.get("/v1/devices", params={"limit": 1}).json()["total"]
        if total != count:
            raise RuntimeError(f"imported {count:,} rows but {total:,} devices are stored")
    return Measured(count, elapsed), meter, postgres, settled


def cores(meter: CpuMeter, api: Measured) -> str:
    """``server 0.73 cores, client 0.06 cores``: who was busy while importing."""
    server = ("server ?" if meter.server_seconds is None
              else f"server {meter.server_seconds / api.elapsed:.2f} cores")
    return f"{server}, client {meter.client_seconds / api.elapsed:.2f} cores"


def run(config: RunConfig) -> list[Result]:
    """Time the service import, then the API import."""
    backend = "PostgreSQL" if config.database_url else "SQLite"
    service_count = config.size(1_000_000, 100_000)
    api_count = config.size(1_000_000, 20_000)
    with installation(config, "device-import") as services:
        service, service_postgres = through_service(services, service_count)
    api, meter, api_postgres, settled = through_api(config, api_count)
    cpu_us = (service.cpu_seconds or 0.0) / service.done * 1e6
    server_us = (float("nan") if meter.server_seconds is None
                 else meter.server_seconds / api.done * 1e6)
    budget = 1e6 / RATE_TARGET
    elsewhere = "; PostgreSQL's own CPU is not in it" if config.database_url else ""
    results = [
        Result(f"{NAME}: through the service", service.rate, "devices/s", Target(RATE_TARGET),
               f"{service.done:,} devices in chunks of {MAX_IMPORT_ROWS:,}, {backend}; "
               f"{service.elapsed:.1f} s"),
        Result(f"{NAME}: service, CPU per device (this process)", cpu_us, "µs",
               Target(budget, at_least=False),
               f"process CPU of the import calls / devices (one core's budget at the target "
               f"is {budget:.0f} µs){elsewhere}"),
        Result(f"{NAME}: through the API (HTTPS)", api.rate, "devices/s", Target(RATE_TARGET),
               f"{api.done:,} devices, POST /v1/devices/import of {MAX_IMPORT_ROWS:,} rows, "
               f"{IMPORT_IN_FLIGHT} in flight, "
               f"{backend}; {api.elapsed:.1f} s; {cores(meter, api)}"),
        Result(f"{NAME}: API, server CPU per device", server_us, "µs",
               Target(budget, at_least=False),
               "iotiam serve's CPU while importing / devices: JSON, validation, the import, "
               "the answer, and the background work that ran meanwhile"),
        Result(f"{NAME}: API, server CPU per device until idle", settled.cpu_seconds
               / api.done * 1e6, "µs", Target(budget, at_least=False),
               f"from the first request until the server is idle again "
               f"({settled.after_seconds:.0f} s after the last answer): the import and the "
               f"devices' trust scores and risk register entries{elsewhere}"),
    ]
    if config.database_url:
        results += [
            postgres_result("service, PostgreSQL CPU per device", service_postgres.seconds,
                            service.done, "while the service imported"),
            postgres_result("API, PostgreSQL CPU per device", api_postgres.seconds, api.done,
                            "while the API imported (the background work's queries too)"),
            postgres_result("API, PostgreSQL CPU per device until idle",
                            settled.postgres_seconds, api.done,
                            "from the first request until the server was idle again"),
        ]
    return results


def postgres_result(label: str, seconds: float | None, devices: int, when: str) -> Result:
    """A row of the PostgreSQL backends' CPU per device (NaN when not measurable)."""
    value = float("nan") if seconds is None else seconds / devices * 1e6
    return Result(f"{NAME}: {label}", value, "µs", None,
                  f"CPU of the run's PostgreSQL backends {when} / devices (same host, "
                  f"from /proc; iotiam's own CPU is in the rows above)")
