"""What every benchmark shares: results with targets, bounded load loops, installations.

A benchmark is a module with ``NAME``, a one-line ``TITLE`` and
``run(config: RunConfig) -> list[Result]``; ``benchmarks/__main__.py`` lists them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from iotiam.bootstrap import Services, build_services
from iotiam.config import Settings
from iotiam.installation import initialize
from iotiam.kernel import SYSTEM
from iotiam.storage.database import make_engine
from iotiam.testing import free_port, make_csr
from iotiam.testing.postgres import drop_schema

#: Environment variables that would point a benchmark at someone's real installation.
_IOTIAM_ENV_PREFIX = "IOTIAM_"


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """Options of one ``python -m benchmarks`` run."""

    quick: bool = False
    database_url: str | None = None

    def size(self, full: int, quick: int) -> int:
        """A count for this run's mode."""
        return quick if self.quick else full

    def seconds(self, full: float, quick: float) -> float:
        """A time budget for this run's mode."""
        return quick if self.quick else full


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A number a measurement must reach: ``at_least`` a rate or ``at_most`` a duration."""

    value: float
    at_least: bool = True

    def met_by(self, measured: float) -> bool:
        """Whether ``measured`` is on the right side of the target."""
        return measured >= self.value if self.at_least else measured <= self.value

    def describe(self) -> str:
        """``≥ 3,000`` or ``≤ 1.00``."""
        return f"{'≥' if self.at_least else '≤'} {format_number(self.value)}"


@dataclass(frozen=True)
class Result:
    """One row of the table. Rows without a target are context (shown as ``info``)."""

    name: str
    value: float
    unit: str
    target: Target | None = None
    notes: str = ""
    error: str | None = None

    @property
    def verdict(self) -> str:
        """PASS, MISS, info or ERROR."""
        if self.error is not None:
            return "ERROR"
        if self.target is None:
            return "info"
        return "PASS" if self.target.met_by(self.value) else "MISS"


def failed(name: str, error: BaseException) -> Result:
    """The row of a benchmark that could not run to the end."""
    message = " ".join(f"{type(error).__name__}: {error}".split())
    return Result(name=name, value=float("nan"), unit="", error=message[:300])


def format_number(value: float) -> str:
    """Thousands separators for rates, a few decimals for small numbers."""
    if value != value:  # NaN
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.2f}"


# -- measuring --------------------------------------------------------------------------


@dataclass
class Measured:
    """How many operations finished in how long, with per-operation latencies if taken."""

    done: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    stopped_by: str = "count"
    #: CPU this process used meanwhile (in-process loops only): robust to a busy machine
    cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """Latency percentile ``q`` (0-100) in milliseconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[rank] * 1000

    def describe(self) -> str:
        """``6,000 in 2.10 s (time cap), 0.31 ms CPU each``."""
        text = f"{self.done:,} in {self.elapsed:.2f} s"
        if self.stopped_by == "time":
            text += " (time cap)"
        if self.cpu_seconds is not None and self.done:
            text += f", {self.cpu_seconds / self.done * 1000:.3f} ms CPU each"
        return text


