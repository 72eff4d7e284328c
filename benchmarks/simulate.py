"""``iotiam simulate --devices 10000`` completes, every device enrolled.

The command as an operator runs it, in its own process, against a real ``iotiam serve
--workers 2`` (SQLite) through the profile ``iotiam init`` left: it registers the
devices and mints their claims a chunk at a time, and per device the agent's enrollment
core (``iotiam.agent.claim``: a key made for the device, ``cacerts`` + ``simpleenroll``
on one new TLS connection, the certificate checked) enrolls, 16 at a time, keeping its
key and certificate in memory. The row passes when the command exits 0 with every device
enrolled and the server's inventory shows them all active.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from typing import Any

import httpx

from benchmarks.harness import CpuMeter, Result, RunConfig, Target, clean_environment
from benchmarks.server import RunningServer, iotiam_command, running_server

NAME = "simulate"
TITLE = "`iotiam simulate --devices 10000`: real agents enroll against a real `iotiam serve`"
#: ``serve --workers``: one serving process per core, as a production install would run
WORKERS = min(2, os.cpu_count() or 1)
#: far beyond a healthy run (~2 minutes for 10,000 here): only a hang stops it
TIMEOUT_SECONDS = 1800.0


def children_cpu_seconds() -> float:
    """CPU used by this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def active_devices(server: RunningServer) -> int:
    """Devices the server's inventory shows active (enrolled)."""
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(),
                      headers=server.admin_headers(), timeout=60.0) as client:
        answer = client.get("/v1/inventory")
    answer.raise_for_status()
    report: dict[str, Any] = answer.json()
    return int(report["by_state"].get("active", 0))


def run_simulate(server: RunningServer, devices: int) -> tuple[dict[str, Any], float, float]:
    """Run the command; its JSON summary, wall seconds and CPU seconds."""
    command = [*iotiam_command(), "--data-dir", str(server.data_dir), "simulate",
               "--devices", str(devices), "--json"]
    cpu_before, began = children_cpu_seconds(), time.perf_counter()
    done = subprocess.run(command, env=clean_environment(), capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS, check=False)
    wall, cpu = time.perf_counter() - began, children_cpu_seconds() - cpu_before
    try:
        summary: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"`iotiam simulate` exited {done.returncode} without a summary: "
                           f"{(done.stderr or done.stdout)[-300:]}") from None
    return summary, wall, cpu


def run(config: RunConfig) -> list[Result]:
    """Start a server, run ``iotiam simulate`` against it, check the inventory."""
    devices = config.size(10_000, 500)
    with running_server(config, NAME, workers=WORKERS) as server:
        meter = CpuMeter(server.pid)
        meter.start()
        summary, wall, client_cpu = run_simulate(server, devices)
        meter.stop()
        active = active_devices(server)
    enrolled = min(int(summary["enrolled"]), active)
    failures = "; ".join(summary.get("failures", [])[:2])
    server_ms = (f"{meter.server_seconds / devices * 1000:.2f} ms"
                 if meter.server_seconds is not None else "—")
    notes = (f"{summary['enrolled']:,} enrolled, {summary['failed']:,} failed, "
             f"{active:,} active in the inventory; wall {wall:.1f} s; per device p50 "
             f"{summary['p50 ms'] or float('nan'):.0f} ms, p99 "
             f"{summary['p99 ms'] or float('nan'):.0f} ms; server CPU {server_ms}/device "
             f"(registration and claims included), simulate CPU "
             f"{client_cpu / devices * 1000:.2f} ms/device; serve --workers {WORKERS}"
             + (f"; first failures: {failures}" if failures else ""))
    return [
        Result(name=f"simulate --devices {devices:,}: enrolled", value=enrolled,
               unit="devices", target=Target(devices), notes=notes),
        Result(name="simulate: devices/s, end to end", value=devices / wall, unit="devices/s",
               notes="registration, claims and enrollment, as the command runs them"),
        Result(name="simulate: wall time", value=wall, unit="s"),
    ]
