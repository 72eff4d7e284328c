"""``iotiam revoke --where``: a dry run says what would go, a bad filter is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fleet import issue

from conftest import Installation

from .commands import CLIS, assert_one_line_error, cli_against, invoke


@pytest.fixture
def cli(installation: Installation, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> list[str]:
    """Global options against the installation, with two acme devices and one other."""
    api = installation.api()
    for device_id, maker in (("a-1", "acme"), ("a-2", "acme"), ("g-1", "globex")):
        answer = api.post("/v1/devices", json={
            "id": device_id, "type": "sensor",
            "attributes": {"manufacturer": maker, "batch": "2026-07"}})
        assert answer.status_code == 201, answer.text
        issue(api, device_id)
    return cli_against(installation, monkeypatch, tmp_path)


def test_ok_dry_run_then_revoke(cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    where = "manufacturer=acme and batch=2026-07"
    dry = invoke(CLIS[0], [*cli, "revoke", "--where", where, "--dry-run"], capsys)
    assert dry.rc == 0, dry
    assert dry.out.startswith("would revoke 2 device(s): 2 certificate(s), 0 PSK(s)")
    done = invoke(CLIS[0], [*cli, "revoke", "--where", where, "--reason", "keyCompromise",
                            "--json"], capsys)
    assert done.rc == 0, done
    report = json.loads(done.out)
    assert (report["devices"], report["certificates"], report["reason"]) == \
        (2, 2, "keyCompromise")
    after = invoke(CLIS[0], [*cli, "revoke", "--where", where, "--dry-run"], capsys)
    assert "2 device(s): 0 certificate(s)" in after.out


def test_ok_empty_match_says_zero(cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(CLIS[0], [*cli, "revoke", "--where", "site=nowhere"], capsys)
    assert result.rc == 0, result
    assert result.out.startswith("revoked 0 device(s): 0 certificate(s)")


@pytest.mark.parametrize(("where", "expected"), [
    ("colour=red", "unknown field 'colour'"), ("manufacturer=acme or batch=1", "bad term"),
    ("type=a and type=b", "given twice")],
    ids=["fail/unknown-field", "fail/syntax", "fail/twice"])
def test_fail_bad_filter_is_one_line(cli: list[str], capsys: pytest.CaptureFixture[str],
                                     where: str, expected: str) -> None:
    argv = [*cli, "revoke", "--where", where]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert result.rc != 0 and expected in line
    left = invoke(CLIS[0], [*cli, "revoke", "--where", "type=sensor", "--dry-run"], capsys)
    assert "3 certificate(s)" in left.out


def test_ok_drill_changes_nothing(cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(CLIS[0], [*cli, "drill", "revoke", "--where", "manufacturer=acme"], capsys)
    assert result.rc == 0, result
    assert result.out.startswith("drill: would revoke 2 device(s): 2 certificate(s)")
    assert "credentials left afterwards: 0; rolled back" in result.out
    left = invoke(CLIS[0], [*cli, "revoke", "--where", "type=sensor", "--dry-run"], capsys)
    assert "3 certificate(s)" in left.out
