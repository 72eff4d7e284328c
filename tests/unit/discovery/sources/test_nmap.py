"""The nmap source reads ``nmap -oX`` as nmap writes it, and refuses what only looks like it."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from iotiam.discovery.models import Refusal, Sighting, SourceContext
from iotiam.discovery.sources.nmap import MAX_PENDING, NmapXml
from iotiam.errors import InvalidInput

from .generated import memory_is_flat, peak_memory, streamed

# the head nmap 7.93 writes (run here: nmap -sT -Pn -oX - ...), and a privileged LAN scan
# with service and OS detection (-sS -sV -O -v), whose hosts carry MACs, vendors, PTR
# names, per-host times, and down hosts (listed with -v); nmap >= 7.80 writes a
# <hosthint> for each host before its <host>
HEAD = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<?xml-stylesheet href="file:///usr/bin/../share/nmap/nmap.xsl" type="text/xsl"?>
<!-- Nmap 7.93 scan initiated Sun Dec  6 10:00:00 2026 as: nmap -sS -sV -O -v -oX lan.xml 192.168.10.0/24 -->
<nmaprun scanner="nmap" args="nmap -sS -sV -O -v -oX lan.xml 192.168.10.0/24" start="1796551200" startstr="Sun Dec  6 10:00:00 2026" version="7.93" xmloutputversion="1.05">
<scaninfo type="syn" protocol="tcp" numservices="1000" services="1,3-4,6-7,9"/>
<verbose level="1"/>
<debugging level="0"/>
"""  # noqa: E501 (nmap writes long lines)
CAMERA = b"""<hosthint><status state="up" reason="arp-response" reason_ttl="0"/>
<address addr="192.168.10.50" addrtype="ipv4"/>
<address addr="B8:27:EB:12:34:56" addrtype="mac" vendor="Raspberry Pi Foundation"/>
<hostnames>
</hostnames>
</hosthint>
<host starttime="1796551230" endtime="1796551290"><status state="up" reason="arp-response" reason_ttl="0"/>
<address addr="192.168.10.50" addrtype="ipv4"/>
<address addr="B8:27:EB:12:34:56" addrtype="mac" vendor="Raspberry Pi Foundation"/>
<hostnames>
<hostname name="Cam-Lobby.example.net" type="user"/>
<hostname name="cam-lobby.lan" type="PTR"/>
</hostnames>
<ports><extraports state="closed" count="996">
<extrareasons reason="reset" count="996" proto="tcp" ports="1,3-4,6-7"/>
</extraports>
<port protocol="tcp" portid="22"><state state="open" reason="syn-ack" reason_ttl="64"/><service name="ssh" product="OpenSSH" version="8.4p1 Raspbian 5+deb11u1" extrainfo="protocol 2.0" ostype="Linux" method="probed" conf="10"><cpe>cpe:/a:openbsd:openssh:8.4p1</cpe></service></port>
<port protocol="tcp" portid="554"><state state="open" reason="syn-ack" reason_ttl="64"/><service name="rtsp" method="table" conf="3"/></port>
<port protocol="tcp" portid="1883"><state state="filtered" reason="no-response" reason_ttl="0"/><service name="mqtt" method="table" conf="3"/></port>
<port protocol="tcp" portid="8883"><state state="closed" reason="reset" reason_ttl="64"/></port>
</ports>
<os><portused state="open" proto="tcp" portid="22"/>
<osmatch name="Linux 4.15 - 5.6" accuracy="100" line="64000">
<osclass type="general purpose" vendor="Linux" osfamily="Linux" osgen="4.X" accuracy="100"><cpe>cpe:/o:linux:linux_kernel:4</cpe></osclass>
</osmatch>
<osmatch name="Linux 2.6.32" accuracy="95" line="50000">
<osclass type="general purpose" vendor="Other" osfamily="Linux" osgen="2.6.X" accuracy="95"/>
</osmatch>
</os>
<uptime seconds="86400" lastboot="Sat Dec  5 10:00:00 2026"/>
<distance value="1"/>
<times srtt="312" rttvar="107" to="100000"/>
</host>
"""  # noqa: E501 (nmap writes long lines)
DOWN = b"""<host><status state="down" reason="no-response" reason_ttl="0"/>
<address addr="192.168.10.51" addrtype="ipv4"/>
</host>
"""
PLC = b"""<host starttime="1796551300" endtime="1796551360"><status state="up" reason="arp-response" reason_ttl="0"/>
<address addr="192.168.10.60" addrtype="ipv4"/>
<address addr="00:1B:1B:0A:03:4F" addrtype="mac" vendor="Siemens AG"/>
<hostnames>
</hostnames>
<ports><extraports state="filtered" count="998">
<extrareasons reason="no-response" count="998" proto="tcp" ports="1-101"/>
</extraports>
<port protocol="tcp" portid="102"><state state="open" reason="syn-ack" reason_ttl="30"/><service name="iso-tsap" product="Siemens S7 PLC" devicetype="specialized" method="probed" conf="10"/></port>
<port protocol="udp" portid="161"><state state="open|filtered" reason="no-response" reason_ttl="0"/><service name="snmp" method="table" conf="3"/></port>
</ports>
<os><osmatch name="Siemens SIMATIC S7-1500 PLC" accuracy="98" line="80000">
<osclass type="specialized" vendor="Siemens" osfamily="embedded" accuracy="98"/>
</osmatch>
</os>
</host>
"""  # noqa: E501 (nmap writes long lines)
TAIL = b"""<runstats><finished time="1796551400" timestr="Sun Dec  6 10:03:20 2026" summary="Nmap done at Sun Dec  6 10:03:20 2026; 256 IP addresses (2 hosts up) scanned in 200.00 seconds" elapsed="200.00" exit="success"/><hosts up="2" down="254" total="256"/>
</runstats>
</nmaprun>
"""  # noqa: E501 (nmap writes long lines)
CONTEXT = SourceContext(site="hq", network="192.168.10.0/24", default_time=1.0)


