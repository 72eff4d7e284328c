"""``iotiam simulate``: a fleet of agents enrolling at once, as on a factory line.

Devices are registered and given their claims a chunk at a time, while the chunk
before is still enrolling. A claim is used at most about two chunks after it is
minted, so it stays valid however large the fleet or slow the run (minting them all
first let a 10-minute claim expire before a large fleet's last devices came to it),
and the devices in flight, like the memory and disk they take, stay bounded.
"""

from __future__ import annotations

import queue
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from iotiam.agent import Agent, AgentError
from iotiam.agent.claim import enroll_with_claim
from iotiam.agent.est_client import EstClient
from iotiam.agent.paths import server_tls_context
from iotiam.cli.client import ApiClient, Profile, load_profile
from iotiam.cli.entry import UsageError
from iotiam.cli.main import Context, console, errors
from iotiam.cli.output import print_json, print_table
from iotiam.clock import Clock, SystemClock
from iotiam.errors import InvalidInput

#: devices registered, and claims minted, per request (``POST /v1/claims`` takes ≤ 1,000)
CHUNK = 500
#: claims are used within about two chunks of being minted; this is a wide margin
CLAIM_TTL_SECONDS = 3600


def register(app: typer.Typer) -> None:
    """Add ``simulate``."""
    app.command("simulate")(simulate)


@dataclass
class FleetOutcome:
    """What the enrollments came to: a latency per enrolled device, a line per failure."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def collect(self, device_id: str, future: Future[float]) -> None:
        """Record one finished enrollment."""
        try:
            self.latencies.append(future.result())
        except AgentError as e:
            self.failures.append(f"{device_id}: {e.diagnostics()}")
        except Exception as e:  # one broken device must not end the fleet's run
            self.failures.append(f"{device_id}: {type(e).__name__}: {e}")

    def summary(self, devices: int, elapsed: float) -> dict[str, int | float | None]:
        """The run in numbers (latencies of enrolled devices, in milliseconds)."""
        ordered = sorted(self.latencies)

        def percentile_ms(q: float) -> float | None:
            if not ordered:
                return None
            return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

        return {
            "devices": devices,
            "enrolled": len(ordered),
            "failed": len(self.failures),
            "seconds": elapsed,
            "enrollments/s": len(ordered) / elapsed if elapsed > 0 else None,
            "p50 ms": percentile_ms(0.5),
            "p99 ms": percentile_ms(0.99),
        }


def register_chunk(profile: Profile, chunk: list[str], first_row: int, device_type: str
                   ) -> dict[str, str]:
    """Register ``chunk`` and mint a claim for each of its devices: device id -> token.

    On a connection of its own: one kept from the chunk before would have idled while
    that chunk enrolled, for about as long as the server keeps an idle connection
    open (5 s), and a request sent as the server closes it is lost.
    """
    client = ApiClient(profile)
    try:
        answer = client.post("/v1/devices/import", {"rows": [
            {"row": first_row + n, "data": {"id": d, "type": device_type}}
            for n, d in enumerate(chunk)]})
        if answer["failed"]:
            first = next(r for r in answer["results"] if not r["ok"])
            raise InvalidInput(f"registering simulated devices failed: {first['error']}")
        claims = client.post("/v1/claims", {"devices": chunk,
                                            "ttl_seconds": CLAIM_TTL_SECONDS})
    finally:
        client.close()
    return {item["device"]: item["token"] for item in claims["items"]}


@dataclass
class AgentFleet:
    """The run's agents, at most a bounded number in flight.

    With ``keep`` (``--dir``) each is a whole ``Agent`` in a directory of its own under
    it, as on a device. Otherwise each runs the agent's enrollment core
    (``enroll_with_claim``: a key made here, ``cacerts`` + ``simpleenroll`` on a new TLS
    connection) and keeps its key and certificate in memory for the checks: a fleet of
    thousands sharing one disk has no device to keep them on, and making and removing a
    directory per agent cost the simulator a fifth of its CPU. Those agents share one
    server-auth TLS context: a claim is sent over TLS that authenticates the server
    only, so nothing in the context differs from one device to the next.
    """

    server_url: str
    server_ca: Path
    keep: Path | None = None
    outcome: FleetOutcome = field(default_factory=FleetOutcome)
    finished: queue.SimpleQueue[tuple[str, Future[float]]] = field(
        default_factory=queue.SimpleQueue)
    in_flight: int = 0
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self._est = EstClient(self.server_url, self.server_ca,
                              shared=server_tls_context(self.server_ca))

    def enroll(self, device_id: str, claim: str) -> float:
        """Enroll one agent with its claim; returns how long it took, in seconds."""
        began = time.perf_counter()
        if self.keep is not None:
            Agent(self.keep / device_id, server_url=self.server_url, device_id=device_id,
                  server_ca=self.server_ca).enroll(claim)
        else:
            enroll_with_claim(self._est, device_id, claim).check(device_id, self.clock.now())
        return time.perf_counter() - began

    def launch(self, pool: ThreadPoolExecutor, device_id: str, claim: str) -> None:
        """Start one agent's enrollment on ``pool``."""
        future = pool.submit(self.enroll, device_id, claim)
        self.in_flight += 1
        future.add_done_callback(lambda f: self.finished.put((device_id, f)))

    def collect(self, progress: Progress, task: TaskID, at_most: int) -> None:
        """Wait for enrollments to finish until at most ``at_most`` are in flight."""
        while self.in_flight > at_most:
            device_id, future = self.finished.get()
            self.in_flight -= 1
            self.outcome.collect(device_id, future)
            progress.advance(task)


