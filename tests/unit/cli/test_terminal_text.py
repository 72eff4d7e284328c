"""Text from outside reaches the terminal with its control characters escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from conftest import Installation
from iotiam.cli.terminal_text import TerminalConsole, escape_controls, plain

from .commands import CLIS, cli_against, invoke


@pytest.mark.parametrize(("text", "shown"), [
    ("sensor-01 Espressif", "sensor-01 Espressif"),
    ("Bäckerei ☕ 😀", "Bäckerei ☕ 😀"),
    ("\x1b[31mred\x1b]0;owned\x1b\\", "\\x1b[31mred\\x1b]0;owned\\x1b\\"),
    ("a\tb\nc\rd", "a\\tb\\nc\\rd"),
    ("nul\x00 del\x7f bell\x07", "nul\\x00 del\\x7f bell\\x07"),
    ("csi\x9b1m", "csi\\x9b1m"),
    ("abc\u202edcba", "abc\\u202edcba"),
], ids=["ok/ascii", "ok/unicode", "ok/esc-sequences", "ok/white-space-controls",
        "ok/nul-del-bell", "ok/c1-csi", "ok/bidi-override"])
def test_escape_controls(text: str, shown: str) -> None:
    assert escape_controls(text) == shown


def test_plain_is_not_markup() -> None:
    console = Console(record=True, width=200, color_system=None)
    console.print(plain("[bold red]hi[/] \x1b[2J"))
    printed = console.export_text()
    assert printed == "[bold red]hi[/] \\x1b[2J\n"
    assert plain(None).plain == ""


def test_terminal_console_prints_strings_as_plain_text() -> None:
    # every `console.print(f"... {value}")` of the CLI goes through this console
    console = TerminalConsole(record=True, width=200, color_system=None)
    value = "[bold red]x[/] :cow: \x1b[2J"
    console.print(f"row 3: {value}")
    assert console.export_text() == "row 3: [bold red]x[/] :cow: \\x1b[2J\n"


@pytest.fixture
def cli(memory_installation: Installation, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> list[str]:
    """The global options of a CLI talking to the memory installation's API."""
    return cli_against(memory_installation, monkeypatch, tmp_path)


def test_fail_hostile_event_values_reach_the_terminal_inert(
        cli: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hostile input: a recorded event's refused value, echoed in the replay's report
    lines, is neither markup nor a terminal escape."""
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"kind": "connect", "ts": 1772359200, "device_id": "s1",
                                  "[bold]boom[/]\x1b[2J": 1}) + "\n")
    done = invoke(CLIS[0], [*cli, "detect", "replay", str(events)], capsys)
    assert done.rc == 3, done
    assert "1 rejected" in done.out, done
    assert "[bold]boom[/]" in done.out, done
    assert "\x1b" not in done.out + done.err


def test_ok_json_output_escapes_controls_and_bidi(
        cli: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen = tmp_path / "seen.jsonl"
    vendor = "Acme\u202egnp.exe\x9b31m"
    seen.write_text(json.dumps({"seen_at": 1772359200, "mac": "02:00:00:15:00:02",
                                "vendor": vendor}) + "\n")
    assert invoke(CLIS[0], [*cli, "discover", "import", "--source", "jsonl", "--site", "hq",
                            str(seen)], capsys).rc == 0
    listed = invoke(CLIS[0], [*cli, "discover", "list", "--json"], capsys)
    assert listed.rc == 0, listed
    assert "\u202e" not in listed.out and "\x9b" not in listed.out
    (asset,) = json.loads(listed.out)
    assert asset["vendor"] == vendor  # lossless for scripts


def test_terminal_console_keeps_line_breaks() -> None:
    # a PEM or a multi-line report printed whole keeps its lines; other controls do not
    console = TerminalConsole(record=True, width=200, color_system=None)
    console.print("-----BEGIN X-----\nAAAA\x1b[2J\n-----END X-----", end="")
    assert console.export_text() == "-----BEGIN X-----\nAAAA\\x1b[2J\n-----END X-----"