def run_bounded(
    work: Callable[[int], object], *, count: int, seconds: float, threads: int = 1
) -> Measured:
    """Call ``work(i)`` for i = 0, 1, … until ``count`` calls or ``seconds`` have passed.

    With ``threads`` > 1 the calls are spread over that many threads pulling from one
    counter. The first exception stops every thread and is re-raised.
    """
    indices = itertools.count()
    finished = itertools.count()  # next() on a C iterator is atomic under the GIL
    failures: list[BaseException] = []
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    timed_out = threading.Event()

    def worker() -> None:
        while not failures:
            i = next(indices)
            if i >= count:
                return
            if time.perf_counter() >= deadline:
                timed_out.set()
                return
            try:
                work(i)
            except BaseException as e:
                failures.append(e)
                return
            next(finished)

    if threads == 1:
        worker()
    else:
        pool = [threading.Thread(target=worker, name=f"bench-{n}") for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    if failures:
        raise failures[0]
    return Measured(next(finished), elapsed, stopped_by="time" if timed_out.is_set() else "count",
                    cpu_seconds=cpu)


async def run_bounded_async(
    work: Callable[[int], Awaitable[object]], *, count: int, seconds: float, concurrency: int
) -> Measured:
    """``concurrency`` tasks await ``work(i)`` until ``count`` calls or ``seconds`` passed;
    each call's latency is recorded."""
    next_index = itertools.count()
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    timed_out = False

    async def worker() -> None:
        nonlocal timed_out
        while True:
            i = next(next_index)
            if i >= count:
                return
            began = time.perf_counter()
            if began >= deadline:
                timed_out = True
                return
            await work(i)
            latencies.append(time.perf_counter() - began)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    elapsed = time.perf_counter() - start
    return Measured(len(latencies), elapsed, latencies, "time" if timed_out else "count")


def server_ms_per_request(meter: CpuMeter, measured: Measured) -> float:
    """The server's CPU per finished request, in ms (nan when unknown)."""
    if meter.server_seconds is None or not measured.done:
        return float("nan")
    return meter.server_seconds / measured.done * 1000


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, its threads and its child processes (``serve
    --workers``), from Linux ``/proc``; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    # fields[11], fields[12] are utime and stime (fields 14 and 15 of proc(5))
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(process_cpu_seconds(int(child)) or 0.0 for child in children)


# -- installations ----------------------------------------------------------------------


def clean_environment() -> dict[str, str]:
    """This process's environment without IOTIAM_* variables (no real installation leaks in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_IOTIAM_ENV_PREFIX)}


@contextmanager
def scratch_dir(label: str) -> Iterator[Path]:
    """A throw-away directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"iotiam-bench-{label}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def throwaway_database(config: RunConfig) -> Iterator[str | None]:
    """``None`` (SQLite in the data directory) or a fresh schema on ``--database-url``.

    PostgreSQL only: the schema is created, pinned with ``search_path`` in the URL
    (as the test suite does) and dropped afterwards; the run's connections carry the
    schema's name as their ``application_name``.
    """
    if not config.database_url:
        yield None
        return
    if not config.database_url.startswith(("postgresql://", "postgresql+psycopg://")):
        raise ValueError("--database-url must be a postgresql:// URL")
    schema = f"iotiam_bench_{secrets.token_hex(6)}"
    admin = make_engine(config.database_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        separator = "&" if "?" in config.database_url else "?"
        try:
            # the schema names the run's connections too (``PostgresCpu`` finds them so)
            yield (f"{config.database_url}{separator}options=-csearch_path%3D{schema}"
                   f"&application_name={schema}")
        finally:
            drop_schema(admin, schema)
    finally:
        admin.dispose()


@contextmanager
def installation(config: RunConfig, label: str) -> Iterator[Services]:
    """``iotiam init`` in a throw-away data directory, wired in this process."""
    with scratch_dir(label) as root, throwaway_database(config) as database_url:
        http_port = free_port()
        settings = Settings(
            data_dir=root / "data",
            database_url=database_url,
            port=free_port(),
            http_port=http_port,
        )
        initialize(settings)
        services = build_services(settings)
        try:
            yield services
        finally:
            services.close()


def device_ids(count: int, prefix: str = "bench") -> list[str]:
    """Device ids ``bench-000000`` …"""
    return [f"{prefix}-{i:06d}" for i in range(count)]


def import_rows(
    ids: Sequence[str], device_type: str = "sensor"
) -> list[tuple[int, dict[str, str]]]:
    """Bulk-import rows (1-based row numbers) registering ``ids`` with one type."""
    return [(n, {"id": device_id, "type": device_type}) for n, device_id in enumerate(ids, 1)]


def register_devices(services: Services, ids: Sequence[str], chunk: int = 500) -> None:
    """Register devices in-process through the bulk import use case."""
    rows = import_rows(ids)
    for start in range(0, len(rows), chunk):
        results = services.inventory.import_devices(SYSTEM, rows[start:start + chunk])
        bad = [r for r in results if not r.ok]
        if bad:
            raise RuntimeError(f"device import refused row {bad[0].row}: {bad[0].error}")


def device_csrs(ids: Sequence[str], *, pem: bool = False) -> list[bytes]:
    """One fresh P-256 key and CSR (CN = device id) per device, as a device would send."""
    return [make_csr(device_id, pem=pem) for device_id in ids]


class CpuMeter:
    """CPU used by a server process and by this (client) process over a measured window.

    Tells a saturated server (≈ 1 core: one Python process holds the GIL) from a
    saturated client, and gives the server's CPU cost per request.
    """

    def __init__(self, server_pid: int) -> None:
        self._pid = server_pid
        self._server: float | None = None
        self._client = 0.0
        self.server_seconds: float | None = None
        self.client_seconds = 0.0

    def start(self) -> None:
        """Begin the window."""
        self._server = process_cpu_seconds(self._pid)
        self._client = time.process_time()

    def stop(self) -> None:
        """End the window."""
        after = process_cpu_seconds(self._pid)
        if self._server is not None and after is not None:
            self.server_seconds = after - self._server
        self.client_seconds = time.process_time() - self._client

    def describe(self, measured: Measured) -> str:
        """``server 0.98 cores, 1.60 ms CPU/req; client 0.55 cores``."""
        if measured.elapsed <= 0 or not measured.done:
            return ""
        client = f"client {self.client_seconds / measured.elapsed:.2f} cores"
        if self.server_seconds is None:
            return client
        return (f"server {self.server_seconds / measured.elapsed:.2f} cores, "
                f"{self.server_seconds / measured.done * 1000:.2f} ms CPU/req; {client}")


class PostgresCpu:
    """CPU used by the PostgreSQL backends of one run's connections over a window.

    The server (or the service in this process) talks to a local PostgreSQL, whose
    work is not in its own CPU. Backends are found by the ``application_name`` that
    ``throwaway_database`` sets, and read from ``/proc`` (same host only: otherwise
    ``seconds`` stays None). A backend that exits inside the window loses its share;
    the connection pools of these runs keep theirs open.
    """

    def __init__(self, database_url: str | None) -> None:
        self._url = database_url
        self._name = _application_name(database_url)
        self._began: dict[int, float] = {}
        self.seconds: float | None = None

    def _backends(self) -> dict[int, float]:
        if self._url is None or self._name is None:
            return {}
        engine = make_engine(self._url.split("?", 1)[0])
        try:
            with engine.connect() as conn:
                pids = conn.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": self._name}).scalars().all()
        finally:
            engine.dispose()
        read = {pid: process_cpu_seconds(pid) for pid in pids}
        return {pid: cpu for pid, cpu in read.items() if cpu is not None}

    def start(self) -> None:
        """Begin the window."""
        self._began = self._backends()

    def stop(self) -> None:
        """End the window."""
        now = self._backends()
        if now:
            self.seconds = sum(cpu - self._began.get(pid, 0.0) for pid, cpu in now.items())


def _application_name(database_url: str | None) -> str | None:
    if not database_url or "application_name=" not in database_url:
        return None
    return database_url.split("application_name=", 1)[1].split("&", 1)[0]

