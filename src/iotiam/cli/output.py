"""Rendering for the CLI: Rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from iotiam.cli.main import console


def print_json(value: Any) -> None:
    """Machine-readable output."""
    console.print_json(json.dumps(value))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A simple table."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


def print_fields(value: dict[str, Any], skip: Sequence[str] = ()) -> None:
    """``key  value`` lines for one object."""
    width = max((len(k) for k in value), default=0)
    for key, item in value.items():
        if key in skip:
            continue
        shown = json.dumps(item) if isinstance(item, dict | list) else item
        console.print(f"{key.ljust(width)}  {'' if shown is None else shown}", markup=False,
                      highlight=False)
