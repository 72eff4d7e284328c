"""What the gateway use cases need: the links, the children's PSKs, and the decision point."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

from iotiam.credentials.models import Psk
from iotiam.credentials.ports import CredentialsUnitOfWork
from iotiam.gateways.models import GatewayLink
from iotiam.inventory.models import Device
from iotiam.inventory.ports import DeviceTypeStore
from iotiam.kernel import Principal
from iotiam.policy.models import Subject


class GatewayLinkStore(Protocol):
    """Which gateway each child is registered under (one gateway per child)."""

    def get(self, child_id: str) -> GatewayLink | None:
        """The child's link, if it has a gateway."""
        ...

    def get_many(self, child_ids: Sequence[str]) -> dict[str, GatewayLink]:
        """The links of these children (a device without a gateway is absent)."""
        ...

    def children_of(self, gateway_id: str) -> list[GatewayLink]:
        """The gateway's children, by id."""
        ...

    def put(self, link: GatewayLink) -> None:
        """Register the child under its gateway, replacing a link it had."""
        ...


class GatewaysUnitOfWork(CredentialsUnitOfWork, Protocol):
    """The stores gateway use cases work with, inside one transaction."""

    @property
    def device_types(self) -> DeviceTypeStore:
        """Device types (read: is a device a gateway?)."""
        ...

    @property
    def gateway_links(self) -> GatewayLinkStore:
        """Children and their gateways."""
        ...


class ChildKeys(Protocol):
    """The PSK lifecycle as gateways use it (``credentials.service.Psks``)."""

    def issue_within(self, uow: CredentialsUnitOfWork, actor: Principal, device: Device, *,
                     rotate: bool) -> Psk:
        """Inside the caller's transaction: a new PSK for ``device`` (rotate: replacing
        the active one, or issuing the first when it has none)."""
        ...

    def issue_next_within(self, uow: CredentialsUnitOfWork, actor: Principal,
                          device: Device, overlap: timedelta) -> Psk:
        """Inside the caller's transaction: a next PSK beside the active one, which
        expires after ``overlap``."""
        ...

    def promote_within(self, uow: CredentialsUnitOfWork, actor: str, device_id: str,
                       next_id: str, reason: str) -> Psk:
        """Inside the caller's transaction: the next PSK becomes the active one."""
        ...

    def reveal(self, psk: Psk) -> bytes:
        """The key of a PSK, opened from its encryption at rest."""
        ...


class ChildSubjects(Protocol):
    """Device subjects as decisions read them (``policy.subjects.DeviceSubjects``)."""

    def cached(self, device_id: str) -> Subject | None:
        """The subject of a device (None: unknown)."""
        ...
