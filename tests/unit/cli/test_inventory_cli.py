"""``iotiam inventory``: the report's tables by org unit and by site."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Installation

from .commands import CLIS, cli_against, invoke


def test_ok_report_by_org_and_site(installation: Installation, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api = installation.api()
    assert api.post("/v1/org-units", json={"id": "acme", "kind": "tenant",
                                           "parent": "root"}).status_code == 201
    # 22 sites (site-00 and site-01 hold two devices each) and one device with none:
    # the table shows the 20 largest, the rest summed on one line
    rows = [{"id": f"d-{n}", "type": "sensor", "site": f"site-{n % 22:02d}"}
            for n in range(24)] + [{"id": "bare", "type": "sensor", "org": "acme"}]
    answer = api.post("/v1/devices/import",
                      json={"rows": [{"row": n, "data": d} for n, d in enumerate(rows)]})
    assert answer.json()["imported"] == 25, answer.text
    options = cli_against(installation, monkeypatch, tmp_path)
    result = invoke(CLIS[0], [*options, "inventory"], capsys)
    assert result.rc == 0, result
    lines = [" ".join(line.replace("│", " ").split()) for line in result.out.splitlines()]
    assert "/root/ 24" in lines and "/root/acme/ 1" in lines
    assert "site-00 2" in lines and "(none) 1" in lines
    assert "… 3 more sites (--json lists all) 3" in lines
