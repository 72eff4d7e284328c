"""The cmdb source reads spreadsheet CSV exports through a column mapping, row by row."""

from __future__ import annotations

import io

import pytest

from iotiam.discovery.models import Refusal, Sighting, SourceContext
from iotiam.discovery.sources.cmdb import CmdbCsv
from iotiam.discovery.sources.lines import MAX_LINE
from iotiam.errors import InvalidInput

FINGERPRINT = "3f" * 32

# Excel (German locale) "CSV (Trennzeichen-getrennt)" saved as UTF-8: a BOM, Excel's
# "sep=;" hint, CRLF, ";" between fields, a quoted note with a line break and a ";"
EXCEL = ("\ufeffsep=;\r\n"
         "Asset Tag;IP Address;MAC Address;Hostname;Manufacturer;Model;Serial Number;"
         "Site;Last Seen;Notes\r\n"
         "A-1001;10.20.0.5;00-1B-1B-0A-03-4F;PLC-01.plant-a.example;Siemens;S7-1500;"
         "SN-4711;Plant A;2026-11-30 10:00:00;\"Hall 3; cabinet 2\r\nreplaced 2025\"\r\n"
         "A-1002;10.20.0.6;b827.eb12.3456;cam-lobby;Axis;M3106;SN-4712;;"
         "2026-11-30T10:00:00+01:00;\r\n"
         ";;;;;;;;;\r\n"
         "A-1003;;not-a-mac;;;;;;;\r\n"
         "A-1004;;;;Siemens;;;;;spare in stock\r\n").encode()
CONTEXT = SourceContext(site="hq", network="ot", default_time=1796551200.0)


def read(data: bytes | str, options: dict[str, str] | None = None,
         context: SourceContext = CONTEXT) -> list[Sighting | Refusal]:
    if isinstance(data, str):
        data = data.encode()
    if options is not None:
        context = SourceContext(site=context.site, network=context.network,
                                default_time=context.default_time, options=options)
    return list(CmdbCsv().read(io.BytesIO(data), context))


def test_excel_export_with_the_usual_headers() -> None:
    plc, cam, bad_mac, no_identifier = read(EXCEL)
    assert plc == Sighting(
        source="cmdb", seen_at=1796032800.0, site="Plant A", network="ot", ip="10.20.0.5",
        mac="00:1b:1b:0a:03:4f", hostname="plc-01.plant-a.example", vendor="Siemens",
        model="S7-1500")
    # an empty Site cell leaves the context's; a zone in the time is honoured
    assert isinstance(cam, Sighting)
    assert (cam.site, cam.mac, cam.seen_at) == ("hq", "b8:27:eb:12:34:56", 1796032800.0 - 3600)
    # a CMDB's Serial Number is the hardware's: not read as a certificate serial
    assert cam.serial is None
    # the quoted note spans lines 3-4: the rows after it are where they start
    assert bad_mac == Refusal(7, "mac: 'not-a-mac' is not a MAC address")
    assert no_identifier == Refusal(8, "the row has no IP, MAC, host name or other identifier")


def test_an_explicit_mapping_for_a_servicenow_export() -> None:
    export = ('"sys_id","name","ip_address","u_mac","u_mqtt_client","u_cert_sha256",'
              '"u_issuer","u_cert_serial","u_psk","sys_updated_on","location"\n'
              '"8f1c","gw-7","10.30.0.7","00:1b:1b:0a:03:07","gw-7.plant-b","'
              + FINGERPRINT.upper() + '","CN=Vendor Device CA,O=Vendor","0x00A1B2",'
              '"psk-gw-7","30.11.2026 10:00","Plant B"\n')
    mapping = {"map.hostname": "NAME", "map.ip": "ip_address", "map.mac": "u_mac",
               "map.client_id": "u_mqtt_client", "map.certificate": "u_cert_sha256",
               "map.issuer": "u_issuer", "map.serial": "u_cert_serial",
               "map.psk_identity": "u_psk", "map.seen_at": "sys_updated_on",
               "map.site": "location", "time-format": "%d.%m.%Y %H:%M"}
    (gateway,) = read(export, mapping)
    assert gateway == Sighting(
        source="cmdb", seen_at=1796032800.0, site="Plant B", network="ot", ip="10.30.0.7",
        mac="00:1b:1b:0a:03:07", hostname="gw-7", client_id="gw-7.plant-b",
        certificate=FINGERPRINT, issuer="CN=Vendor Device CA,O=Vendor", serial="a1b2",
        psk_identity="psk-gw-7")


@pytest.mark.parametrize(("text", "options"), [
    ("IP\tMAC\tHost Name\n10.0.0.1\t00:11:22:33:44:55\tdev-1\n", {}),
    ("ip|mac|hostname\n10.0.0.1|00:11:22:33:44:55|dev-1\n", {"delimiter": "|"}),
    ("ip,mac,hostname\r\n10.0.0.1,00:11:22:33:44:55,dev-1\r\n", {}),
    ("IP;MAC;HOSTNAME\n10.0.0.1;00:11:22:33:44:55;dev-1;;\n", {}),
], ids=["ok/tab", "ok/pipe-option", "ok/comma-crlf", "ok/trailing-empty-fields"])
def test_dialects(text: str, options: dict[str, str]) -> None:
    (sighting,) = read(text, options)
    assert isinstance(sighting, Sighting)
    assert (sighting.ip, sighting.mac, sighting.hostname) == (
        "10.0.0.1", "00:11:22:33:44:55", "dev-1")


def test_an_empty_mapping_turns_a_default_off() -> None:
    (sighting,) = read("IP,Hostname\n10.0.0.1,Pump 3 controller\n", {"map.hostname": ""})
    assert isinstance(sighting, Sighting) and sighting.hostname is None


