"""``iotiam risk`` misused: one ``error:`` line, exit 2, nothing sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Installation
from iotiam.kernel import SYSTEM

from .commands import CLIS, assert_one_line_error, cli_against, invoke

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


@pytest.fixture
def cli(installation: Installation, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> list[str]:
    """The global options of a CLI talking to the installation's API (each backend)."""
    options = cli_against(installation, monkeypatch, tmp_path)
    installation.services.risk.rebuild(SYSTEM)
    return options


@pytest.mark.parametrize("cursor", ["99999999999999999999.x", "1.x",
                                    "99999999999999999999.device-0123456789abcdef0123"],
                         ids=["fail/huge-score", "fail/not-an-id", "fail/huge-score-real-id"])
def test_fail_list_after_a_cursor_the_api_never_gave(cli: list[str], cursor: str,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    argv = [*cli, "risk", "list", "--after", cursor]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert "not a cursor this API returned" in line


def test_ok_list_after_the_next_of_a_page(cli: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    first = invoke(CLIS[0], [*cli, "risk", "list", "--limit", "1", "--json"], capsys)
    assert first.rc == 0, first
    page = json.loads(first.out)
    assert page["total"] >= 1, page
    following = invoke(CLIS[0], [*cli, "risk", "list", "--json", "--after",
                                 f"{page['items'][0]['score']}.{page['items'][0]['id']}"],
                       capsys)
    assert following.rc == 0, following
    assert page["items"][0]["id"] not in [e["id"] for e in json.loads(following.out)["items"]]