def read(data: bytes, context: SourceContext = CONTEXT) -> list[Sighting | Refusal]:
    return list(NmapXml().read(io.BytesIO(data), context))


def test_lan_scan_one_sighting_per_host_up() -> None:
    camera, plc = read(HEAD + CAMERA + DOWN + PLC + TAIL)
    assert camera == Sighting(
        source="nmap", seen_at=1796551230.0, site="hq", network="192.168.10.0/24",
        ip="192.168.10.50", mac="b8:27:eb:12:34:56", hostname="cam-lobby.example.net",
        vendor="Raspberry Pi Foundation", model="Linux 4.15 - 5.6", open_ports=(22, 554),
        detail="22 ssh OpenSSH 8.4p1 Raspbian 5+deb11u1; 554 rtsp")
    assert isinstance(plc, Sighting)
    # open|filtered (UDP without an answer) is not open
    assert (plc.ip, plc.mac, plc.open_ports) == ("192.168.10.60", "00:1b:1b:0a:03:4f", (102,))
    assert (plc.vendor, plc.model) == ("Siemens AG", "Siemens SIMATIC S7-1500 PLC")


def test_ping_scan_hosts_are_seen_at_the_scan_start() -> None:
    ping = (b'<host><status state="up" reason="echo-reply" reason_ttl="63"/>\n'
            b'<address addr="2001:db8:10::5" addrtype="ipv6"/>\n'
            b'<hostnames>\n<hostname name="sensor-5.example.net." type="PTR"/>\n'
            b'</hostnames>\n</host>\n')
    (sighting,) = read(HEAD + ping + TAIL)
    assert isinstance(sighting, Sighting)
    assert (sighting.seen_at, sighting.ip, sighting.hostname, sighting.open_ports) == (
        1796551200.0, "2001:db8:10::5", "sensor-5.example.net", ())


def test_no_time_anywhere_takes_the_context_time() -> None:
    data = (b'<nmaprun><host><status state="up"/><address addr="10.0.0.1" addrtype="ipv4"/>'
            b"</host></nmaprun>")
    (sighting,) = read(data, SourceContext(default_time=42.0))
    assert isinstance(sighting, Sighting)
    assert sighting.seen_at == 42.0


def test_a_ptr_name_that_is_no_host_name_is_passed_over() -> None:
    host = (b'<host><status state="up"/><address addr="10.0.0.2" addrtype="ipv4"/><hostnames>'
            b'<hostname name="not a name" type="PTR"/><hostname name="ok.lan" type="PTR"/>'
            b"</hostnames></host>")
    (sighting,) = read(HEAD + host + TAIL)
    assert isinstance(sighting, Sighting)
    assert sighting.hostname == "ok.lan"


@pytest.mark.parametrize("address", [b"", b'<address addr="" addrtype="ipv4"/>'],
                         ids=["fail/none", "fail/empty"])
def test_a_host_without_address_is_refused_at_its_line(address: bytes) -> None:
    host = b'\n<host><status state="up"/>' + address + b"<hostnames/></host>\n"
    (refusal,) = read(HEAD + host + TAIL)
    assert refusal == Refusal(HEAD.count(b"\n") + 2, "the host has no IP or MAC address")


def test_a_scan_cut_short_yields_what_was_complete_and_refuses_the_rest() -> None:
    data = HEAD + CAMERA + PLC + TAIL
    cut = data.index(b"Siemens SIMATIC")
    camera, refusal = read(data[:cut])
    assert isinstance(camera, Sighting) and camera.ip == "192.168.10.50"
    assert isinstance(refusal, Refusal)
    assert refusal.position == data[:cut].count(b"\n") + 1
    assert "the rest of the file is skipped" in refusal.reason
    # cut between two hosts, as nmap leaves it when killed
    camera, refusal = read(HEAD + CAMERA)
    assert isinstance(refusal, Refusal) and "no element found" in refusal.reason


