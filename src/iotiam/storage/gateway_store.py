"""SQL implementation of the gateway link store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from iotiam.gateways.models import GatewayLink
from iotiam.storage.tables import gateways as t

#: ids per ``IN (...)``
_IN_CHUNK = 500


class SqlGatewayLinkStore:
    """Children and their gateways in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def get(self, child_id: str) -> GatewayLink | None:
        """The child's link, if it has a gateway."""
        row = self._c.execute(select(t.gateway_links).where(
            t.gateway_links.c.child_id == child_id)).first()
        return _link(row) if row else None

    def get_many(self, child_ids: Sequence[str]) -> dict[str, GatewayLink]:
        """The links of these children."""
        found: dict[str, GatewayLink] = {}
        ids = list(child_ids)
        for start in range(0, len(ids), _IN_CHUNK):
            rows = self._c.execute(select(t.gateway_links).where(
                t.gateway_links.c.child_id.in_(ids[start:start + _IN_CHUNK])))
            found.update((r.child_id, _link(r)) for r in rows)
        return found

    def children_of(self, gateway_id: str) -> list[GatewayLink]:
        """The gateway's children, by id."""
        rows = self._c.execute(select(t.gateway_links).where(
            t.gateway_links.c.gateway_id == gateway_id).order_by(t.gateway_links.c.child_id))
        return [_link(r) for r in rows]

    def put(self, link: GatewayLink) -> None:
        """Register the child under its gateway, replacing a link it had."""
        self._c.execute(delete(t.gateway_links).where(
            t.gateway_links.c.child_id == link.child_id))
        self._c.execute(insert(t.gateway_links).values(
            child_id=link.child_id, gateway_id=link.gateway_id, linked_at=link.linked_at))


def _link(row: Any) -> GatewayLink:
    return GatewayLink(child_id=row.child_id, gateway_id=row.gateway_id,
                       linked_at=row.linked_at)
