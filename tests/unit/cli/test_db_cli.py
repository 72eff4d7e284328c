"""``iotiam db migrate`` and ``iotiam db recount`` on an installation's data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Installation

from .commands import CLIS, assert_one_line_error, invoke


def test_ok_recount_repairs_counts(installation: Installation,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    api = installation.api()
    for n in range(3):
        assert api.post("/v1/devices", json={"id": f"d-{n}", "type": "sensor"}
                        ).status_code == 201
    with installation.services.database() as uow:
        uow.conn.exec_driver_sql("UPDATE device_counts SET n = 7")
    assert api.get("/v1/inventory").json()["total"] == 7
    argv = ["--data-dir", str(installation.settings.data_dir), "db", "recount"]
    result = invoke(CLIS[0], argv, capsys)
    assert result.rc == 0, result
    assert "device counts: 1 row(s) were wrong and are fixed" in result.out
    assert api.get("/v1/inventory").json()["total"] == 3
    again = invoke(CLIS[0], argv, capsys)
    assert "device counts: 0 row(s) were wrong" in again.out


def test_ok_migrate_is_idempotent(installation: Installation,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(installation.settings.data_dir), "db", "migrate"]
    result = invoke(CLIS[0], argv, capsys)
    assert result.rc == 0, result
    assert "schema up to date" in result.out


@pytest.mark.parametrize("command", ["migrate", "recount"])
def test_fail_no_installation(command: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path / "nothing"), "db", command]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert "no iotiam database in" in line and "run `iotiam init` there" in line
    assert not (tmp_path / "nothing").exists()  # nothing created