HOSTILE = [
    (b'<?xml version="1.0"?>\n<!DOCTYPE nmaprun [\n<!ENTITY a "aaaaaaaaaa">\n'
     + b"".join(b'<!ENTITY %c "%s">\n' % (ord("b") + i, b"".join([b"&%c;" % (ord("a") + i)] * 10))
                for i in range(9))
     + b"]>\n<nmaprun><host><hostnames><hostname name=\"&j;\"/></hostnames></host></nmaprun>",
     "document type declaration"),
    (b'<?xml version="1.0"?>\n<!DOCTYPE nmaprun [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
     b'\n<nmaprun><host><hostnames><hostname name="&xxe;"/></hostnames></host></nmaprun>',
     "document type declaration"),
    (b'<?xml version="1.0"?>\n<!DOCTYPE nmaprun [<!ENTITY % dtd SYSTEM "http://198.51.100.1/x">'
     b"%dtd;]>\n<nmaprun/>", "document type declaration"),
    (b'<?xml version="1.0"?>\n<!DOCTYPE nmaprun SYSTEM "http://198.51.100.1/nmap.dtd">\n'
     b"<nmaprun/>", "document type declaration"),
    (b'<?xml version="1.0"?>\n<!DOCTYPE html>\n<html/>', "document type declaration"),
    (b'<?xml version="1.0"?>\n<scan><host/></scan>', "root element is <scan>"),
    (b"ip,mac\n10.0.0.1,aa:bb:cc:dd:ee:ff\n", "not well-formed"),
    (bytes(range(256)) * 64, "not well-formed"),
    (b"", "empty"),
]


@pytest.mark.parametrize(("data", "reason"), HOSTILE, ids=[
    "fail/billion-laughs", "fail/xxe", "fail/external-parameter-entity",
    "fail/external-dtd", "fail/other-doctype", "fail/other-root", "fail/csv",
    "fail/binary", "fail/empty"])
def test_hostile_or_foreign_input_is_refused_whole(data: bytes, reason: str) -> None:
    def attempt() -> str:
        with pytest.raises(InvalidInput, match=reason) as caught:
            read(data)
        return str(caught.value)
    message, peak = peak_memory(attempt)
    assert len(message) < 300
    assert peak < 1_000_000  # nothing was expanded: 10**10 "a"s would be 10 GB


def test_an_entity_reference_without_declaration_stops_the_file() -> None:
    host = b'<host><status state="up"/><address addr="&ip;" addrtype="ipv4"/></host>'
    (refusal,) = read(HEAD + host + TAIL)
    assert isinstance(refusal, Refusal) and "undefined entity" in refusal.reason


def test_a_100_mb_tag_is_refused_in_bounded_memory() -> None:
    # expat holds a whole tag to parse it (and doubles its buffer as it grows): this one
    # would take over 200 MB if the source let it
    stream, _ = streamed(iter([HEAD, CAMERA, b'<host comment="',
                                *[b"x" * 1024 * 1024] * 100, b'"/>', TAIL]), batch=1)
    results, peak = peak_memory(lambda: list(NmapXml().read(stream, CONTEXT)))
    camera, refusal = results
    assert isinstance(camera, Sighting)
    assert isinstance(refusal, Refusal)
    assert refusal.reason.startswith(f"more than {MAX_PENDING} bytes without an XML element")
    assert refusal.position == (HEAD + CAMERA).count(b"\n") + 1
    assert peak < 5 * MAX_PENDING


def synthetic_hosts(count: int) -> Iterator[bytes]:
    yield HEAD
    for i in range(count):
        yield (b'<host starttime="%d" endtime="%d"><status state="up" reason="syn-ack" '
               b'reason_ttl="63"/>\n<address addr="10.%d.%d.%d" addrtype="ipv4"/>\n'
               b'<hostnames>\n<hostname name="dev-%d.example.net" type="PTR"/>\n'
               b'</hostnames>\n<ports><port protocol="tcp" portid="1883"><state '
               b'state="open" reason="syn-ack" reason_ttl="63"/><service name="mqtt" '
               b'method="table" conf="3"/></port>\n</ports>\n<times srtt="900" '
               b'rttvar="400" to="100000"/>\n</host>\n'
               % (1796551200 + i, 1796551201 + i, i >> 16 & 255, i >> 8 & 255, i & 255, i))
    yield TAIL


def test_a_big_scan_is_read_in_bounded_memory() -> None:
    # tracemalloc slows every allocation ~10x: the peak for 10k hosts (4.4 MB) is that
    # of 2k, so a million hosts takes no more
    peak, size = memory_is_flat(
        lambda stream: sum(1 for item in NmapXml().read(stream, CONTEXT)
                           if isinstance(item, Sighting)),
        synthetic_hosts, 2_000, 10_000)
    assert size > 4_000_000
    assert peak < 1_000_000
