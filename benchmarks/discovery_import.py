"""Discovery import: ≥ 50,000 sightings/s from a 1M-line file, in bounded memory.

The evidence is ``iotiam.testing.synthetic_bulk``'s: a network of 300,000 devices of
which the first 100,000 are registered (by MAC and client id); a JSON-lines file of
1,000,000 sightings (each device about three times, every line a new observation:
client id for the registered ones, IP, MAC and host name) and a Zeek ``conn.log`` of as
many flows (the address alone, the weakest evidence). ``--quick``: 100,000 sightings of
30,000 devices, 10,000 registered.

Measured, in one fresh installation per run (SQLite in a scratch directory, or a
throw-away schema of ``--database-url``), through ``Discovery.import_stream`` as the
API and the CLI call it:

- the JSON-lines file's first import: sightings/s by wall clock, and this process's
  CPU time per sighting (on PostgreSQL the run's server backends' CPU beside it, read
  from ``/proc`` by ``harness.PostgresCpu``: the server is on this host);
- the same file again: every line a duplicate, nothing added;
- the Zeek file after it: every address resolves to what the first file bound (a flow
  between two local addresses is two sightings, one of each side);
- reading each file with its source alone (parse, normalise, digest; nothing stored):
  the CPU per line that leaves the rest of the budget to storing and reconciling;
- the peak resident memory of this process (``ru_maxrss``): bounded means it does not
  grow with the file, so it is reported with the file's size beside it.

The reports are checked against ``synthetic_bulk.expected``: a fast import that adds or
matches the wrong number is an error, not a number.

What is looked up per line: about eight values (its MAC, host name and address against
the devices' attributes, each one index probe since migration 0023, and among the
bindings, the address in three day slots). What is written per line
(``docs/discovery.md``, "Idempotent, streamed imports"): a 16-byte digest (claimed with
one ``INSERT ... RETURNING`` per batch, so a re-import stops there), no sighting row
(none of these lines shows a credential), about 1.5 binding rows on the first import (a
thing seen again within a day keeps its MAC's and name's rows; its address's row moves),
0.67 asset rows and 0.33 presence rows. Before the imports the start-up objects are
frozen out of the collector, as ``iotiam serve`` does (``api/server.py``); without it
full collections walk them and the first import costs about a quarter more CPU.

Where the CPU goes, phase by phase, before and after each change, and why the target
of 20 µs a line is out of reach for one process: ``docs/discovery.md``, "Speed".
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from benchmarks.harness import (
    PostgresCpu,
    Result,
    RunConfig,
    Target,
    installation,
    scratch_dir,
)
from iotiam.bootstrap import Services
from iotiam.discovery.catalog import source_named
from iotiam.discovery.models import ImportReport, Refusal, SourceContext
from iotiam.inventory.models import Criticality, DeviceClass
from iotiam.kernel import SYSTEM
from iotiam.testing.synthetic_bulk import (
    BULK_TYPE,
    BulkExpectation,
    BulkPlan,
    registration_rows,
    write_bulk_jsonl,
    write_bulk_zeek,
)

NAME = "discovery-import"
TITLE = "discovery: a 1M-sighting jsonl file and a Zeek conn.log imported (100k with --quick)"
RATE_TARGET = 50_000
#: the part of the 20 µs a line has at the target rate that reading it may take
PARSE_TARGET_US = 6.0
#: rows per device-import request (the API's limit is larger; this keeps each short)
REGISTER_CHUNK = 1000


def plan_for(config: RunConfig) -> BulkPlan:
    """The network and file sizes of this run."""
    sightings = config.size(1_000_000, 100_000)
    return BulkPlan(sightings=sightings, devices=sightings * 3 // 10,
                    registered=sightings // 10)


def register(services: Services, plan: BulkPlan) -> None:
    """The registered part of the bulk network, through the inventory's bulk import."""
    services.inventory.create_device_type(SYSTEM, name=BULK_TYPE,
                                          device_class=DeviceClass.SENSOR,
                                          criticality=Criticality.LOW)
    chunk: list[tuple[int, dict[str, object]]] = []
    for row in registration_rows(plan):
        chunk.append((len(chunk) + 1, cast(dict[str, object], row["data"])))
        if len(chunk) == REGISTER_CHUNK:
            _register_chunk(services, chunk)
            chunk = []
    if chunk:
        _register_chunk(services, chunk)


def _register_chunk(services: Services, rows: list[tuple[int, dict[str, object]]]) -> None:
    bad = [r for r in services.inventory.import_devices(SYSTEM, rows) if not r.ok]
    if bad:
        raise RuntimeError(f"device import refused row {bad[0].row}: {bad[0].error}")


class Timed:
    """One import: its report, wall and CPU seconds."""

    def __init__(self, services: Services, source: str, path: Path, site: str) -> None:
        gc.collect()
        server = PostgresCpu(services.settings.database_url)
        server.start()
        cpu, wall = time.process_time(), time.perf_counter()
        with path.open("rb") as stream:
            self.report: ImportReport = services.discovery.import_stream(
                SYSTEM, source, stream, SourceContext(site=site))
        self.wall = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu
        server.stop()
        #: the PostgreSQL backends' CPU seconds meanwhile (None on SQLite)
        self.server_cpu = server.seconds

    @property
    def rate(self) -> float:
        """Lines read per wall-clock second."""
        return self.report.read / self.wall

    @property
    def cpu_us(self) -> float:
        """This process's CPU microseconds per line read."""
        return self.cpu / max(1, self.report.read) * 1e6

    @property
    def server_us(self) -> float | None:
        """The PostgreSQL backends' CPU microseconds per line read (None on SQLite)."""
        if self.server_cpu is None:
            return None
        return self.server_cpu / max(1, self.report.read) * 1e6

    def cpu_note(self) -> str:
        """This process's CPU per line, and the server's when there is one."""
        server = "" if self.server_us is None else f" + {self.server_us:.1f} µs the server's"
        return f"{self.cpu_us:.1f} µs CPU/line{server}"

    def counts(self) -> str:
        """The report's figures, for the notes."""
        r = self.report
        return (f"read {r.read:,}, added {r.added:,}, duplicates {r.duplicates:,}, "
                f"matched {r.matched:,}, new assets {r.new_assets:,}, refused {r.refused:,}; "
                f"{self.wall:.1f} s")