def test_cp1252_exports_with_the_encoding_option() -> None:
    data = "IP;Manufacturer\n10.0.0.1;Müller GmbH\n".encode("cp1252")
    (sighting,) = read(data, {"encoding": "cp1252"})
    assert isinstance(sighting, Sighting) and sighting.vendor == "Müller GmbH"
    # read as UTF-8, the line is refused and the others taken
    first, refused = read(b"IP;Manufacturer\n10.0.0.2;ok\n" + data.split(b"\n")[1])
    assert isinstance(first, Sighting)
    assert refused == Refusal(3, "the line is not utf-8 text")


def test_times_as_epoch_seconds_and_milliseconds() -> None:
    seconds, millis, missing = read("ip,last seen\n10.0.0.1,1796032800\n"
                                    "10.0.0.2,1796032800500\n10.0.0.3,\n")
    assert [getattr(s, "seen_at", None) for s in (seconds, millis, missing)] == [
        1796032800.0, 1796032800.5, 1796551200.0]


@pytest.mark.parametrize(("row", "reason"), [
    ("10.0.0.300,00:11:22:33:44:55,dev,", "ip: '10.0.0.300' is not an IP address"),
    ("10.0.0.1,00:11:22:33:44,dev,", "mac: "),
    ("10.0.0.1,00:11:22:33:44:55,not a host,", "hostname: "),
    ("10.0.0.1,00:11:22:33:44:55,dev,12/31/2026", "seen_at: '12/31/2026' is not a time"),
    ("10.0.0.1,00:11:22:33:44:55,dev,,extra", "the row has 5 fields, the header 4"),
    ("10.0.0.1,00:11:22:33:44:55,dev,1900-01-01", "seen_at: '1900-01-01' is before 1970"),
], ids=["fail/ip", "fail/mac", "fail/hostname", "fail/us-date", "fail/extra-field",
        "fail/before-epoch"])
def test_a_bad_row_is_refused_alone(row: str, reason: str) -> None:
    good = "10.0.0.9,00:11:22:33:44:99,ok,\n"
    first, refusal, last = read("IP Address,MAC,Hostname,Last Seen\n" + good + row + "\n"
                                + good)
    assert isinstance(first, Sighting) and isinstance(last, Sighting)
    assert isinstance(refusal, Refusal) and refusal.position == 3
    assert refusal.reason.startswith(reason)


def test_a_10_mb_line_is_refused_and_the_rest_read() -> None:
    data = b"ip,hostname\n10.0.0.1," + b"x" * 10_000_000 + b"\n10.0.0.2,dev-2\n"
    refusal, sighting = read(data)
    assert refusal == Refusal(2, f"the line is longer than {MAX_LINE} bytes; skipped")
    assert isinstance(sighting, Sighting) and sighting.ip == "10.0.0.2"


ROWS = "".join(f"10.0.{i // 250}.{i % 250 + 1},dev-{i}\n" for i in range(2_000))


def test_an_unclosed_quote_costs_its_row_only() -> None:
    refusal, *sightings = read('ip,hostname\n10.0.0.1,"oops\n' + ROWS)
    assert refusal == Refusal(2, "the row is malformed CSV: a quoted field is not closed "
                                 "within 100 lines")
    assert len(sightings) == 2_000 and all(isinstance(s, Sighting) for s in sightings)


def test_an_unclosed_quote_past_the_field_limit_costs_its_lines_only() -> None:
    lines = "o" * 60_000 + "\n" + "p" * 40_000 + "\n" + "q" * 40_000 + "\n"
    first, second, third, *sightings = read('ip,hostname\n10.0.0.1,"' + lines + ROWS)
    assert first == Refusal(2, "the row is malformed CSV: field larger than field limit "
                               "(131072)")
    assert [second.position, third.position] == [3, 4]  # read again: no IP in them
    assert len(sightings) == 2_000 and all(isinstance(s, Sighting) for s in sightings)


def test_a_quoted_field_may_span_lines() -> None:
    note = "\n".join(f"line {i}" for i in range(50))
    sighting, after = read(f'ip,notes\n10.0.0.1,"{note}"\n10.0.0.2,\n')
    assert isinstance(sighting, Sighting) and sighting.ip == "10.0.0.1"
    assert isinstance(after, Sighting) and after.ip == "10.0.0.2"


@pytest.mark.parametrize(("data", "options", "reason"), [
    (EXCEL, {"map.macaddress": "MAC Address"}, "maps to 'macaddress', which is no field"),
    (EXCEL, {"map.mac": "MAC"}, "the column 'MAC' (map.mac) is not in the header"),
    (EXCEL, {"mapping.mac": "MAC"}, "no option 'mapping.mac'"),
    (EXCEL, {"delimiter": "::"}, "delimiter"),
    (EXCEL, {"encoding": "utf-16"}, "not ASCII-compatible"),
    (EXCEL, {"encoding": "klingon"}, "unknown text encoding"),
    ("Asset Tag,Owner,Name\nA-1,ops,Pump 3\n", {}, "no column of the CSV identifies"),
    ('ip,"mac\n' + "10.0.0.1,x\n" * 200, {}, "header line is not a CSV record"),
    ("", {}, "empty"),
    ("\n\n", {}, "empty"),
    ("ip,mac\n".encode("utf-16"), {}, "UTF-16"),
    (bytes(range(256)) * 64, {}, "not a text file"),
], ids=["fail/unknown-field", "fail/missing-column", "fail/unknown-option",
        "fail/delimiter", "fail/utf-16-option", "fail/unknown-encoding",
        "fail/no-identifier-column", "fail/header-quote", "fail/empty", "fail/blank", "fail/utf-16",
        "fail/binary"])
def test_refused_whole(data: bytes | str, options: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read(data, options)
