"""Small conversions shared by the SQL stores."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement

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
