"""What every in-memory store shares: rows kept in plain containers, copied out and
back in by the unit of work so that a failed transaction leaves nothing behind.

Rows are frozen dataclasses that a store replaces, never changes, so a copy of the
containers (dicts, lists, sets) is a copy of the rows: the rows themselves are shared.
"""

from __future__ import annotations

from typing import Any

from iotiam.errors import InvalidInput


class MemoryStore:
    """A store whose rows are its plain attributes; an attribute holding another store
    is a reference (a join), not data, and is neither copied nor restored."""

    def saved(self) -> dict[str, Any]:
        """A copy of this store's rows."""
        return {name: _containers(value) for name, value in vars(self).items()
                if not isinstance(value, MemoryStore)}

    def restore(self, saved: dict[str, Any]) -> None:
        """Put back rows taken by :meth:`saved`."""
        vars(self).update(saved)


def _containers(value: Any) -> Any:
    """``value`` with every dict, list and set in it copied; anything else shared."""
    if isinstance(value, dict):
        return {key: _containers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_containers(item) for item in value]
    if isinstance(value, set):
        return set(value)
    return value


def under(org_path: str | None, scope: str) -> bool:
    """``org_path`` lies inside the subtree at ``scope`` (the SQL stores' ``under_path``,
    which refuses a scope that is not ``/a/b/``-shaped)."""
    if not scope.startswith("/") or not scope.endswith("/"):
        raise InvalidInput(f"bad org path {scope!r}")
    return org_path is not None and org_path.startswith(scope)
