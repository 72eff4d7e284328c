"""Rendering for the CLI: Rich tables for people, ``--json`` for scripts.

Every value in a table or a ``key  value`` listing is shown as plain text with its
control characters escaped (``terminal_text``): much of it was chosen by whatever
was seen on the network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from iotiam.cli.main import console
from iotiam.cli.terminal_text import escape_controls, plain


def print_json(value: Any) -> None:
    """Machine-readable output (non-ASCII as ``\\u`` escapes: a control or bidi character
    from the network never reaches the terminal raw)."""
    console.print_json(json.dumps(value), ensure_ascii=True)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A simple table; the title and every cell are plain text (no markup)."""
    table = Table(title=plain(title))
    for column in columns:
        table.add_column(plain(column))
    for row in rows:
        table.add_row(*[plain(v) for v in row])
    console.print(table)


def print_fields(value: dict[str, Any], skip: Sequence[str] = ()) -> None:
    """``key  value`` lines for one object."""
    width = max((len(k) for k in value), default=0)
    for key, item in value.items():
        if key in skip:
            continue
        shown = json.dumps(item) if isinstance(item, dict | list) else item
        print_line(f"{key.ljust(width)}  {'' if shown is None else shown}")


def print_line(text: str, *, to: Console = console) -> None:
    """One line of text that may hold outside values: no markup, controls escaped."""
    to.print(escape_controls(text), markup=False, highlight=False)
