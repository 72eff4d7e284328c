"""``iotiam simulate``: a fleet of agents enrolling at once, as on a factory line."""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from iotiam.agent import Agent, AgentError
from iotiam.cli.main import Context, console, errors
from iotiam.cli.output import print_table
from iotiam.errors import InvalidInput

CHUNK = 500


def register(app: typer.Typer) -> None:
    """Add ``simulate``."""
    app.command("simulate")(simulate)


def simulate(
    ctx: typer.Context,
    devices: Annotated[int, typer.Option(help="How many devices enroll.")] = 100,
    concurrency: Annotated[int, typer.Option(help="Enrollments in flight at once.")] = 16,
    device_type: Annotated[str, typer.Option("--type")] = "sensor",
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Keep the agents' directories here (default: a temp dir, removed).")
    ] = None,
) -> None:
    """Register N devices, give each a claim, and let N agents enroll concurrently."""
    if not 1 <= devices <= 1_000_000:
        raise InvalidInput("--devices must be between 1 and 1,000,000")
    if not 1 <= concurrency <= 512:
        raise InvalidInput("--concurrency must be between 1 and 512")
    obj: Context = ctx.obj
    client = obj.client()
    profile_url = client.base_url
    ca_file = client.ca_file
    if ca_file is None:
        raise InvalidInput("the profile names no CA file to trust the server with")
    run_id = secrets.token_hex(3)
    ids = [f"sim-{run_id}-{i:06d}" for i in range(devices)]
    claims: dict[str, str] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                  console=errors) as progress:
        task = progress.add_task("registering", total=devices)
        for start in range(0, devices, CHUNK):
            chunk = ids[start : start + CHUNK]
            answer = client.post("/v1/devices/import", {"rows": [
                {"row": start + n + 1, "data": {"id": d, "type": device_type}}
                for n, d in enumerate(chunk)]})
            if answer["failed"]:
                first = next(r for r in answer["results"] if not r["ok"])
                raise InvalidInput(f"registering simulated devices failed: {first['error']}")
            for item in client.post("/v1/claims", {"devices": chunk})["items"]:
                claims[item["device"]] = item["token"]
            progress.advance(task, len(chunk))

    base = directory or Path(tempfile.mkdtemp(prefix="iotiam-sim-"))
    latencies: list[float] = []
    failures: list[str] = []

    def enroll(device_id: str) -> float:
        began = time.perf_counter()
        Agent(base / device_id, server_url=profile_url, device_id=device_id,
              server_ca=Path(ca_file)).enroll(claims[device_id])
        return time.perf_counter() - began

    began = time.perf_counter()
    with Progress(TextColumn("enrolling"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=errors) as progress, \
            ThreadPoolExecutor(max_workers=concurrency) as pool:
        task = progress.add_task("enroll", total=devices)
        futures = {pool.submit(enroll, d): d for d in ids}
        for future in as_completed(futures):
            try:
                latencies.append(future.result())
            except AgentError as e:
                failures.append(f"{futures[future]}: {e.diagnostics()}")
            progress.advance(task)
    elapsed = time.perf_counter() - began
    if directory is None:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    print_table("simulation", ["devices", "enrolled", "failed", "seconds", "enrollments/s",
                               "p50 ms", "p99 ms"],
                [[devices, len(latencies), len(failures), f"{elapsed:.1f}",
                  f"{len(latencies) / elapsed:.0f}" if elapsed else "-",
                  f"{statistics.median(ordered) * 1000:.0f}" if ordered else "-",
                  f"{p99 * 1000:.0f}"]])
    for failure in failures[:10]:
        console.print(f"  {failure}", markup=False)
    if failures:
        raise typer.Exit(code=1)
