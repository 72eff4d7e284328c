"""The DHCP sources read dhcpd's and dnsmasq's lease databases as those servers write them."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from iotiam.discovery.models import Refusal, Sighting, SourceContext
from iotiam.discovery.sources.dhcp_leases import DhcpdLeases, DnsmasqLeases
from iotiam.discovery.sources.lines import MAX_LINE
from iotiam.errors import InvalidInput

from .generated import memory_is_flat, peak_memory

#: the file's time: after every lease in the samples was granted or renewed
FILE_TIME = 1796724000.0
CONTEXT = SourceContext(site="plant-a", network="vlan-20", default_time=FILE_TIME)

# dhcpd.leases(5) of isc-dhcp 4.4 in a failover pair: the head dhcpd writes, the peer's
# state, then the log of one address: granted to a camera, renewed, released (dhcpd
# keeps the last client's MAC on a free lease), and granted to another device; a lease
# in the secondary's pool ("backup"), an OMAPI host, and a lease under
# "db-time-format local" (epoch times, the date in a comment)
DHCPD = b"""\
# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

server-duid "\\000\\001\\000\\001,\\322\\246\\002\\000\\014)\\021\\"\\263";

failover peer "dhcp-failover" state {
  my state normal at 4 2026/12/03 07:59:12;
  partner state normal at 4 2026/12/03 07:59:14;
  mclt 3600;
}

