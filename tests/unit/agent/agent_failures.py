"""``iotiam-agent`` run in process until it fails: the shared check of its one error line."""

from __future__ import annotations

import sys

import pytest

from iotiam.agent import cli as agent_cli


def run_failing(argv: list[str], capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``iotiam-agent ARGV`` in-process: its exit code and its one ``error:`` line."""
    monkeypatch.setattr(sys, "argv", ["iotiam-agent", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        agent_cli.run()
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured
    assert "this is a bug" not in lines[0] and "Traceback" not in captured.err, captured
    code = ended.value.code
    return (code if isinstance(code, int) else 1), lines[0]