def enroll_fleet(fleet: AgentFleet, profile: Profile, ids: list[str], device_type: str,
                 concurrency: int) -> None:
    """Register ``ids`` a chunk at a time; each chunk enrolls while the next registers."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="agent")
    try:
        # transient: the summary replaces the bars; an error stays a single line (G10)
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                      console=errors, transient=True) as progress:
            registered = progress.add_task("registered", total=len(ids))
            enrolled = progress.add_task("enrolled  ", total=len(ids))
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                claims = register_chunk(profile, chunk, start + 1, device_type)
                progress.advance(registered, len(chunk))
                for device_id in chunk:
                    fleet.launch(pool, device_id, claims[device_id])
                # the next chunk registers while this one enrolls
                fleet.collect(progress, enrolled, CHUNK)
            fleet.collect(progress, enrolled, 0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def print_outcome(outcome: FleetOutcome, devices: int, elapsed: float, as_json: bool) -> None:
    """The summary as a table (and the first failures) or as JSON."""
    summary = outcome.summary(devices, elapsed)
    if as_json:
        print_json({**summary, "failures": outcome.failures[:100]})
    else:
        print_table("simulation", list(summary), [[
            f"{v:,.1f}" if isinstance(v, float) else "-" if v is None else v
            for v in summary.values()]])
        for failure in outcome.failures[:10]:
            console.print(f"  {failure}", markup=False)


def simulate(
    ctx: typer.Context,
    devices: Annotated[int, typer.Option(help="How many devices enroll.")] = 100,
    concurrency: Annotated[int, typer.Option(help="Enrollments in flight at once.")] = 16,
    device_type: Annotated[str, typer.Option("--type")] = "sensor",
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Run each agent in a directory of its own here, as on a device, and "
                      "keep them (default: each agent keeps its key and certificate in "
                      "memory, checks them and forgets them).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")
                       ] = False,
) -> None:
    """Register N devices, give each a claim, and let N agents enroll concurrently."""
    if not 1 <= devices <= 1_000_000:
        raise UsageError("--devices must be between 1 and 1,000,000")
    if not 1 <= concurrency <= 512:
        raise UsageError("--concurrency must be between 1 and 512")
    obj: Context = ctx.obj
    profile = load_profile(obj.data_dir, obj.url, obj.token)
    if profile.ca_file is None:
        raise InvalidInput("the profile names no CA file to trust the server with")
    run_id = secrets.token_hex(3)
    ids = [f"sim-{run_id}-{i:06d}" for i in range(devices)]
    fleet = AgentFleet(profile.url, Path(profile.ca_file), keep=directory)
    began = time.perf_counter()
    enroll_fleet(fleet, profile, ids, device_type, concurrency)
    print_outcome(fleet.outcome, devices, time.perf_counter() - began, as_json)
    if fleet.outcome.failures:
        raise typer.Exit(code=1)
