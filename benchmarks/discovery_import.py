"""Discovery import speed: a JSON-lines file of sightings through ``Discovery.import_stream``.

A script, not a test and not yet one of ``python -m benchmarks``' table rows (the
issue's target is ≥ 50,000 sightings/s for a 1M-line file):

    python -m benchmarks.discovery_import [--lines 200000] [--devices 2000]
        [--database-url postgresql://postgres@127.0.0.1:5432/test]

The file mixes what real sources give: a tenth of the lines are registered devices
seen by the broker (client id, IP), the rest unmanaged things seen by a scanner (MAC,
IP, host name) and by a flow log (the IP alone), each thing about three times. The
file is imported twice: the second time every line is a duplicate.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.harness import RunConfig, installation
from iotiam.bootstrap import Services
from iotiam.discovery.models import SourceContext
from iotiam.kernel import SYSTEM

START = 1_772_000_000


def mac(n: int, high: int = 0x02) -> str:
    """A locally administered MAC for thing ``n``."""
    return f"{high:02x}:00:{n >> 24 & 255:02x}:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:" \
           f"{n & 255:02x}"


def ip(n: int) -> str:
    """An address for thing ``n``."""
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def write_sightings(path: Path, lines: int, devices: int) -> None:
    """``lines`` sightings: registered devices and about lines/3 unmanaged things."""
    things = max(1, lines // 3)
    with path.open("w") as out:
        for n in range(lines):
            at = START + n
            if n % 10 == 0:
                d = (n // 10) % devices
                record = {"seen_at": at, "source": "broker", "client_id": f"dev-{d:06d}",
                          "ip": ip(1_000_000 + d), "site": "hq"}
            else:
                t = n % things
                record = {"seen_at": at, "site": "hq", "ip": ip(t)}
                if n % 3:
                    record |= {"source": "nmap", "mac": mac(t), "hostname": f"thing-{t}",
                               "open_ports": [22, 80]}
                else:
                    record |= {"source": "zeek"}
            out.write(json.dumps(record) + "\n")


def register(services: Services, devices: int) -> None:
    """``devices`` registered sensors, each with a MAC attribute."""
    rows = [(n + 1, {"id": f"dev-{n:06d}", "type": "sensor",
                     "attributes": {"mac": mac(n, 0x06)}}) for n in range(devices)]
    for start in range(0, len(rows), 500):
        services.inventory.import_devices(SYSTEM, rows[start:start + 500])


def timed_import(services: Services, path: Path) -> dict[str, float]:
    """One import of ``path``: wall and CPU seconds, and the report's counts."""
    cpu, wall = time.process_time(), time.perf_counter()
    with path.open("rb") as stream:
        report = services.discovery.import_stream(SYSTEM, "jsonl", stream, SourceContext())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"read": report.read, "added": report.added, "duplicates": report.duplicates,
            "matched": report.matched, "new_assets": report.new_assets,
            "refused": report.refused, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "per_second": round(report.read / wall), "cpu_us_per_line": round(
                cpu / max(1, report.read) * 1e6, 1)}


def main() -> None:
    """Measure and print one JSON line per import."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.discovery_import")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    config = RunConfig(database_url=args.database_url)
    with tempfile.TemporaryDirectory() as scratch, \
            installation(config, "discovery") as services:
        path = Path(scratch) / "sightings.jsonl"
        write_sightings(path, args.lines, args.devices)
        register(services, args.devices)
        backend = "postgresql" if args.database_url else "sqlite"
        for run in ("first", "again"):
            result = timed_import(services, path)
            print(json.dumps({"backend": backend, "run": run, "bytes": path.stat().st_size,
                              **result}))
        print(json.dumps({"max_rss_mib": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
