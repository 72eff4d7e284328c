"""Small conversions shared by the SQL stores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, String, any_, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from iotiam.errors import InvalidInput

#: one encoder for every call: ``json.dumps`` with options builds a new one each time
_STORED = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def dump_json(value: Any) -> str:
    """Compact, key-sorted JSON for storage."""
    return _STORED.encode(value)


def load_json(text: str) -> Any:
    """Parse stored JSON."""
    return json.loads(text)


def under_path(column: ColumnElement[str], path: str) -> ColumnElement[bool]:
    """``column`` names a path inside the subtree rooted at ``path`` (``/a/b/`` form).

    ``autoescape`` keeps ``_`` and ``%`` in ids literal; SQLite runs with
    ``case_sensitive_like`` so that ``/Acme/`` never matches ``/acme/``.
    """
    if not path.startswith("/") or not path.endswith("/"):
        raise InvalidInput(f"bad org path {path!r}")
    return column.startswith(path, autoescape=True)


def one_of(conn: Connection, column: ColumnElement[str], values: Sequence[str]
           ) -> ColumnElement[bool]:
    """``column IN values`` with the values as one parameter: a JSON array read by
    ``json_each`` on SQLite, a text array on PostgreSQL. An expanded ``IN`` costs
    SQLAlchemy a bound parameter per value on every call (a batch of 5,000 devices: most
    of a read's time) and SQLite a statement per 500 values."""
    if conn.dialect.name == "sqlite":
        listed = func.json_each(bindparam(None, dump_json(list(values)), type_=String))
        return column.in_(select(listed.table_valued("value").c.value))
    joined = ",".join(values)
    if joined.count(",") == len(values) - 1 and "" not in values:
        # no value holds a comma and none is empty (ids never do): one text the server
        # splits, as ``raw.ByIds`` sends them. psycopg's text array ran a regex per
        # element: 4-8 ms for 5,000 ids, a read of a batch's devices paid it each time
        split = cast(func.string_to_array(bindparam(None, joined, type_=String), ","),
                     ARRAY(String))
        return column == any_(split)
    return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
