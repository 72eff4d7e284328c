"""``iotiam detect`` for issue 15: the unknown clients' mode, what enforce would have
done, the findings of an upload, and a learning period of up to 30 days at ``init``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Installation

from .commands import CLIS, assert_one_line_error, cli_against, invoke

T0 = 1_772_366_400.0


@pytest.fixture
def cli(memory_installation: Installation, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> list[str]:
    """The global options of a CLI talking to an installation's API."""
    return cli_against(memory_installation, monkeypatch, tmp_path)


def test_ok_unknown_mode_would_act_and_batch(cli: list[str], memory_installation: Installation,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    shown = invoke(CLIS[0], [*cli, "detect", "mode"], capsys)
    assert shown.rc == 0 and "_unknown" in shown.out and "monitor" in shown.out
    stuffing = [{"kind": "auth_failure", "ts": T0 + 20 * i, "client_id": f"guess-{i}",
                 "source_ip": "203.0.113.9"} for i in range(10)]
    batch = memory_installation.api().post("/v1/events", json=stuffing).json()["batch"]
    listed = invoke(CLIS[0], [*cli, "detect", "batch", batch, "--json"], capsys)
    assert listed.rc == 0, listed
    (finding,) = json.loads(listed.out)["items"]
    assert finding["evidence"]["source_ip"] == "203.0.113.9"
    acted = invoke(CLIS[0], [*cli, "detect", "would-act", "--days", "3"], capsys)
    assert acted.rc == 0 and "in all: 1 findings" in acted.out, acted
    report = json.loads(invoke(CLIS[0], [*cli, "detect", "would-act", "--json"], capsys).out)
    assert report["by_finding_type"][0]["finding_type"] == "auth_failure_burst"
    setting = invoke(CLIS[0], [*cli, "detect", "mode", "--unknown", "learn"], capsys)
    assert (setting.rc, setting.out.strip()) == (0, "_unknown: learn")
    assert memory_installation.api().get("/v1/detection/modes").json()["unknown"] == "learn"


@pytest.mark.parametrize("words", [["detect", "mode", "sensor", "--unknown", "learn"],
                                   ["detect", "would-act", "--days", "0"],
                                   ["detect", "mode", "--unknown", "panic"]],
                         ids=["fail/type-and-unknown", "fail/zero-days", "fail/bad-mode"])
def test_fail_misuse_is_one_line(cli: list[str], words: list[str],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*cli, *words]
    result = invoke(CLIS[0], argv, capsys)
    assert_one_line_error(result, argv)


@pytest.mark.parametrize(("period", "message"), [
    ("31d", "--learning-period is at most 30d"),
    ("soon", "bad duration 'soon'; use e.g. 90s, 10m, 12h or 30d")],
    ids=["fail/beyond-thirty-days", "fail/not-a-duration"])
def test_fail_init_learning_period(period: str, message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path / "data"), "init", "--learning-period", period]
    result = invoke(CLIS[0], argv, capsys)
    assert assert_one_line_error(result, argv) == f"error: {message}"
    assert not (tmp_path / "data").exists()


def test_ok_init_records_a_week_of_learning(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path / "data"), "init", "--no-broker",
            "--learning-period", "7d"]
    result = invoke(CLIS[0], argv, capsys)
    assert result.rc == 0, result
    recorded = json.loads((tmp_path / "data" / "config.json").read_text())
    assert recorded["detection_learning_seconds"] == 7 * 86400
