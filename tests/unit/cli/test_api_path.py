"""Ids typed on the command line stay inside their URL path segment (issue 12 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotiam.agent.est_client import EstClient
from iotiam.cli.client import api_path
from iotiam.errors import InvalidInput

#: would reach another device's revoke-certificates route if it left its segment
HOSTILE = "x/../../v1/devices/victim/revoke-certificates?#"


def test_ok_segments_are_percent_encoded() -> None:
    assert api_path("/v1/devices", "d-1", "psk", "rotate") == "/v1/devices/d-1/psk/rotate"
    assert api_path("/v1/devices/", HOSTILE, "psk") == (
        "/v1/devices/x%2F..%2F..%2Fv1%2Fdevices%2Fvictim%2Frevoke-certificates%3F%23/psk")
    assert api_path("/v1/certificates", "0a:1b") == "/v1/certificates/0a%3A1b"
    assert api_path("/v1/devices", "ünïcode") == "/v1/devices/%C3%BCn%C3%AFcode"


@pytest.mark.parametrize("segment", ["", ".", "..", "a\x00b", "a\nb", "\x7f", "a\x9bb"],
                         ids=["fail/empty", "fail/dot", "fail/dot-dot", "fail/nul",
                              "fail/newline", "fail/del", "fail/c1-control"])
def test_refused_segment(segment: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        api_path("/v1/devices", segment, "psk")
    assert "\n" not in str(refused.value)


def test_ok_est_label_is_one_segment(tmp_path: Path) -> None:
    client = EstClient("https://127.0.0.1:1", tmp_path / "ca.pem", label="../../v1/whoami")
    assert client._prefix == "/.well-known/est/..%2F..%2Fv1%2Fwhoami"
