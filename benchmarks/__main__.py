"""``python -m benchmarks [--only NAME] [--quick]``: run the benchmarks, print one table."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import cryptography
from rich.console import Console
from rich.table import Table

from benchmarks import (
    api_issuance,
    broker_auth,
    broker_policy_change,
    cascade,
    console_pages,
    crl,
    crypto_floor,
    dataplane,
    detection,
    detection_stream,
    device_import,
    discovery_import,
    est_enroll,
    gateways,
    issuance,
    oauth,
    ocsp,
    peers,
    policy_decisions,
    policy_hook,
    replica_revocation,
    risk_register,
    scale,
    simulate,
)
from benchmarks.harness import Result, RunConfig, failed, format_number

#: In the order they run; crypto-floor first, it is the ceiling the others are read against.
BENCHMARKS: tuple[ModuleType, ...] = (crypto_floor, issuance, api_issuance, est_enroll,
                                      crl, ocsp, policy_decisions, policy_hook, dataplane,
                                      broker_policy_change, broker_auth, oauth, simulate,
                                      detection, detection_stream, device_import,
                                      discovery_import, risk_register, scale, replica_revocation,
                                      cascade, console_pages, gateways, peers)
TABLE_WIDTH = 200
_VERDICT_STYLE = {"PASS": "bold green", "MISS": "bold red", "ERROR": "bold magenta",
                  "info": "dim"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    names = [b.NAME for b in BENCHMARKS]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure iotiam against its performance targets (not a test suite).",
        epilog="benchmarks: " + "; ".join(f"{b.NAME}: {b.TITLE}" for b in BENCHMARKS),
    )
    parser.add_argument("--only", action="append", choices=names, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(names)}")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and time caps: a smoke run of under a minute")
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="PostgreSQL instead of SQLite: each benchmark works in a fresh "
                             "schema there, dropped afterwards (e.g. "
                             "postgresql://postgres@127.0.0.1:5432/test)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the results to FILE as JSON")
    return parser.parse_args(argv)


def environment_line(config: RunConfig) -> str:
    """What the numbers were measured on."""
    backend = "PostgreSQL" if config.database_url else f"SQLite {sqlite3.sqlite_version}"
    return (f"{os.cpu_count()} CPUs · Python {platform.python_version()} · "
            f"cryptography {cryptography.__version__} · {backend} · "
            f"{'quick' if config.quick else 'full'} run")


class BackgroundLoad:
    """CPU used by processes other than this run (and the servers it started).

    The machine may be shared (tests, other servers): numbers measured while others
    used a core are low by about that much.
    """

    def __init__(self) -> None:
        self._busy = _machine_busy_seconds()
        self._ours = _own_cpu_seconds()
        self._wall = time.perf_counter()

    def cores(self) -> float | None:
        """Average cores used by everything else since this object was made."""
        busy = _machine_busy_seconds()
        if busy is None or self._busy is None:
            return None
        others = (busy - self._busy) - (_own_cpu_seconds() - self._ours)
        return max(0.0, others / (time.perf_counter() - self._wall))


def _machine_busy_seconds() -> float | None:
    """Non-idle CPU time of the whole machine (Linux ``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """This process plus its finished children (the servers are waited for)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def render(results: Sequence[Result], console: Console, title: str) -> None:
    """The table: name, measured value, unit, target, verdict, notes."""
    table = Table(title=title, title_justify="left")
    table.add_column("benchmark")
    table.add_column("measured", justify="right")
    table.add_column("unit")
    table.add_column("target", justify="right")
    table.add_column("result")
    table.add_column("notes", overflow="fold")
    for r in results:
        table.add_row(
            r.name,
            format_number(r.value),
            r.unit,
            r.target.describe() if r.target else "—",
            f"[{_VERDICT_STYLE[r.verdict]}]{r.verdict}[/]",
            r.error or r.notes,
        )
    console.print(table)


def to_json(results: Sequence[Result], config: RunConfig) -> str:
    """Machine-readable results (NaN becomes null)."""
    rows = [
        {
            "name": r.name,
            "value": None if math.isnan(r.value) else r.value,
            "unit": r.unit,
            "target": None if r.target is None else
            {"value": r.target.value, "at_least": r.target.at_least},
            "verdict": r.verdict,
            "notes": r.notes,
            "error": r.error,
        }
        for r in results
    ]
    return json.dumps({"environment": environment_line(config), "results": rows}, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; exit 1 only if one could not run (a MISS is a result)."""
    args = parse_args(argv)
    config = RunConfig(quick=args.quick, database_url=args.database_url)
    selected = [b for b in BENCHMARKS if not args.only or b.NAME in args.only]
    # piped output (make bench | tee) would otherwise be cut to 80 columns
    console = Console(width=None if sys.stdout.isatty() else TABLE_WIDTH)
    progress = Console(stderr=True)
    progress.print(f"[dim]{environment_line(config)}[/]")
    background = BackgroundLoad()
    results: list[Result] = []
    started = time.perf_counter()
    for bench in selected:
        progress.print(f"[dim]running {bench.NAME}: {bench.TITLE}…[/]")
        began, meanwhile = time.perf_counter(), BackgroundLoad()
        try:
            rows = bench.run(config)
        except Exception as e:  # one broken benchmark must not hide the others' numbers
            progress.print_exception()
            rows = [failed(bench.NAME, e)]
        results.extend(rows)
        others = meanwhile.cores()
        progress.print(f"[dim]  {bench.NAME} took {time.perf_counter() - began:.1f} s"
                       + ("" if others is None else f"; other processes used {others:.2f} cores")
                       + "[/]")
    total = time.perf_counter() - started
    others = background.cores()
    title = (f"iotiam benchmarks — {environment_line(config)} — {total:.0f} s"
             + ("" if others is None else f" — other processes used {others:.2f} cores meanwhile"))
    render(results, console, title)
    if args.json:
        args.json.write_text(to_json(results, config) + "\n")
    return 1 if any(r.verdict == "ERROR" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
