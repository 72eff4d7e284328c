"""Write observed records as the files real tools produce.

Each writer follows its tool's documented output (read with the search tool, written
here in our own words): ``nmap -oX`` XML, ISC ``dhcpd.leases(5)``, the dnsmasq leases
file, a Zeek ``conn.log`` (TSV with ``#fields``/``#types`` headers), Suricata EVE JSON
(``flow``, ``tls`` with the ``client`` certificate object, ``mqtt`` connect), a CMDB
CSV export, and the generic ``jsonl`` sighting (``Sighting`` field names).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import quoteattr

from iotiam.testing.synthetic_evidence import Truth
from iotiam.testing.synthetic_network import AS_OF, CertInfo, Record, digest_hex

ZEEK_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
               "service", "duration", "orig_bytes", "resp_bytes", "conn_state",
               "local_orig", "local_resp", "missed_bytes", "history", "orig_pkts",
               "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents")
ZEEK_TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string",
              "interval", "count", "count", "string", "bool", "bool", "count", "string",
              "count", "count", "count", "count", "set[string]")
CMDB_COLUMNS = ("Asset Tag", "Hostname", "MAC Address", "Serial Number", "Site",
                "Manufacturer", "Model", "Owner")
#: the ``option`` query parameters the CMDB import needs (the CSV column mapping)
CMDB_OPTIONS = (("map.hostname", "Hostname"), ("map.mac", "MAC Address"),
                ("map.site", "Site"), ("map.vendor", "Manufacturer"),
                ("map.model", "Model"))
#: a dnsmasq leases line has only the expiry: the lease time (the source's ``lease-time``
#: option, dnsmasq's --dhcp-range lease) dates the grant
DNSMASQ_OPTIONS = (("lease-time", "86400"),)
EXTENSION = {"nmap": "xml", "dhcpd": "leases", "dnsmasq": "leases", "zeek": "log",
             "suricata": "json", "cmdb": "csv", "jsonl": "jsonl"}


@dataclass(frozen=True)
class EvidenceFile:
    """One file to import: ``POST /v1/discovery/imports?source=&site=&option=...``."""

    source: str
    path: Path
    site: str | None
    options: tuple[tuple[str, str], ...]
    records: int


def write_evidence(truth: Truth, directory: Path) -> list[EvidenceFile]:
    """Write every record of ``truth`` into its file under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[Record]] = defaultdict(list)
    for record in truth.records:
        by_file[record.file].append(record)
    written: list[EvidenceFile] = []
    for name in sorted(by_file):
        records = by_file[name]
        source = records[0].source
        path = directory / f"{name}.{EXTENSION[source]}"
        with path.open("w", encoding="utf-8", newline="") as out:
            WRITERS[source](out, records)
        site = None if source in ("cmdb", "jsonl") else records[0].site
        options = {"cmdb": CMDB_OPTIONS, "dnsmasq": DNSMASQ_OPTIONS}.get(source, ())
        written.append(EvidenceFile(source, path, site, options, len(records)))
    return written


