"""The arp source reads the four dumps of a neighbour table, each as its tool prints it."""

from __future__ import annotations

import io

import pytest

from iotiam.discovery.models import Refusal, Sighting, SourceContext
from iotiam.discovery.sources.lines import MAX_LINE
from iotiam.discovery.sources.neighbours import NeighbourTable
from iotiam.errors import InvalidInput

CONTEXT = SourceContext(site="plant-a", network="vlan-20", default_time=1796551200.0)

# cat /proc/net/arp (Linux; flags 0x2 = ATF_COM complete, 0x6 = + ATF_PERM, 0x0 = not
# resolved yet)
PROC_NET_ARP = b"""\
IP address       HW type     Flags       HW address            Mask     Device
192.168.20.1     0x1         0x2         00:1b:1b:0a:03:01     *        eth0
192.168.20.77    0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.20.50    0x1         0x6         b8:27:eb:12:34:56     *        eth0
"""
# ip neigh show (iproute2; it ends each line with a space), with an unresolved IPv4
# (FAILED, INCOMPLETE), an IPv6 router, a multicast entry and `ip -s` counters
IP_NEIGH = b"""\
192.168.20.1 dev eth0 lladdr 00:1b:1b:0a:03:01 REACHABLE 
192.168.20.99 dev eth0  FAILED 
192.168.20.30 dev eth0 INCOMPLETE 
fe80::21b:1bff:fe0a:301 dev eth0 lladdr 00:1b:1b:0a:03:01 router STALE 
224.0.0.251 dev eth0 lladdr 01:00:5e:00:00:fb NOARP 
192.168.20.50 dev eth0 lladdr b8:27:eb:12:34:56 used 12/12/9 probes 1 STALE 
fd00::1 dev eth0 FAILED 
"""  # noqa: W291 (iproute2 ends its lines with a space)
# arp -a of net-tools (Linux): names where they resolve, <incomplete> entries
ARP_LINUX = b"""\
gw.plant-a.example (192.168.20.1) at 00:1b:1b:0a:03:01 [ether] on eth0
? (192.168.20.50) at b8:27:eb:12:34:56 [ether] PERM on eth0
? (192.168.20.99) at <incomplete> on eth0
"""
# arp -an of macOS and the BSDs: octets without leading zeros, (incomplete),
# broadcast and multicast entries
ARP_MACOS = b"""\
? (192.168.20.1) at 0:1b:1b:a:3:1 on en0 ifscope [ethernet]
? (192.168.20.50) at b8:27:eb:12:34:56 on en0 ifscope permanent [ethernet]
? (192.168.20.99) at (incomplete) on en0 ifscope [ethernet]
? (192.168.20.255) at ff:ff:ff:ff:ff:ff on en0 ifscope [ethernet]
? (224.0.0.251) at 1:0:5e:0:0:fb on en0 ifscope permanent [ethernet]
"""
# arp -a of Windows (CRLF, a blank first line, one block per interface)
ARP_WINDOWS = b"""\r
Interface: 192.168.20.10 --- 0xb\r
  Internet Address      Physical Address      Type\r
  192.168.20.1          00-1b-1b-0a-03-01     dynamic\r
  192.168.20.50         b8-27-eb-12-34-56     dynamic\r
  192.168.20.255        ff-ff-ff-ff-ff-ff     static\r
  224.0.0.22            01-00-5e-00-00-16     static\r
"""

GATEWAY = ("192.168.20.1", "00:1b:1b:0a:03:01")
CAMERA = ("192.168.20.50", "b8:27:eb:12:34:56")


def read(data: bytes, context: SourceContext = CONTEXT) -> list[Sighting | Refusal]:
    return list(NeighbourTable().read(io.BytesIO(data), context))


def pairs(results: list[Sighting | Refusal]) -> list[tuple[str | None, str | None]]:
    assert all(isinstance(r, Sighting) for r in results), results
    return [(r.ip, r.mac) for r in results if isinstance(r, Sighting)]


@pytest.mark.parametrize(("data", "expected"), [
    (PROC_NET_ARP, [GATEWAY, CAMERA]),
    (IP_NEIGH, [GATEWAY, ("fe80::21b:1bff:fe0a:301", GATEWAY[1]), CAMERA]),
    (ARP_LINUX, [GATEWAY, CAMERA]),
    (ARP_MACOS, [GATEWAY, CAMERA]),
    (ARP_WINDOWS, [GATEWAY, CAMERA]),
], ids=["ok/proc-net-arp", "ok/ip-neigh", "ok/arp-linux", "ok/arp-macos", "ok/arp-windows"])
def test_resolved_entries_are_sightings(data: bytes,
                                        expected: list[tuple[str, str]]) -> None:
    assert pairs(read(data)) == expected


def test_a_sighting_carries_the_context() -> None:
    gateway, _ = read(ARP_LINUX)
    assert gateway == Sighting(source="arp", seen_at=1796551200.0, site="plant-a",
                               network="vlan-20", ip="192.168.20.1",
                               mac="00:1b:1b:0a:03:01", hostname="gw.plant-a.example")


def test_without_a_context_time_the_import_time_is_taken() -> None:
    first, second = read(PROC_NET_ARP, SourceContext())
    assert isinstance(first, Sighting) and isinstance(second, Sighting)
    assert first.seen_at == second.seen_at > 1.7e9


@pytest.mark.parametrize(("data", "line", "reason"), [
    (PROC_NET_ARP + b"192.168.20.60    0x1         0x2         b8:27:eb:12:34\n", 5,
     "not the 6 of /proc/net/arp"),
    (PROC_NET_ARP + b"192.168.20.60    0x1         0x2         b8:27:eb:12:34  *  eth0\n", 5,
     "not a MAC address"),
    (IP_NEIGH + b"192.168.20.300 dev eth0 lladdr b8:27:eb:12:34:57 STALE\n", 8,
     "not an IP address"),
    (ARP_LINUX + b"some text the tool did not write\n", 4, "not 'name (IP) at MAC"),
    (ARP_LINUX + b"? (10.0.0.1) at " + b"0" * (MAX_LINE + 10) + b"\n", 4, "longer than"),
], ids=["fail/proc-fields", "fail/proc-mac", "fail/neigh-ip", "fail/arp-line",
        "fail/long-line"])
def test_a_bad_line_is_refused_alone(data: bytes, line: int, reason: str) -> None:
    *sightings, refusal = read(data)
    assert sightings and all(isinstance(s, Sighting) for s in sightings)
    assert isinstance(refusal, Refusal) and refusal.position == line
    assert reason in refusal.reason


@pytest.mark.parametrize(("data", "reason"), [
    (b"ip,mac\n10.0.0.1,00:11:22:33:44:55\n", "not an ARP or neighbour table"),
    (b"1796634000 b8:27:eb:12:34:56 192.168.10.50 cam-lobby *\n", "not an ARP"),
    (bytes(range(256)) * 64, "not a text file"),
], ids=["fail/csv", "fail/dnsmasq", "fail/binary"])
def test_foreign_input_is_refused_whole(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        read(data)


def test_an_empty_table_has_no_sightings() -> None:
    assert read(b"") == []
    assert read(b"IP address       HW type     Flags       HW address            Mask     "
                b"Device\n") == []
