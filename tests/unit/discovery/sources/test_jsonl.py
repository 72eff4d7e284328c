"""The jsonl source: one sighting per JSON line, normalised, or a refusal saying why."""

from __future__ import annotations

import codecs
import io
import json

import pytest

from iotiam.discovery.models import Refusal, Sighting, SourceContext
from iotiam.discovery.sources.jsonl import JsonLinesSource
from iotiam.discovery.sources.lines import MAX_LINE
from iotiam.errors import InvalidInput

from .generated import collect

CONTEXT = SourceContext(site="plant-1", default_time=1_796_551_200.0)


def read(data: bytes, context: SourceContext = CONTEXT) -> tuple[list[Sighting],
                                                                  list[Refusal]]:
    return collect(JsonLinesSource().read(io.BytesIO(data), context))


def jsonl(*records: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_jsonl_ok_identifiers_normalised_context_applied() -> None:
    (seen,), refusals = read(jsonl({
        "seen_at": "2026-12-06T10:00:00Z", "ip": "::ffff:10.0.0.9",
        "mac": "02-00-00-00-00-AA", "hostname": "Printer.Local.", "client_id": " dev-1 ",
        "certificate": "AB" * 32, "serial": "0x00FF", "issuer": "CN=ca",
        "open_ports": [443, 80, 443], "not_after": 1_800_000_000, "vendor": None}))
    assert refusals == []
    assert seen == Sighting(
        "jsonl", 1_796_551_200.0, site="plant-1", ip="10.0.0.9", mac="02:00:00:00:00:aa",
        hostname="printer.local", client_id="dev-1", certificate="ab" * 32, issuer="CN=ca",
        serial="ff", not_after=1_800_000_000.0, open_ports=(80, 443))


@pytest.mark.parametrize(("seen_at", "expected"), [
    ("2026-12-06T10:00:00Z", 1_796_551_200.0),
    ("2026-12-06T11:00:00+01:00", 1_796_551_200.0),
    ("2026-12-06T10:00:00", 1_796_551_200.0),
    (1_796_551_200, 1_796_551_200.0),
    ("1796551200.5", 1_796_551_200.5),
], ids=["ok/iso-z", "ok/iso-offset", "ok/iso-naive-utc", "ok/number", "ok/decimal-text"])
def test_jsonl_ok_times(seen_at: object, expected: float) -> None:
    (seen,), _ = read(jsonl({"seen_at": seen_at, "ip": "10.0.0.1"}))
    assert seen.seen_at == expected


def test_jsonl_ok_no_time_takes_the_import_time_and_site_may_be_overridden() -> None:
    (seen,), _ = read(jsonl({"mac": "02:00:00:00:00:01", "site": "lab"}))
    assert (seen.seen_at, seen.site) == (CONTEXT.default_time, "lab")


def test_jsonl_ok_bom_crlf_and_blank_lines() -> None:
    data = codecs.BOM_UTF8 + b'{"ip":"10.0.0.1"}\r\n\r\n   \n{"ip":"10.0.0.2"}'
    sightings, refusals = read(data)
    assert [s.ip for s in sightings] == ["10.0.0.1", "10.0.0.2"] and refusals == []


def test_jsonl_fail_refusals_carry_line_and_reason() -> None:
    data = b"\n".join([
        b'{"ip":"10.0.0.1"}', b"[1, 2]", b"{oops", b'{"colour":"red","ip":"10.0.0.1"}',
        b'{"mac":"not-a-mac"}', b'{"ip":10}', b'{"seen_at":"yesterday","ip":"10.0.0.1"}',
        b'{"seen_at":1e12,"ip":"10.0.0.1"}', b'{"seen_at":true,"ip":"10.0.0.1"}',
        b'{"site":"hq"}', b'{"ip":"10.0.0.1","ip":"10.0.0.2"}', b'{"open_ports":[70000]}',
        b'{"hostname":"' + b"a" * 300 + b'"}', b'{"ip":"10.0.0.1"} {"ip":"10.0.0.2"}',
        b'{"serial":-1,"issuer":"CN=x"}', b'{"ip":"010.0.0.1"}']) + b"\n"
    sightings, refusals = read(data)
    assert len(sightings) == 1
    reasons = {r.position: r.reason for r in refusals}
    assert sorted(reasons) == list(range(2, 17))
    for position, words in {2: "not a JSON object", 3: "not valid JSON", 4: "colour",
                            5: "MAC", 6: "must be a string", 7: "not a time",
                            8: "plausible", 9: "not a time", 10: "no identifier",
                            11: "twice", 12: "port", 13: "longer than", 14: "Extra data",
                            15: "negative", 16: "not an IP address"}.items():
        assert words in reasons[position], (position, reasons[position])


def test_jsonl_fail_overlong_line_refused_and_reading_goes_on() -> None:
    data = jsonl({"ip": "10.0.0.1"}) + b'{"ip":"' + b"1" * MAX_LINE + b'"}\n' + jsonl(
        {"ip": "10.0.0.2"})
    sightings, refusals = read(data)
    assert [s.ip for s in sightings] == ["10.0.0.1", "10.0.0.2"]
    assert [r.position for r in refusals] == [2] and "longer than" in refusals[0].reason


def test_jsonl_fail_utf16_refused_whole() -> None:
    with pytest.raises(InvalidInput, match="UTF-16"):
        read(codecs.BOM_UTF16_LE + '{"ip":"10.0.0.1"}\n'.encode("utf-16-le"))
