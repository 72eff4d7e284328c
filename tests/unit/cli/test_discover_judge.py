"""``iotiam discover adopt`` when nothing could be adopted: an outside review of issue 13."""

from __future__ import annotations

from pathlib import Path

import pytest

from .commands import CLIS, assert_one_line_error, invoke
from .test_discover import cli, scan  # noqa: F401 (the fixture and the file of the module)


def test_adopt_fail_every_row_refused_is_one_error_line(
        cli: list[str], tmp_path: Path,  # noqa: F811 (the imported fixture)
        capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown device type refuses every asset: the command failed, so it must say so
    in one ``error:`` line, not exit 1 behind a table on stdout with an empty stderr."""
    assert invoke(CLIS[0], [*cli, "discover", "import", "--source", "jsonl", "--site", "hq",
                            scan(tmp_path)], capsys).rc == 0
    argv = [*cli, "discover", "adopt", "--type", "no-such-type", "--seen-at", "hq", "--yes"]
    line = assert_one_line_error(invoke(CLIS[0], argv, capsys), argv)
    assert "no-such-type" in line


def test_import_fail_nothing_readable_says_why(
        cli: list[str], tmp_path: Path,  # noqa: F811 (the imported fixture)
        capsys: pytest.CaptureFixture[str]) -> None:
    """A CMDB export saved by Excel as "CSV (semicolon)" is cp1252: every row is refused.
    The API's problem names why for each line; the CLI said only "the input has no cmdb
    record that could be read (HTTP 400)", so the user cannot learn to pass encoding."""
    export = tmp_path / "assets.csv"
    export.write_bytes(b"Asset Tag;MAC Address;Hostname;Vendor\r\n"
                       b"A-4;02-00-5E-10-20-41;hmi-41;M\xfcller GmbH\r\n")
    argv = [*cli, "discover", "import", "--source", "cmdb", "--option", "delimiter=;",
            str(export)]
    line = assert_one_line_error(invoke(CLIS[0], argv, capsys), argv)
    assert "line 2" in line and "utf-8" in line.lower(), line
