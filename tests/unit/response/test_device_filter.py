"""The set revocation's filter grammar: strict, each field once, never empty."""

from __future__ import annotations

import pytest

from iotiam.errors import InvalidInput
from iotiam.response.device_filter import FilterField, parse_filter

OK = {
    "ok/one-term": ("type=sensor", {FilterField.TYPE: "sensor"}),
    "ok/batch": ("manufacturer=acme and batch=2026-07",
                 {FilterField.MANUFACTURER: "acme", FilterField.BATCH: "2026-07"}),
    "ok/spaces-around": ("  site = berlin   and   firmware=1.4.2 ",
                         {FilterField.SITE: "berlin", FilterField.FIRMWARE: "1.4.2"}),
    "ok/quoted": ('site="berlin hq" and type=tag', {FilterField.SITE: "berlin hq",
                                                    FilterField.TYPE: "tag"}),
    "ok/and-inside-quotes": ('site="north and south"', {FilterField.SITE: "north and south"}),
    "ok/fingerprint": ("issuer=AB:cd:01", {FilterField.ISSUER: "AB:cd:01"}),
    "ok/field-case": ("Type=sensor", {FilterField.TYPE: "sensor"}),
    "ok/all-fields": ("manufacturer=a and batch=b and type=c and site=d and firmware=e "
                      "and issuer=f", {f: v for f, v in zip(FilterField, "abcdef",
                                                              strict=True)}),
}

FAIL = {
    "fail/empty": ("", "empty filter"),
    "fail/blank": ("   ", "empty filter"),
    "fail/unknown-field": ("colour=red", "unknown field 'colour'"),
    "fail/or": ("type=a or type=b", "bad term"),
    "fail/no-value": ("type=", "bad term"),
    "fail/no-equals": ("sensor", "bad term"),
    "fail/dangling-and": ("type=a and ", "bad term"),
    "fail/leading-and": ("and type=a", "bad term"),
    "fail/double-and": ("type=a and and site=b", "bad term"),
    "fail/twice": ("type=a and type=b", "given twice"),
    "fail/wildcard": ("type=sens*", "bad term"),
    "fail/semicolon": ("type=a;drop", "bad term"),
    "fail/unterminated-quote": ('site="berlin', "unterminated quote"),
    "fail/negation": ("type!=a", "bad term"),
    "fail/too-long-value": ("type=" + "a" * 129, "bad term"),
    "fail/too-long": ("type=a and " * 200 + "site=b", "longer than"),
}


@pytest.mark.parametrize(("text", "terms"), OK.values(), ids=OK.keys())
def test_parse(text: str, terms: dict[FilterField, str]) -> None:
    parsed = parse_filter(text)
    assert dict(parsed.terms) == terms
    # the canonical text parses back to the same filter
    assert parse_filter(parsed.text()) == parse_filter(parsed.text())
    assert dict(parse_filter(parsed.text()).terms) == terms


@pytest.mark.parametrize(("text", "message"), FAIL.values(), ids=FAIL.keys())
def test_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_filter(text)


def test_canonical_order() -> None:
    assert parse_filter("batch=7 and manufacturer=acme").text() == \
        "manufacturer=acme and batch=7"
