"""``iotiam compliance``: the report the API serves, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Installation
from iotiam.kernel import SYSTEM

from .commands import CLIS, assert_one_line_error, cli_against, invoke


def test_ok_report_as_json_and_filtered(memory_installation: Installation,
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    memory_installation.services.risk.rebuild(SYSTEM)
    cli = cli_against(memory_installation, monkeypatch, tmp_path)
    whole = invoke(CLIS[0], [*cli, "compliance", "--json"], capsys)
    assert whole.rc == 0, whole
    report = json.loads(whole.out)
    assert report["org_path"] == "/root/" and len(report["requirements"]) >= 10
    met = invoke(CLIS[0], [*cli, "compliance", "--status", "met", "--json"], capsys)
    statuses = {r["status"] for r in json.loads(met.out)["requirements"]}
    assert statuses <= {"met"}
    table = invoke(CLIS[0], [*cli, "compliance"], capsys)
    assert table.rc == 0 and "5.1-1" in table.out and "ETSI EN 303 645" in table.out


def test_fail_an_unknown_status_is_one_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path / "data"), "--url", "http://127.0.0.1:9",
            "--token", "t", "compliance", "--status", "fine"]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert (result.rc, line) == (2, "error: --status must be one of met, partly, not-met, "
                                    "no-evidence")
