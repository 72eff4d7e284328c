"""Device MAC and host name attributes indexed in one spelling each

Migration 0016 indexed a device's ``mac`` and ``hostname`` attributes lower-cased, as
the admin wrote them, so a sighting's MAC was looked up in the four ways an admin may
write one (``aa:bb:..``, ``aa-bb-..``, ``aabb..``, ``aabb.ccdd.eeff``) and a host name
with and without its trailing dot: six index probes a line of a typical import. These
indexes hold the one spelling a lookup asks for: a MAC without separators, a host name
without trailing dots (``storage/registered_identities.py`` uses these expressions). An
index over an expression is computed from the rows already stored, so existing devices
are found at once; the two indexes it replaces are dropped (the address's stays).

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from collections.abc import Callable

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def _attribute(dialect: str, name: str) -> str:
    """A device attribute as 0016 indexed it (lower-cased text)."""
    if dialect == "postgresql":
        return f"lower((attributes::json) ->> '{name}')"
    return f"lower(json_extract(attributes, '$.{name}'))"


def _spelled(dialect: str, name: str) -> str:
    """The one spelling of ``name`` a lookup asks for."""
    if name == "mac":
        return f"replace(replace(replace({_attribute(dialect, name)}, ':', ''), '-', ''), '.', '')"
    return f"rtrim({_attribute(dialect, name)}, '.')"


def _reindex(old: str, new: str, expression: Callable[[str, str], str]) -> None:
    """Replace the index ``old`` of each attribute by ``new`` over ``expression``."""
    dialect = op.get_bind().dialect.name
    for name in ("mac", "hostname"):
        op.execute(f"DROP INDEX {old.format(name=name)}")
        op.execute(f"CREATE INDEX {new.format(name=name)} ON devices "
                   f"({expression(dialect, name)})")


def upgrade() -> None:
    _reindex("ix_devices_attribute_{name}", "ix_devices_{name}_spelled", _spelled)


def downgrade() -> None:
    _reindex("ix_devices_{name}_spelled", "ix_devices_attribute_{name}", _attribute)
