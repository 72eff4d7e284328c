"""Text from outside reaches the terminal with its control characters escaped."""

from __future__ import annotations

import pytest
from rich.console import Console

from iotiam.cli.terminal_text import escape_controls, plain


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
