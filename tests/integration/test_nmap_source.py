"""The nmap source reads what the real nmap writes: a scan of listeners opened here."""

from __future__ import annotations

import io
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from iotiam.discovery.models import Refusal, Sighting, SourceContext
from iotiam.discovery.sources.nmap import NmapXml
from iotiam.testing import require_binary


@pytest.fixture(scope="module")
def nmap() -> str:
    """The nmap binary (a missing one skips, or fails under IOTIAM_REQUIRE_INTEGRATION)."""
    return require_binary("nmap")


@pytest.fixture
def listeners() -> Iterator[list[int]]:
    """Three TCP ports listening on 127.0.0.1 for the test's length."""
    sockets = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sockets.append(sock)
    try:
        yield sorted(s.getsockname()[1] for s in sockets)
    finally:
        for sock in sockets:
            sock.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_connect_scan_yields_the_host_with_exactly_its_open_ports(
        nmap: str, listeners: list[int]) -> None:
    ports = [*listeners, closed_port(), closed_port()]
    before = time.time()
    # an unprivileged connect scan, with no ping (-Pn): what a user without root runs
    scan = subprocess.run([nmap, "-sT", "-Pn", "-oX", "-", "-p", ",".join(map(str, ports)),
                           "127.0.0.1"], capture_output=True, timeout=120, check=True)
    after = time.time()
    results = list(NmapXml().read(io.BytesIO(scan.stdout),
                                  SourceContext(site="lab", network="loopback")))
    (sighting,) = results
    assert isinstance(sighting, Sighting)
    assert (sighting.source, sighting.ip, sighting.site, sighting.network) == (
        "nmap", "127.0.0.1", "lab", "loopback")
    assert sighting.open_ports == tuple(listeners)
    # nmap's times are whole seconds
    assert int(before) <= sighting.seen_at <= after + 1
    assert sighting.mac is None  # no MAC on loopback


def test_a_scan_killed_mid_way_yields_the_hosts_it_finished(nmap: str,
                                                           listeners: list[int]) -> None:
    # one host at a time over 254 loopback addresses: nmap writes (and flushes) each
    # host when done; it is killed as soon as the first is out, as a user would ^C it
    with subprocess.Popen([nmap, "-sT", "-Pn", "-n", "--max-hostgroup", "1", "-oX", "-",
                           "-p", ",".join(map(str, listeners)), "127.0.0.1-254"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as scan:
        assert scan.stdout is not None
        output = b""
        deadline = time.monotonic() + 60
        while b"</host>" not in output and time.monotonic() < deadline:
            chunk = scan.stdout.read1(65536)
            if not chunk:
                break
            output += chunk
        scan.kill()
        output += scan.stdout.read()
    assert b"</nmaprun>" not in output
    *sightings, refusal = NmapXml().read(io.BytesIO(output), SourceContext())
    assert sightings and all(isinstance(s, Sighting) for s in sightings)
    first = sightings[0]
    assert isinstance(first, Sighting)
    assert (first.ip, first.open_ports) == ("127.0.0.1", tuple(listeners))
    assert isinstance(refusal, Refusal)
    assert "the rest of the file is skipped" in refusal.reason
