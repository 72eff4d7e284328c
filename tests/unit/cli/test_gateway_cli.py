"""``iotiam device add --via`` and ``iotiam device move``: one line out, one line on error."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Installation

from .commands import CLIS, cli_against, invoke


def test_cli_add_via_and_move_ok(installation: Installation, monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = cli_against(installation, monkeypatch, tmp_path)
    for gateway in ("gw-1", "gw-2"):
        assert invoke(CLIS[0], [*options, "device", "add", gateway, "--type", "gateway"],
                      capsys).rc == 0
    added = invoke(CLIS[0], [*options, "device", "add", "tag-1", "--type", "sensor",
                             "--via", "gw-1"], capsys)
    assert added.rc == 0, added
    assert "registered tag-1 (sensor, org root, active, via gw-1)" in added.out
    moved = invoke(CLIS[0], [*options, "device", "move", "tag-1", "--via", "gw-2"], capsys)
    assert moved.rc == 0, moved
    assert moved.out.strip() == "moved tag-1 under gw-2 (new PSK issued)"


@pytest.mark.parametrize(("args", "message"), [
    (["device", "add", "tag-2", "--type", "sensor", "--via", "nope"],
     "gateway 'nope' not found"),
    (["device", "add", "tag-2", "--type", "sensor", "--via", "plain"], "is not a gateway"),
    (["device", "move", "plain", "--via", "gw-1"], "is not under a gateway"),
], ids=["fail/unknown-gateway", "fail/not-a-gateway", "fail/move-no-gateway"])
def test_cli_via_fail(installation: Installation, monkeypatch: pytest.MonkeyPatch,
                      tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                      message: str) -> None:
    options = cli_against(installation, monkeypatch, tmp_path)
    for device, device_type in (("gw-1", "gateway"), ("plain", "sensor")):
        assert invoke(CLIS[0], [*options, "device", "add", device, "--type", device_type],
                      capsys).rc == 0
    result = invoke(CLIS[0], [*options, *args], capsys)
    assert result.rc == 1, result
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error:") and message in line
