"""Console pages: server time per page at 100k registered devices (issue 14: ≤ 300 ms).

The fleet is the risk register benchmark's (``risk_register.fill``: sensors over 20
sites with a certificate each, unmanaged assets), its register rebuilt once. A console
signed in with the root admin token (in-process ASGI client over "https", so the Secure
cookie travels) asks each page ``ROUNDS`` times; the table gives the median wall time
and the CPU this process spent per page (rendering included; not the PostgreSQL
server's). ``--quick`` uses a tenth of the sizes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

from benchmarks.harness import Result, RunConfig, Target
from benchmarks.risk_register import fill, sized_installation
from iotiam.kernel import SYSTEM
from iotiam.testing.console import Console

NAME = "console-pages"
TITLE = "console pages: server time per page at 100k devices"
PAGE_TARGET_MS = 300.0
ROUNDS = 9
PAGES = (
    ("overview", "/console/"),
    ("inventory, first page", "/console/devices"),
    ("inventory, filtered", "/console/devices?state=active&type=sensor&rows=100"),
    ("device detail", "/console/devices/dev-000042"),
    ("risk register, filtered", "/console/risk?factor=unmanaged&site=site-07&min_score=40"),
    ("discovered assets", "/console/assets?status=unmanaged"),
    ("findings", "/console/findings"),
    ("audit search (5000 records read)", "/console/audit?tag=admin:"),
    ("policies", "/console/policies"),
    ("decision simulator", "/console/policies/simulate?device=dev-000042"
     "&action=mqtt:publish&topic=devices/dev-000042/t"),
    ("who can (500 devices scanned)", "/console/policies/who-can?action=mqtt:publish"
     "&topic=devices/dev-000042/t"),
    ("enrollment", "/console/enrollment"),
    ("compliance report", "/console/compliance"),
)


def per_page(call: Callable[[], int]) -> tuple[float, float]:
    """Median wall ms and mean CPU ms of ``ROUNDS`` calls (each must answer 200)."""
    walls: list[float] = []
    cpu_started = time.process_time()
    for _ in range(ROUNDS):
        started = time.perf_counter()
        status = call()
        walls.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise AssertionError(f"the page answered {status}")
    return statistics.median(walls), (time.process_time() - cpu_started) * 1000 / ROUNDS


def run(config: RunConfig) -> list[Result]:
    """Fill, rebuild the register, then time every page."""
    devices = config.size(100_000, 10_000)
    backend = "PostgreSQL" if config.database_url else "SQLite"
    with sized_installation(config) as sized:
        fill(sized.services, devices, devices)
        sized.services.risk.rebuild(SYSTEM)
        console = Console(sized.services, sized.token)
        if console.sign_in().status_code != 303:
            raise AssertionError("the root admin token did not sign in")
        try:
            results = []
            for label, path in PAGES:
                wall, cpu = per_page(partial(_status, console, path))
                results.append(Result(f"{NAME}: {label}", wall, "ms",
                                      Target(PAGE_TARGET_MS, at_least=False),
                                      f"CPU {cpu:.0f} ms/page, {1000 / wall:.1f} pages/s; "
                                      f"{devices:,} devices and assets on {backend}"))
        finally:
            console.close()
    return results


def _status(console: Console, path: str) -> int:
    return console.page(path).status_code
