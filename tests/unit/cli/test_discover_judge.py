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
