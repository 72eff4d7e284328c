"""Text from outside, made safe to print on the admin's terminal.

What the CLI shows was often chosen by a device on the network (an MQTT client id, a
vendor string, a hostname) and reaches the terminal through the API unchanged. A control
character in it is an instruction to the terminal (``ESC [31m`` recolours, ``ESC ]0;…``
retitles, some terminals answer queries into the input), and a ``[bold]`` in it would be
Rich markup. So such text is printed with its control characters escaped, as Python
writes them (``\\x1b``), and never read as markup.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.text import Text

#: C0 and C1 controls and DEL, and the bidirectional overrides and isolates that make a
#: line read otherwise than it is stored (CVE-2021-42574, "Trojan Source")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_controls(text: str) -> str:
    """``text`` with each control character written as its Python escape (``\\x1b``)."""
    if text.isascii() and text.isprintable():
        return text
    return _CONTROL.sub(_escaped, text)


def plain(value: object) -> Text:
    """``value`` as text for a Rich console: controls escaped, no markup (None is empty)."""
    return Text("" if value is None else escape_controls(str(value)))


class TerminalConsole(Console):
    """A Rich console that prints every string as plain text with its controls escaped.

    Any ``console.print(f"... {value}")`` may carry a server's or a file's text, so no
    string printed here is read as markup or emoji codes; tables of ``plain`` cells and
    progress bars keep their own styling.
    """

    def render_str(self, text: str, **options: Any) -> Text:
        """``text`` as plain text: controls escaped but its line breaks kept (a PEM, a
        report), no markup, no emoji codes."""
        options.update(markup=False, emoji=False)
        lines = "\n".join(escape_controls(line) for line in text.split("\n"))
        return super().render_str(lines, **options)


def _escaped(found: re.Match[str]) -> str:
    char = found.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