def iso(seconds: float) -> str:
    """ISO 8601 in UTC with a ``Z`` (the ``jsonl`` format's ``seen_at``)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def write_nmap(out: IO[str], records: list[Record]) -> None:
    """``nmap -oX``: the DOCTYPE line nmap writes, one ``host`` per responding address."""
    start = int(min(r.seen_at for r in records))
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
              '<?xml-stylesheet href="file:///usr/bin/../share/nmap/nmap.xsl" '
              'type="text/xsl"?>\n')
    second = records[0].ip.split(".")[1] if records[0].ip else "0"
    args = f"nmap -sS -O -oX scan.xml 10.{second}.0.0/16"
    out.write(f'<nmaprun scanner="nmap" args={quoteattr(args)} start="{start}" '
              f'startstr="{_utc(start):%a %b %d %H:%M:%S %Y}" version="7.93" '
              'xmloutputversion="1.05">\n'
              '<scaninfo type="syn" protocol="tcp" numservices="1000" services="1-1000"/>\n'
              '<verbose level="0"/>\n<debugging level="0"/>\n')
    for r in records:
        t = int(r.seen_at)
        out.write(f'<host starttime="{t}" endtime="{t + 9}"><status state="up" '
                  'reason="arp-response" reason_ttl="0"/>\n'
                  f'<address addr="{r.ip}" addrtype="ipv4"/>\n')
        if r.mac:
            out.write(f'<address addr="{r.mac.upper()}" addrtype="mac" '
                      f'vendor={quoteattr(r.vendor or "")}/>\n')
        out.write("<hostnames>")
        if r.hostname:
            out.write(f'\n<hostname name={quoteattr(r.hostname)} type="PTR"/>\n')
        out.write("</hostnames>\n<ports>")
        out.write(f'<extraports state="closed" count="{1000 - len(r.open_ports)}">\n'
                  f'<extrareasons reason="reset" count="{1000 - len(r.open_ports)}" '
                  'proto="tcp" ports="1-1000"/>\n</extraports>\n')
        for port in r.open_ports:
            out.write(f'<port protocol="tcp" portid="{port}"><state state="open" '
                      'reason="syn-ack" reason_ttl="64"/><service name="unknown" '
                      'method="table" conf="3"/></port>\n')
        out.write('</ports>\n<times srtt="1520" rttvar="811" to="100000"/>\n</host>\n')
    end = int(max(r.seen_at for r in records)) + 60
    out.write(f'<runstats><finished time="{end}" timestr="{_utc(end):%a %b %d %H:%M:%S %Y}" '
              f'summary="Nmap done" elapsed="{end - start}" exit="success"/>'
              f'<hosts up="{len(records)}" down="0" total="{len(records)}"/>\n'
              '</runstats>\n</nmaprun>\n')


def _dhcpd_time(seconds: float) -> str:
    moment = _utc(seconds)
    # dhcpd.leases(5): weekday (0 = Sunday), then year/month/day hour:minute:second, UTC
    return f"{(moment.weekday() + 1) % 7} {moment:%Y/%m/%d %H:%M:%S}"


def write_dhcpd(out: IO[str], records: list[Record]) -> None:
    """ISC ``dhcpd.leases``: one ``lease`` declaration per grant, appended as granted."""
    out.write("# The format of this file is documented in the dhcpd.leases(5) manual page.\n"
              "# This lease file was written by isc-dhcp-4.4.3-P1\n\n"
              "# authoring-byte-order entry is generated, DO NOT DELETE\n"
              "authoring-byte-order little-endian;\n\n")
    for r in records:
        out.write(f"lease {r.ip} {{\n  starts {_dhcpd_time(r.seen_at)};\n"
                  f"  ends {_dhcpd_time(r.seen_at + 86400)};\n"
                  f"  cltt {_dhcpd_time(r.seen_at)};\n  binding state active;\n"
                  "  next binding state free;\n  rewind binding state free;\n"
                  f"  hardware ethernet {r.mac};\n")
        if r.mac:
            uid = "".join(f"\\{int(b, 16):03o}" for b in ["01", *r.mac.split(":")])
            out.write(f'  uid "{uid}";\n')
        if r.hostname:
            out.write(f'  client-hostname "{r.hostname}";\n')
        out.write("}\n")


def write_dnsmasq(out: IO[str], records: list[Record]) -> None:
    """dnsmasq leases: ``expiry mac ip hostname client-id``, ``*`` for none."""
    for r in records:
        client = "01:" + r.mac if r.mac and int(r.mac[-2:], 16) % 3 else "*"
        out.write(f"{int(r.seen_at + 86400)} {r.mac} {r.ip} {r.hostname or '*'} {client}\n")


def write_zeek(out: IO[str], records: list[Record]) -> None:
    """Zeek ``conn.log`` in its default TSV form, sorted by ``ts``."""
    first, last = min(r.seen_at for r in records), max(r.seen_at for r in records)
    out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
              f"#unset_field\t-\n#path\tconn\n#open\t{_utc(first):%Y-%m-%d-%H-%M-%S}\n"
              "#fields\t" + "\t".join(ZEEK_FIELDS) + "\n"
              "#types\t" + "\t".join(ZEEK_TYPES) + "\n")
    for r in sorted(records, key=lambda r: r.seen_at):
        uid = "C" + digest_hex(r.seen_at, r.ip)[:17]
        server = ".".join((r.ip or "10.0.0.0").split(".")[:2]) + ".0.10"
        port = 8883 if int(r.seen_at) % 2 else 1883
        row = (f"{r.seen_at:.6f}", uid, r.ip, str(40000 + int(r.seen_at) % 20000), server,
               str(port), "tcp", "ssl" if port == 8883 else "-", "0.412", "312", "1044",
               "SF", "T", "T", "0", "ShADadFf", "9", "684", "8", "1372", "-")
        out.write("\t".join(str(v) for v in row) + "\n")
    out.write(f"#close\t{_utc(last + 60):%Y-%m-%d-%H-%M-%S}\n")


def _suricata_time(seconds: float) -> str:
    return _utc(seconds).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def _suricata_dn(rfc4514: str) -> str:
    # Suricata prints RDNs in certificate order, ", "-separated; RFC 4514 reverses them
    return ", ".join(reversed(rfc4514.split(",")))


def _client_cert(cert: CertInfo) -> dict[str, Any]:
    sha1 = hashlib.sha1(cert.der, usedforsecurity=False).hexdigest()
    serial = cert.serial if len(cert.serial) % 2 == 0 else "0" + cert.serial
    return {"subject": _suricata_dn(cert.subject), "issuerdn": _suricata_dn(cert.issuer),
            "fingerprint": ":".join(sha1[i:i + 2] for i in range(0, 40, 2)),
            "serial": ":".join(serial[i:i + 2] for i in range(0, len(serial), 2)).upper(),
            "notbefore": _utc(cert.not_before).strftime("%Y-%m-%dT%H:%M:%S"),
            "notafter": _utc(cert.not_after).strftime("%Y-%m-%dT%H:%M:%S"),
            "certificate": base64.b64encode(cert.der).decode()}


def suricata_event(r: Record) -> dict[str, Any]:
    """One EVE record: the common header, then the event type's own object."""
    broker = ".".join((r.ip or "10.0.0.0").split(".")[:2]) + ".0.10"
    port = 8883 if r.event == "tls" else 1883
    flow_id = int(digest_hex(r.seen_at, r.ip, r.event), 16) >> 14
    event: dict[str, Any] = {
        "timestamp": _suricata_time(r.seen_at), "flow_id": flow_id, "in_iface": "eth1",
        "event_type": r.event, "src_ip": r.ip, "src_port": 40000 + flow_id % 20000,
        "dest_ip": broker, "dest_port": port, "proto": "TCP"}
    if r.event == "tls" and r.cert is not None:
        event["tls"] = {
            "subject": f"CN=broker.{r.site}.example.net", "issuerdn": "CN=Site Broker CA",
            "serial": "4F:1A:22:90", "fingerprint": "3b:9e:11:" + "00:" * 16 + "7c",
            "sni": f"broker.{r.site}.example.net", "version": "TLS 1.2",
            "notbefore": "2026-01-01T00:00:00", "notafter": "2027-01-01T00:00:00",
            "client": _client_cert(r.cert)}
    elif r.event == "mqtt":
        event["mqtt"] = {"connect": {
            "qos": 0, "retain": False, "dup": False, "protocol_string": "MQTT",
            "protocol_version": 4, "flags": {"username": bool(r.registered),
                                             "password": bool(r.registered), "will": False,
                                             "will_retain": False, "clean_session": True},
            "client_id": r.client_id, **({"username": r.client_id} if r.registered else {})}}
    else:
        event["app_proto"] = "tls" if port == 8883 else "mqtt"
        event["flow"] = {"pkts_toserver": 9, "pkts_toclient": 8, "bytes_toserver": 684,
                         "bytes_toclient": 1372, "start": _suricata_time(r.seen_at - 30),
                         "end": _suricata_time(r.seen_at), "age": 30, "state": "closed",
                         "reason": "timeout", "alerted": False}
    return event


