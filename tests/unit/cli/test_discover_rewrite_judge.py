"""Defects an outside review found in ``iotiam discover`` (main at 5c7eea5), each
stating what a user must get (fixed since)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Installation

from .commands import CLIS, cli_against, invoke

#: what a device on the network chooses: an MQTT client id, a vendor string. ESC [ ... m
#: recolours, ESC ] 0 ; ... retitles the admin's terminal
HOSTILE = "\x1b[31mred\x1b]0;owned\x1b\\"


@pytest.fixture
def cli(memory_installation: Installation, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> list[str]:
    """The global options of a CLI talking to the memory installation's API."""
    options = cli_against(memory_installation, monkeypatch, tmp_path)
    return options


def test_fail_show_and_list_print_no_terminal_escapes(
        cli: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hostile input: whatever a scanned device calls itself, what the admin's terminal
    receives from `iotiam discover list/show` holds no ESC (0x1b) byte."""
    seen = tmp_path / "seen.jsonl"
    seen.write_text(json.dumps({"seen_at": 1772359200, "mac": "02:00:00:15:00:01",
                                "client_id": HOSTILE, "vendor": HOSTILE}) + "\n")
    imported = invoke(CLIS[0], [*cli, "discover", "import", "--source", "jsonl", "--site",
                                "hq", str(seen)], capsys)
    assert imported.rc == 0, imported
    listed = invoke(CLIS[0], [*cli, "discover", "list", "--json"], capsys)
    (asset,) = json.loads(listed.out)
    shown = invoke(CLIS[0], [*cli, "discover", "show", asset["id"]], capsys)
    assert shown.rc == 0 and "red" in shown.out, shown
    table = invoke(CLIS[0], [*cli, "discover", "list"], capsys)
    assert table.rc == 0, table
    assert "\x1b" not in shown.out + shown.err + table.out + table.err