lease 192.168.20.50 {
  starts 4 2026/12/03 08:00:00;
  ends 4 2026/12/03 20:00:00;
  tstp 4 2026/12/03 20:00:00;
  cltt 4 2026/12/03 08:00:00;
  binding state active;
  next binding state expired;
  hardware ethernet b8:27:eb:12:34:56;
  uid "\\001\\270'\\353\\0224V";
  set vendor-class-identifier = "udhcp 1.30.1";
  client-hostname "cam-lobby";
}
lease 192.168.20.50 {
  starts 4 2026/12/03 14:00:00;
  ends 5 2026/12/04 02:00:00;
  tstp 5 2026/12/04 02:00:00;
  cltt 4 2026/12/03 14:00:05;
  binding state active;
  next binding state expired;
  hardware ethernet b8:27:eb:12:34:56;
  client-hostname "cam-lobby";
}
lease 192.168.20.50 {
  starts 4 2026/12/03 14:00:00;
  ends 4 2026/12/03 16:30:00;
  tstp 4 2026/12/03 16:30:00;
  cltt 4 2026/12/03 16:30:00;
  binding state free;
  hardware ethernet b8:27:eb:12:34:56;
}
lease 192.168.20.50 {
  starts 4 2026/12/03 17:00:00;
  ends 5 2026/12/04 05:00:00;
  cltt 4 2026/12/03 17:00:00;
  binding state active;
  next binding state expired;
  hardware ethernet 00:1b:1b:0a:03:4f;
  client-hostname "Living Room TV";
}
lease 192.168.20.99 {
  starts 4 2026/12/03 06:00:00;
  ends 4 2026/12/03 06:00:00;
  tstp 4 2026/12/03 07:00:00;
  binding state backup;
  hardware ethernet 00:11:22:33:44:55;
}
host printer-1 {
  dynamic;
  hardware ethernet 00:80:77:aa:bb:cc;
  fixed-address 192.168.20.9;
}
lease 192.168.20.61 {
  starts epoch 1796289600; # Thu Dec 03 09:20:00 2026
  ends never;
  cltt epoch 1796289660; # Thu Dec 03 09:21:00 2026
  binding state active;
  next binding state free;
  hardware ethernet 00:1b:1b:0a:03:50;
}
"""


def dhcpd(data: bytes, context: SourceContext = CONTEXT) -> list[Sighting | Refusal]:
    return list(DhcpdLeases().read(io.BytesIO(data), context))


def test_every_block_of_a_bound_lease_is_a_sighting_at_its_own_time() -> None:
    granted, renewed, other, local = dhcpd(DHCPD)
    assert granted == Sighting(
        source="dhcpd", seen_at=1796284800.0, site="plant-a",
        network="vlan-20", ip="192.168.20.50", mac="b8:27:eb:12:34:56", hostname="cam-lobby")
    assert isinstance(renewed, Sighting) and renewed.seen_at == granted.seen_at + 6 * 3600 + 5
    # the address moved to another device: a sighting of that one, when it was seen
    assert isinstance(other, Sighting)
    assert (other.ip, other.mac, other.hostname) == ("192.168.20.50", "00:1b:1b:0a:03:4f", None)
    assert other.detail == "client name 'Living Room TV' is not a host name"
    # db-time-format local: epoch seconds; "ends never" is fine
    assert isinstance(local, Sighting)
    assert (local.seen_at, local.mac) == (1796289660.0, "00:1b:1b:0a:03:50")


def test_a_lease_without_cltt_is_seen_when_it_starts() -> None:
    (sighting,) = dhcpd(b"lease 10.0.0.5 {\n starts 1 2026/11/30 10:00:00;\n"
                        b" binding state active;\n hardware ethernet 00:11:22:33:44:55;\n}\n")
    assert isinstance(sighting, Sighting)
    assert sighting.seen_at == 1796032800.0


def test_dhcpv6_ia_na_blocks_are_passed_over() -> None:
    v6 = (b'server-duid "\\000\\001\\000\\001";\n\nia-na "\\001\\000\\000\\000\\000\\001" {\n'
          b"  cltt 4 2026/12/03 08:00:00;\n  iaaddr 2001:db8::50 {\n"
          b"    binding state active;\n    preferred-life 375;\n    max-life 600;\n"
          b"    ends 4 2026/12/03 08:10:00;\n  }\n}\n")
    assert dhcpd(v6) == []


@pytest.mark.parametrize(("lease", "reason"), [
    (b"lease 10.0.0.300 {\n binding state active;\n}\n", "not an IP address"),
    (b"lease 10.0.0.5 {\n binding state active;\n hardware ethernet 00:11:22:33:44;\n}\n",
     "not a MAC address"),
    (b"lease 10.0.0.5 {\n starts 4 2026/13/03 08:00:00;\n binding state active;\n}\n",
     "not a dhcpd date"),
    (b'lease 10.0.0.5 {\n client-hostname "cam;\n binding state active;\n}\n',
     "not terminated"),
], ids=["fail/address", "fail/mac", "fail/date", "fail/unterminated-string"])
def test_a_bad_lease_is_refused_at_its_first_line(lease: bytes, reason: str) -> None:
    good = b"lease 10.0.0.9 {\n binding state active;\n cltt 4 2026/12/03 08:00:00;\n}\n"
    first, refusal, last = dhcpd(good + lease + good)
    assert isinstance(first, Sighting) and isinstance(last, Sighting)
    assert isinstance(refusal, Refusal) and refusal.position == 5
    assert reason in refusal.reason


def test_a_truncated_file_refuses_the_lease_it_ends_in() -> None:
    cut = DHCPD.index(b"  binding state active;\n  next binding state free;")
    *sightings, refusal = dhcpd(DHCPD[:cut])
    assert len(sightings) == 3
    lease_line = DHCPD[:DHCPD.index(b"lease 192.168.20.61")].count(b"\n") + 1
    assert refusal == Refusal(lease_line,
                              "the file ends inside this lease (truncated?)")


def test_a_lease_that_never_closes_is_not_held_whole() -> None:
    data = b"lease 10.0.0.5 {\n" + b" binding state active;\n" * 20_000
    refusal, peak = peak_memory(lambda: dhcpd(data))
    assert refusal == [Refusal(1, "the file ends inside this lease (truncated?)")]
    assert peak < 1_000_000
    data += b"}\n"
    assert dhcpd(data) == [Refusal(1, "lease 10.0.0.5: the lease has more than 256 "
                                      "statements")]


def test_a_10_mb_line_refuses_its_lease_and_nothing_else() -> None:
    data = (b"lease 10.0.0.5 {\n binding state active;\n client-hostname \"" + b"x" * 10_000_000
            + b'";\n}\n' + DHCPD)
    results, peak = peak_memory(lambda: dhcpd(data))
    assert results[0] == Refusal(3, f"the line is longer than {MAX_LINE} bytes; skipped")
    assert results[1] == Refusal(1, "lease 10.0.0.5: line 3 of it was refused")
    assert len(results) == 6
    assert peak < 1_000_000


@pytest.mark.parametrize(("data", "reason"), [
    (b"ip,mac\n10.0.0.1,00:11:22:33:44:55\n", "not a dhcpd leases file"),
    (b"1796634000 b8:27:eb:12:34:56 192.168.10.50 cam-lobby *\n", "not a dhcpd leases file"),
    (bytes(range(256)) * 64, "not a text file"),
], ids=["fail/csv", "fail/dnsmasq", "fail/binary"])
def test_foreign_input_is_refused_whole(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        DhcpdLeases().read(io.BytesIO(data), CONTEXT).__next__()


def synthetic_leases(count: int) -> Iterator[bytes]:
    for i in range(count):
        yield (b"lease 10.%d.%d.%d {\n  starts 4 2026/12/03 08:00:00;\n"
               b"  ends 4 2026/12/03 20:00:00;\n  cltt 4 2026/12/03 08:%02d:%02d;\n"
               b"  binding state %s;\n  next binding state free;\n"
               b"  hardware ethernet 02:00:00:%02x:%02x:%02x;\n"
               b'  uid "\\001\\002\\000\\000\\000\\000\\001";\n  client-hostname "dev-%d";\n}\n'
               % (i >> 16 & 255, i >> 8 & 255, i & 255, i // 60 % 60, i % 60,
                  b"free" if i % 10 == 0 else b"active", i >> 16 & 255, i >> 8 & 255, i & 255,
                  i))


def test_a_big_leases_file_is_read_in_bounded_memory() -> None:
    # tracemalloc slows every allocation ~10x: the peak for 5k leases is that of 1k, so
    # a million leases take no more
    peak, size = memory_is_flat(
        lambda stream: sum(1 for item in DhcpdLeases().read(stream, CONTEXT)
                           if isinstance(item, Sighting)) * 10 // 9,
        synthetic_leases, 1_000, 5_000)
    assert size > 1_300_000
    assert peak < 400_000


# dnsmasq writes IPv4 leases, then (serving DHCPv6) its server DUID and the IPv6 leases
# (src/lease.c lease_update_file): expiry, MAC or IAID, address, hostname or "*",
# client id or DUID or "*"
DNSMASQ = b"""\
1796634000 b8:27:eb:12:34:56 192.168.10.50 cam-lobby 01:b8:27:eb:12:34:56
1796634100 00:11:22:33:44:55 192.168.10.51 * *
0 02:00:00:aa:bb:cc 192.168.10.52 plc-1 *
1796634150 20-80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:01:2f:91 192.168.10.60 ib-node *
duid 00:01:00:01:2c:d2:a6:02:00:0c:29:11:22:b3
1796634200 1234567 2001:db8:10::50 cam-lobby 00:01:00:01:2c:d2:a6:02:b8:27:eb:12:34:56
1796634200 T99 2001:db8:10::51 * 00:03:00:01:02:00:00:aa:bb:cd
1796634300 887766 2001:db8:10::52 * 00:02:00:00:ab:11:aa:bb
"""


def dnsmasq(data: bytes, context: SourceContext = CONTEXT) -> list[Sighting | Refusal]:
    return list(DnsmasqLeases().read(io.BytesIO(data), context))


def test_dnsmasq_leases_v4_and_v6() -> None:
    cam, anonymous, infinite, infiniband, cam6, temporary, enterprise = dnsmasq(DNSMASQ)
    assert cam == Sighting(source="dnsmasq", seen_at=1796634000.0 - 3600, site="plant-a",
                           network="vlan-20", ip="192.168.10.50", mac="b8:27:eb:12:34:56",
                           hostname="cam-lobby")
    assert isinstance(anonymous, Sighting) and anonymous.hostname is None
    assert isinstance(infinite, Sighting) and infinite.seen_at == FILE_TIME  # expiry 0
    assert isinstance(infiniband, Sighting) and (infiniband.mac, infiniband.hostname) == (
        None, "ib-node")
    # the MAC of a DUID-LLT and a DUID-LL; an enterprise DUID (type 2) carries none
    assert isinstance(cam6, Sighting) and (cam6.ip, cam6.mac) == (
        "2001:db8:10::50", "b8:27:eb:12:34:56")
    assert isinstance(temporary, Sighting) and temporary.mac == "02:00:00:aa:bb:cd"
    assert isinstance(enterprise, Sighting) and enterprise.mac is None


def test_the_lease_time_option_dates_the_last_renewal() -> None:
    (cam, *_) = dnsmasq(DNSMASQ, SourceContext(options={"lease-time": "43200"},
                                               default_time=FILE_TIME))
    assert isinstance(cam, Sighting) and cam.seen_at == 1796634000.0 - 43200


def test_a_renewal_is_never_dated_after_the_file() -> None:
    # a 12 h lease read with the default hour: expiry minus an hour is after the file
    # was written, and a file cannot report a renewal that had not happened yet
    written = 1796634000.0 - 11 * 3600
    (cam, *_) = dnsmasq(DNSMASQ, SourceContext(default_time=written))
    assert isinstance(cam, Sighting) and cam.seen_at == written


@pytest.mark.parametrize(("line", "reason"), [
    (b"1796634000 b8:27:eb:12:34 192.168.10.50 cam *\n", "not a MAC address"),
    (b"1796634000 b8:27:eb:12:34:56 192.168.10.500 cam *\n", "not an IP address"),
    (b"3599 b8:27:eb:12:34:56 192.168.10.50 cam *\n", "HAVE_BROKEN_RTC"),
    (b"1796634000 b8:27:eb:12:34:56 192.168.10.50\n", "has 3 fields"),
], ids=["fail/mac", "fail/ip", "fail/lease-length", "fail/fields"])
def test_a_bad_dnsmasq_line_is_refused_alone(line: bytes, reason: str) -> None:
    cut = DNSMASQ.index(b"\n") + 1
    first, refusal, *rest = dnsmasq(DNSMASQ[:cut] + line + DNSMASQ[cut:])
    assert isinstance(first, Sighting) and len(rest) == 6
    assert isinstance(refusal, Refusal) and refusal.position == 2
    assert reason in refusal.reason


@pytest.mark.parametrize(("options", "data", "reason"), [
    ({"lease-time": "1h"}, DNSMASQ, "lease-time"),
    ({}, b"lease 10.0.0.5 {\n binding state active;\n}\n", "not a dnsmasq leases file"),
    ({}, bytes(range(256)) * 64, "not a text file"),
], ids=["fail/lease-time", "fail/dhcpd", "fail/binary"])
def test_dnsmasq_refuses_whole(options: dict[str, str], data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        dnsmasq(data, SourceContext(options=options))
