"""Large inputs made on the fly, never held whole, and what reading them costs in memory:
the helpers of the sources' streaming tests."""

from __future__ import annotations

import gc
import io
import sys
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from iotiam.discovery.models import Refusal

T = TypeVar("T")

CONN_HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
    "#path\tconn\n#open\t2026-12-06-10-00-00\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration"
    "\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory"
    "\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount"
    "\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n")


def conn_line(i: int) -> str:
    """The i-th connection: 5,000 devices, each talking to a local broker or the internet."""
    device = f"10.1.{i % 5000 // 250}.{i % 250 + 1}"
    server = "10.0.0.10\t1883\ttcp\tmqtt" if i % 3 else "93.184.216.34\t443\ttcp\tssl"
    return (f"{1796551200 + i * 0.01:.6f}\tC{i:x}\t{device}\t{40000 + i % 20000}\t{server}"
            f"\t1.5\t100\t200\tSF\t-\t-\t0\tShADadFf\t8\t500\t6\t400\t(empty)\n")


def eve_line(i: int) -> str:
    """The i-th EVE event of 5,000 devices: a flow, a TLS client, an MQTT connect or an
    alert."""
    device = f"10.1.{i % 5000 // 250}.{i % 250 + 1}"
    head = (f'{{"timestamp":"2026-12-06T10:{(i // 60) % 60:02d}:{i % 60:02d}.000000+0000",'
            f'"flow_id":{i},"src_ip":"{device}","src_port":{40000 + i % 20000},')
    kind = i % 4
    if kind == 0:
        return (head + '"event_type":"flow","dest_ip":"10.0.0.10","dest_port":1883,'
                '"proto":"TCP","app_proto":"mqtt","flow":{"pkts_toserver":5,"pkts_toclient":4,'
                '"state":"closed"},"tcp":{"tcp_flags_tc":"1b"}}\n')
    if kind == 1:
        return (head + '"event_type":"tls","dest_ip":"10.0.0.10","dest_port":8883,'
                '"proto":"TCP","tls":{"version":"TLS 1.3","sni":"broker.local",'
                f'"client":{{"subject":"CN=dev-{i % 5000}","issuerdn":"C=DE, O=Plant, '
                f'CN=Plant CA","serial":"{i:06X}","notafter":"2027-01-01T00:00:00"}}}}}}\n')
    if kind == 2:
        return (head + '"event_type":"mqtt","dest_ip":"10.0.0.10","dest_port":1883,'
                f'"proto":"TCP","mqtt":{{"connect":{{"protocol_version":4,'
                f'"client_id":"dev-{i % 5000}","username":"plant"}}}}}}\n')
    return head + '"event_type":"alert","dest_ip":"1.2.3.4","dest_port":80,"proto":"TCP"}\n'


def emqx_line(i: int, per_page: int = 100) -> str:
    """The i-th page of an EMQX clients listing, as one JSON line."""
    clients = ",".join(
        f'{{"clientid":"dev-{n}","username":"u{n % 7}","ip_address":"10.2.{n % 250}.'
        f'{n // 250 % 250 + 1}","port":{30000 + n % 1000},"connected":true,'
        f'"connected_at":"2026-12-06T10:00:00.000+00:00","proto_ver":5,'
        f'"node":"emqx@10.0.0.1"}}' for n in range(i * per_page, (i + 1) * per_page))
    return (f'{{"data":[{clients}],"meta":{{"page":{i + 1},"limit":{per_page},'
            f'"hasnext":true}}}}\n')


class Chunks(io.RawIOBase):
    """A read-only binary stream of ``chunks`` joined, made as it is read; ``size`` is how
    many bytes were made so far."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.size += len(chunk)
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def generated(count: int, line: Callable[[int], str], header: str = "") -> io.BufferedReader:
    """``header`` then ``line(0) .. line(count - 1)``, buffered as a file opened ``rb``."""
    def chunks() -> Iterator[bytes]:
        if header:
            yield header.encode()
        for start in range(0, count, 512):
            yield "".join(line(i) for i in range(start, min(start + 512, count))).encode()
    return io.BufferedReader(Chunks(chunks()), buffer_size=64 * 1024)


def streamed(parts: Iterable[bytes], batch: int = 200) -> tuple[IO[bytes], Chunks]:
    """A buffered binary stream of ``parts`` joined, ``batch`` parts a chunk, and its raw
    end (whose ``size`` is how many bytes were made)."""
    def chunks() -> Iterator[bytes]:
        pending: list[bytes] = []
        for part in parts:
            pending.append(part)
            if len(pending) >= batch:
                yield b"".join(pending)
                pending.clear()
        if pending:
            yield b"".join(pending)
    raw = Chunks(chunks())
    return io.BufferedReader(raw), raw


def collect(records: Iterator[object]) -> tuple[list[Any], list[Any]]:
    """A reading split into its sightings and its refusals."""
    sightings: list[Any] = []
    refusals: list[Any] = []
    for record in records:
        (refusals if isinstance(record, Refusal) else sightings).append(record)
    return sightings, refusals


def blocks_while_reading(records: Iterator[object], every: int = 10_000
                         ) -> tuple[int, int]:
    """``(records read, most interpreter memory blocks held above the start)``.

    ``sys.getallocatedblocks`` costs nothing per allocation (tracemalloc makes a read
    ten times slower), so a whole large input can be watched: a reader that keeps what
    it read grows by thousands of blocks per thousand records.
    """
    gc.collect()
    start = sys.getallocatedblocks()
    grown = 0
    count = 0
    for count, _ in enumerate(records, 1):
        if count % every == 0:
            grown = max(grown, sys.getallocatedblocks() - start)
    return count, grown


def peak_memory(run: Callable[[], T]) -> tuple[T, int]:
    """What ``run`` returns and the peak of memory it allocated, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def memory_is_flat(read: Callable[[IO[bytes]], int], make: Callable[[int], Iterable[bytes]],
                   small: int, big: int) -> tuple[int, int]:
    """Read ``make(small)`` and ``make(big)`` records with ``read`` (which returns how many
    it took) and check the peak of the bigger did not grow with it: ``(peak, bytes)``."""
    peaks = []
    for count in (small, big):
        stream, raw = streamed(make(count))
        taken, peak = peak_memory(lambda: read(stream))  # noqa: B023 (called at once)
        assert taken >= count * 0.9
        peaks.append(peak)
    assert peaks[1] < peaks[0] * 1.25 + 64 * 1024, f"the peak grew: {peaks}"
    return peaks[1], raw.size