def write_suricata(out: IO[str], records: list[Record]) -> None:
    """Suricata ``eve.json``: one JSON object per line."""
    for r in records:
        out.write(json.dumps(suricata_event(r), separators=(",", ":")) + "\n")


def write_cmdb(out: IO[str], records: list[Record]) -> None:
    """A CMDB export: hostname, MAC (in the notations such exports mix) and a serial."""
    writer = csv.writer(out)
    writer.writerow(CMDB_COLUMNS)
    for n, r in enumerate(records):
        mac = r.mac or ""
        if n % 5 == 1:
            mac = mac.upper().replace(":", "-")
        elif n % 5 == 3:
            mac = mac.replace(":", "")
            mac = f"{mac[0:4]}.{mac[4:8]}.{mac[8:12]}"
        writer.writerow((f"AT-{digest_hex(r.mac)[:8].upper()}",
                         (r.hostname or "").upper() if n % 7 == 2 else r.hostname or "",
                         mac, f"SN{int(digest_hex(r.mac, 's'), 16) % 10**10:010d}", r.site,
                         r.vendor or "", r.model or "", "facilities"))


def sighting_line(r: Record) -> dict[str, Any]:
    """The generic ``jsonl`` sighting: ``Sighting`` field names, ``seen_at`` ISO 8601."""
    line: dict[str, Any] = {"seen_at": iso(r.seen_at), "site": r.site, "ip": r.ip,
                            "mac": r.mac, "hostname": r.hostname, "client_id": r.client_id,
                            "psk_identity": r.psk_identity,
                            "detail": "tls-psk handshake on the site broker"}
    return {k: v for k, v in line.items() if v is not None}


def write_jsonl(out: IO[str], records: Iterable[Record]) -> None:
    """One JSON sighting per line."""
    for r in records:
        out.write(json.dumps(sighting_line(r), separators=(",", ":")) + "\n")


WRITERS = {"nmap": write_nmap, "dhcpd": write_dhcpd, "dnsmasq": write_dnsmasq,
           "zeek": write_zeek, "suricata": write_suricata, "cmdb": write_cmdb,
           "jsonl": write_jsonl}

__all__ = ["AS_OF", "CMDB_OPTIONS", "DNSMASQ_OPTIONS", "WRITERS", "EvidenceFile", "iso",
           "sighting_line",
           "suricata_event", "write_evidence"]
