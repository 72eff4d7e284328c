"""What every in-memory store shares: rows kept in plain containers, copied out and
back in by the unit of work so that a failed transaction leaves nothing behind."""

from __future__ import annotations

import copy
from typing import Any

from iotiam.errors import InvalidInput


class MemoryStore:
    """A store whose rows are its plain attributes; an attribute holding another store
    is a reference (a join), not data, and is neither copied nor restored."""

    def saved(self) -> dict[str, Any]:
        """A deep copy of this store's rows."""
        return {name: copy.deepcopy(value) for name, value in vars(self).items()
                if not isinstance(value, MemoryStore)}

    def restore(self, saved: dict[str, Any]) -> None:
        """Put back rows taken by :meth:`saved`."""
        vars(self).update(saved)


def under(org_path: str | None, scope: str) -> bool:
    """``org_path`` lies inside the subtree at ``scope`` (the SQL stores' ``under_path``,
    which refuses a scope that is not ``/a/b/``-shaped)."""
    if not scope.startswith("/") or not scope.endswith("/"):
        raise InvalidInput(f"bad org path {scope!r}")
    return org_path is not None and org_path.startswith(scope)
