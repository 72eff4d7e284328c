"""Firmware version parsing and order (dotted numbers, optional pre-release suffix)."""

from __future__ import annotations

import pytest

from iotiam.attestation.versions import FirmwareVersion
from iotiam.errors import InvalidInput

V = FirmwareVersion.parse


@pytest.mark.parametrize(("low", "high"), [
    ("1.2.9", "1.2.10"),
    ("1.9", "1.10"),
    ("1", "1.0.1"),
    ("2.0.0-rc.1", "2.0.0"),
    ("2.0.0-rc.2", "2.0.0-rc.10"),
    ("2.0.0-alpha", "2.0.0-beta"),
    ("2.0.0-1", "2.0.0-alpha"),
    ("1.99.99", "2"),
    ("v1.2", "1.3"),
], ids=lambda v: v)
def test_order_ok(low: str, high: str) -> None:
    assert V(low) < V(high)
    assert V(high) > V(low)
    assert not V(high) < V(low)


@pytest.mark.parametrize(("a", "b"), [("1.2", "1.2.0"), ("1.0+build.7", "1.0.0+other"),
                                      ("v3", "3.0.0"), ("1.0-rc.1", "1.0.0-rc.1")])
def test_equal_ok(a: str, b: str) -> None:
    assert V(a) == V(b)
    assert V(a) >= V(b)
    assert hash(V(a)) == hash(V(b))


def test_text_ok_kept_as_given() -> None:
    assert str(V("1.2.0-rc.1")) == "1.2.0-rc.1"


@pytest.mark.parametrize("text", ["", "1.", ".1", "1..2", "a.b", "1.2.3.4.5.6.7.8.9",
                                  "1.2-", "1.2+", "1.2-rc..1", "1" * 70, "1.2\n",
                                  " 1.2", "1.2 beta", "1234567890.1"],
                         ids=lambda t: f"fail/{t[:12]!r}")
def test_parse_fail(text: str) -> None:
    with pytest.raises(InvalidInput, match="not valid"):
        V(text)


@pytest.mark.parametrize("value", [None, 12, 1.5, ["1"]], ids=lambda v: f"fail/{v!r}")
def test_parse_fail_not_text(value: object) -> None:
    with pytest.raises(InvalidInput):
        V(value)
