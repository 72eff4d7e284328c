"""The normalisation and digest of sightings: fast paths answer as the general path does."""

from __future__ import annotations

import enum
from dataclasses import fields, replace

import pytest

from iotiam.discovery.models import Sighting, normalize_ip, normalize_mac
from iotiam.errors import InvalidInput

IPS = ["10.0.0.1", "0.0.0.0", "255.255.255.255", "1.2.3.4", "100.99.9.0", "010.0.0.1",
       "1.2.3.04", "1.2.3.00", "256.1.1.1", "1.2.3.260", "1.2.3", "1.2.3.4.5", "1..2.3",
       "+1.2.3.4", "1.2.3.4\n", "\u0661.2.3.4", "::ffff:10.0.0.1", "::FFFF:A00:1",
       "fe80::1%eth0", "FE80::1%3", "2001:DB8::1", "2001:0db8:0000::0001", "::1", "",
       "10.0.0.1%eth0", "not-an-ip"]
MACS = ["02:00:00:00:00:0a", "02:00:00:00:00:0A", "02-00-00-00-00-0a", "0200.0000.000a",
        "02000000000a", "02:00:00:00:00", "02:00:00:00:00:0a:0b", "02:00-00:00:00:0a",
        "0g:00:00:00:00:0a", "02:00:00:00:00:0a\n", "", "02:0:00:00:00:0a"]


def outcome(normalize: object, value: str) -> str:
    try:
        return normalize(value)  # type: ignore[operator, no-any-return]
    except InvalidInput:
        return "refused"


@pytest.mark.parametrize("value", IPS)
def test_normalize_ip_ok_fast_path_same_as_ipaddress(value: str) -> None:
    # a leading space takes every value down the general (ipaddress) path
    assert outcome(normalize_ip, value) == outcome(normalize_ip, " " + value)


def test_normalize_ip_ok_canonical_forms() -> None:
    assert [outcome(normalize_ip, v) for v in ("::FFFF:A00:1", "FE80::1%3", "010.0.0.1",
                                               "\u0661.2.3.4")] == [
        "10.0.0.1", "fe80::1", "refused", "refused"]


@pytest.mark.parametrize("value", MACS)
def test_normalize_mac_ok_fast_path_same_as_general(value: str) -> None:
    assert outcome(normalize_mac, value) == outcome(normalize_mac, " " + value.upper())


def copy(text: str) -> str:
    """An equal string that is another object (never the interned one)."""
    return "".join(list(text))


BASE = Sighting("jsonl", 1_772_409_600.25, site="hq", ip="10.0.0.1",
                mac="02:00:00:00:00:0a", hostname="cam-1", open_ports=(80, 443))


def test_digest_ok_equal_sightings_equal_digests() -> None:
    again = Sighting(copy("jsonl"), 1_772_409_600.25, site=copy("hq"), ip=copy("10.0.0.1"),
                     mac=copy("02:00:00:00:00:0a"), hostname=copy("cam-1"),
                     open_ports=(80, 443))
    assert again == BASE and hash(again) == hash(BASE)
    assert again.digest() == BASE.digest() and len(BASE.digest()) == 16


class Kind(enum.StrEnum):
    JSONL = "jsonl"


def test_digest_ok_str_subclass_digests_as_its_text() -> None:
    assert replace(BASE, source=Kind.JSONL).digest() == BASE.digest()


@pytest.mark.parametrize("name", [f.name for f in fields(Sighting)])
def test_digest_ok_every_field_changes_it(name: str) -> None:
    other = {"seen_at": 1_772_409_601.0, "not_after": 1.0, "open_ports": (81,)}.get(
        name, "x")
    assert replace(BASE, **{name: other}).digest() != BASE.digest()


def test_digest_ok_none_and_empty_text_differ() -> None:
    assert replace(BASE, detail="").digest() != BASE.digest()
    assert replace(BASE, detail="None").digest() != BASE.digest()
