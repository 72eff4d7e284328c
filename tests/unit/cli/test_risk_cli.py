"""``iotiam risk`` misused: one ``error:`` line, exit 2, nothing sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from .commands import CLIS, assert_one_line_error, invoke

CASES = {
    "fail/export-format": (["risk", "export", "--format", "xml"],
                           "--format must be csv or json"),
    "fail/accept-blank-reason": (["risk", "accept", "device-1", "--factor", "zombie",
                                  "--reason", "   "],
                                 "--reason must say why the risk is accepted"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_usage_error(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words, expected = CASES[case]
    argv = ["--data-dir", str(tmp_path / "data"), "--url", "http://127.0.0.1:9",
            "--token", "t", *words]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert (result.rc, line) == (2, f"error: {expected}")


@pytest.mark.parametrize("words", [
    ["risk", "accept", "device-1", "--factor", "zombie", "--reason", "x", "--days", "-1"],
    ["risk", "accept", "device-1", "--factor", "zombie", "--reason", "x", "--days", "400"],
    ["risk", "list", "--min-score", "-5"], ["risk", "list", "--limit", "0"],
    ["risk", "accept", "device-1", "--reason", "x"]],
    ids=["fail/negative-days", "fail/too-many-days", "fail/negative-min-score",
         "fail/zero-limit", "fail/missing-factor"])
def test_bad_values_are_one_line(words: list[str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path / "data"), "--url", "http://127.0.0.1:9",
            "--token", "t", *words]
    result = invoke(CLIS[0], argv, capsys)
    assert_one_line_error(result, argv)
    assert result.rc == 2


def test_unreachable_api_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path / "data"), "--url", "http://127.0.0.1:9",
            "--token", "t", "risk", "export", "--format", "csv"]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert result.rc != 0 and "cannot reach iotiam" in line
