"""What the broker sync needs from the rest of iotiam, and what it reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cryptography import x509

from iotiam.policy.broker_acl import BrokerAcl


class BrokerFileSource(Protocol):
    """What the broker's CRL and PSK file are made of."""

    def files_version(self) -> tuple[object, ...]:
        """Cheap: changes whenever the CRL or the PSK file must be reinstalled."""
        ...

    def crl_pem(self) -> bytes:
        """The current CRL (PEM) of every CA device certificates chain to, one after
        another: the issuing CA's, and during a rotation's overlap the one before it."""
        ...

    def crl_issuers(self) -> list[x509.Certificate]:
        """The CAs whose CRLs ``crl_pem`` holds (each is checked against its own)."""
        ...

    def cafile_pem(self) -> bytes | None:
        """The broker's ``cafile``: the trusted issuing CAs and the root (a rotated-in
        CA is added, a revoked one left out); None: it stays as provisioned."""
        ...

    def psk_file(self) -> str:
        """Mosquitto ``psk_file`` content for every live PSK."""
        ...


class FleetSource(BrokerFileSource, Protocol):
    """What the sync needs to know about the fleet."""

    def broker_acl(self, device_id: str) -> BrokerAcl | None:
        """The device's compiled ACLs now; None if it is unknown to the inventory."""
        ...

    def all_acls(self) -> Iterable[BrokerAcl]:
        """The ACLs of every device that may have a broker identity."""
        ...

    def gateways_for(self, device_ids: Iterable[str]) -> set[str]:
        """The gateways these devices are registered under (their ACLs carry them)."""
        ...

    def updates_since(self, since: datetime) -> Updates:
        """Devices changed after ``since``, and whether policies changed (the safety net
        under the change feed: what moves a device without publishing a change)."""
        ...


@dataclass
class Updates:
    """Devices updated in a window (the safety net beside the change feed), and the
    watermark to ask from next time."""

    changed: set[str] = field(default_factory=set)
    policies_changed: bool = False
    until: datetime | None = None


@dataclass
class SyncReport:
    """What one sync sent."""

    created: int = 0
    updated: int = 0
    removed: int = 0
    kicked: int = 0
    unchanged: int = 0
    commands: int = 0
    #: class roles whose ACLs were replaced (each edit serves all the class's devices)
    roles_edited: int = 0