class Parsed:
    """One file read by its source alone: parsed, normalised and digested, not stored."""

    def __init__(self, source: str, path: Path, site: str) -> None:
        gc.collect()
        self.sightings = 0
        cpu = time.process_time()
        with path.open("rb") as stream:
            for record in source_named(source).read(stream, SourceContext(site=site)):
                if isinstance(record, Refusal):
                    raise RuntimeError(f"{source} refused line {record.position}: "
                                       f"{record.reason}")
                record.digest()
                self.sightings += 1
        self.cpu = time.process_time() - cpu

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per sighting."""
        return self.cpu / max(1, self.sightings) * 1e6


def check(what: str, timed: Timed, **wanted: int) -> None:
    """Raise when the report's figures are not the expected ones."""
    wrong = {name: (getattr(timed.report, name), value) for name, value in wanted.items()
             if getattr(timed.report, name) != value}
    if wrong:
        raise RuntimeError(f"{what}: unexpected report (got, wanted): {wrong}")


def peak_rss_mib() -> float:
    """This process's peak resident set so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run(config: RunConfig) -> list[Result]:
    """Write the files, register the fleet, then time the three imports."""
    plan = plan_for(config)
    backend = "PostgreSQL" if config.database_url else "SQLite"
    with scratch_dir("discovery-files") as files, installation(config, "discovery") as services:
        jsonl, zeek = files / "bulk.jsonl", files / "conn.log"
        expected: BulkExpectation = write_bulk_jsonl(jsonl, plan)
        write_bulk_zeek(zeek, plan)
        parsed_jsonl = Parsed("jsonl", jsonl, plan.site)
        parsed_zeek = Parsed("zeek", zeek, plan.site)
        register(services, plan)
        rss_before = peak_rss_mib()
        # as ``iotiam serve`` does once started (``api/server.py``): what lives as long as
        # the process is frozen, so the collector's full passes do not walk it again
        gc.collect()
        gc.freeze()
        try:
            first = Timed(services, "jsonl", jsonl, plan.site)
            check("first import", first, read=expected.read, added=expected.added,
                  matched=expected.matched, refused=0)
            again = Timed(services, "jsonl", jsonl, plan.site)
            check("re-import", again, read=expected.read, added=0, duplicates=expected.read)
            flows = Timed(services, "zeek", zeek, plan.site)
        finally:
            gc.unfreeze()
        # a flow between two local addresses is a sighting of each side
        check("zeek import", flows, added=flows.report.read, refused=0)
        rss_after = peak_rss_mib()
        sizes = (f"{plan.sightings:,} lines of {plan.devices:,} devices "
                 f"({plan.registered:,} registered), {backend}")
        mib: Callable[[Path], float] = lambda p: p.stat().st_size / (1 << 20)  # noqa: E731
        return [
            Result(f"{NAME}: jsonl, first import", first.rate, "sightings/s",
                   Target(RATE_TARGET), f"{sizes}; {first.counts()}"),
            Result(f"{NAME}: jsonl, CPU per sighting (this process)", first.cpu_us, "µs",
                   Target(1e6 / RATE_TARGET, at_least=False),
                   "process CPU time of the first import / lines (one core's budget at "
                   "the target is 20 µs)" + ("" if first.server_us is None else
                   f"; the PostgreSQL backends' CPU besides: {first.server_us:.1f} µs/line")),
            Result(f"{NAME}: jsonl, parse + digest only", parsed_jsonl.cpu_us, "µs",
                   Target(PARSE_TARGET_US, at_least=False),
                   f"CPU per line of reading the file with the jsonl source and digesting "
                   f"each sighting, nothing stored ({parsed_jsonl.sightings:,} sightings)"),
            Result(f"{NAME}: jsonl again (all duplicates)", again.rate, "lines/s",
                   Target(RATE_TARGET), f"{again.counts()}; {again.cpu_note()}"),
            Result(f"{NAME}: Zeek conn.log (addresses of known things)", flows.rate,
                   "sightings/s", Target(RATE_TARGET),
                   f"{flows.counts()}; {flows.cpu_note()}"),
            Result(f"{NAME}: Zeek conn.log, parse + digest only", parsed_zeek.cpu_us, "µs",
                   Target(PARSE_TARGET_US, at_least=False),
                   f"CPU per sighting, nothing stored ({parsed_zeek.sightings:,} sightings "
                   f"of {plan.sightings:,} flows: both sides are local)"),
            Result(f"{NAME}: peak RSS of this process", rss_after, "MiB",
                   notes=f"{rss_before:.0f} MiB before the imports; files "
                         f"{mib(jsonl):.0f} MiB jsonl, {mib(zeek):.0f} MiB conn.log"),
        ]
