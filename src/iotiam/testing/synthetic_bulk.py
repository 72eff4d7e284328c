"""Large evidence files for the import benchmark, streamed to disk in bounded memory.

Device ``i`` of a bulk network is a pure function of ``i`` (its MAC, host name, address
and, for the first ``registered`` ones, its device id), so a million sightings are
written one line at a time and the expected figures are computed, not remembered.
Sighting ``j`` is of device ``(j * STRIDE) % devices``: the first ``devices`` sightings
see every device exactly once, in an order that is not the devices' own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from iotiam.testing.synthetic_formats import ZEEK_FIELDS, ZEEK_TYPES
from iotiam.testing.synthetic_network import DAY0

STRIDE = 7919
BULK_TYPE = "bulk-sensor"
BUFFER = 1 << 20


@dataclass(frozen=True)
class BulkPlan:
    """The size of a bulk network and its evidence."""

    sightings: int = 1_000_000
    devices: int = 300_000
    #: the first ``registered`` devices are registered (by MAC and client id)
    registered: int = 100_000
    site: str = "bench"
    start: float = DAY0

    def device(self, j: int) -> int:
        """Which device sighting ``j`` is of."""
        stride = STRIDE if math.gcd(STRIDE, self.devices) == 1 else 1
        return (j * stride) % self.devices


@dataclass(frozen=True)
class BulkExpectation:
    """What an import of a bulk file must report, and what discovery must then hold."""

    read: int
    added: int
    #: sightings of registered devices (matched by client id or MAC)
    matched: int
    #: distinct unmanaged devices seen: one asset each
    unmanaged_assets: int
    #: distinct registered devices seen
    registered_seen: int


def device_id(i: int) -> str:
    """The registered id (= MQTT client id) of bulk device ``i``."""
    return f"bulk-{i:07d}"


def device_mac(i: int) -> str:
    """A locally administered MAC, unique per device."""
    return "02:00:" + ":".join(f"{(i >> s) & 255:02x}" for s in (24, 16, 8, 0))


def device_ip(i: int) -> str:
    """A fixed address per device (no churn: the benchmark measures speed)."""
    n = i + 1  # never the .0.0 of a /16
    return f"10.{64 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"


def registration_rows(plan: BulkPlan) -> Iterator[dict[str, object]]:
    """``POST /v1/devices/import`` rows for the registered part, in order."""
    for i in range(plan.registered):
        yield {"row": i, "data": {"id": device_id(i), "type": BULK_TYPE, "site": plan.site,
                                  "attributes": {"mac": device_mac(i)}}}


def expected(plan: BulkPlan) -> BulkExpectation:
    """The figures an import of ``plan``'s jsonl file must give."""
    full, rest = divmod(plan.sightings, plan.devices)
    matched = full * plan.registered + sum(
        1 for j in range(rest) if plan.device(j) < plan.registered)
    seen = min(plan.sightings, plan.devices)
    registered_seen = plan.registered if full else sum(
        1 for j in range(rest) if plan.device(j) < plan.registered)
    return BulkExpectation(read=plan.sightings, added=plan.sightings, matched=matched,
                           unmanaged_assets=seen - registered_seen,
                           registered_seen=registered_seen)


class _Clock:
    """ISO 8601 text of ``start + j / 4`` seconds without a datetime per line."""

    def __init__(self, start: float) -> None:
        self.start = int(start)
        self._day = -1
        self._prefix = ""

    def text(self, j: int) -> str:
        seconds, quarter = divmod(j, 4)
        day, second = divmod(self.start + seconds, 86400)
        if day != self._day:
            self._day = day
            self._prefix = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%dT")
        hour, rest = divmod(second, 3600)
        return f"{self._prefix}{hour:02d}:{rest // 60:02d}:{rest % 60:02d}.{quarter * 25:02d}Z"


def write_bulk_jsonl(path: Path, plan: BulkPlan) -> BulkExpectation:
    """``plan.sightings`` generic sightings, one line each; registered devices also
    carry their client id."""
    clock = _Clock(plan.start)
    with path.open("w", encoding="utf-8", buffering=BUFFER) as out:
        for j in range(plan.sightings):
            i = plan.device(j)
            client = f'"client_id":"{device_id(i)}",' if i < plan.registered else ""
            # distinct times: every line is a new observation (nothing is a duplicate)
            out.write(f'{{"seen_at":"{clock.text(j)}","site":"{plan.site}",'
                      f'{client}"ip":"{device_ip(i)}","mac":"{device_mac(i)}",'
                      f'"hostname":"host-{i:07d}"}}\n')
    return expected(plan)


def write_bulk_zeek(path: Path, plan: BulkPlan) -> BulkExpectation:
    """``plan.sightings`` Zeek ``conn.log`` lines (address only: the weakest evidence)."""
    with path.open("w", encoding="utf-8", buffering=BUFFER) as out:
        opened = datetime.fromtimestamp(plan.start, UTC)
        out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
                  f"#unset_field\t-\n#path\tconn\n#open\t{opened:%Y-%m-%d-%H-%M-%S}\n"
                  "#fields\t" + "\t".join(ZEEK_FIELDS) + "\n"
                  "#types\t" + "\t".join(ZEEK_TYPES) + "\n")
        for j in range(plan.sightings):
            i = plan.device(j)
            out.write(f"{plan.start + j * 0.25:.6f}\tC{j:017x}\t{device_ip(i)}\t"
                      f"{40000 + j % 20000}\t10.63.0.10\t8883\ttcp\tssl\t0.412\t312\t1044\t"
                      "SF\tT\tT\t0\tShADadFf\t9\t684\t8\t1372\t-\n")
        closed = datetime.fromtimestamp(plan.start + plan.sightings * 0.25 + 60, UTC)
        out.write(f"#close\t{closed:%Y-%m-%d-%H-%M-%S}\n")
    return BulkExpectation(read=plan.sightings, added=plan.sightings, matched=0,
                           unmanaged_assets=0, registered_seen=0)


__all__ = ["BULK_TYPE", "BulkExpectation", "BulkPlan", "device_id", "device_ip",
           "device_mac", "expected", "registration_rows", "write_bulk_jsonl",
           "write_bulk_zeek"]
