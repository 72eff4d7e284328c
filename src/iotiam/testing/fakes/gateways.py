"""The gateway link store in memory (``iotiam.gateways.ports``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from iotiam.gateways.models import GatewayLink
from iotiam.testing.fakes.memory import MemoryStore


@dataclass
class MemoryGatewayLinkStore(MemoryStore):
    """``GatewayLinkStore``: links by child id."""

    links: dict[str, GatewayLink] = field(default_factory=dict)

    def get(self, child_id: str) -> GatewayLink | None:
        """The child's link, if it has a gateway."""
        return self.links.get(child_id)

    def get_many(self, child_ids: Sequence[str]) -> dict[str, GatewayLink]:
        """The links of these children."""
        return {c: self.links[c] for c in child_ids if c in self.links}

    def children_of(self, gateway_id: str) -> list[GatewayLink]:
        """The gateway's children, by id."""
        return sorted((link for link in self.links.values() if link.gateway_id == gateway_id),
                      key=lambda link: link.child_id)

    def put(self, link: GatewayLink) -> None:
        """Register the child under its gateway, replacing a link it had."""
        self.links[link.child_id] = link
