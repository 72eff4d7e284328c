"""The changes the fleet publishes, and the feed that carries them to every consumer.

A use case records a change in the same transaction as the change itself
(``uow.changes.record(CertificateRevoked(...))``): the change is published exactly when
its transaction commits, never for one that rolled back. The ``ChangeFeed`` delivers
them after commit, in order, at least once, each with its position, to whoever
subscribed to its kind; ``bootstrap.py`` lists every subscription, so "revoke → every
consumer" reads as a list of calls.

A consumer must be quick (drop a cache entry, queue a device, wake its own loop) and
idempotent: a change may come twice (after a lost connection, the feed reads again
from its last position).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from iotiam.errors import InvalidInput


@dataclass(frozen=True)
class CertificateRevoked:
    """A certificate was revoked (CRL, OCSP, the broker's session, the PDP, trust)."""

    serial: int
    issuer_id: str
    device_id: str | None


@dataclass(frozen=True)
class CredentialRevoked:
    """A PSK or an OAuth client of a device was revoked (``kind``: ``psk``, ``oauth-client``)."""

    kind: str
    credential_id: str
    device_id: str | None


@dataclass(frozen=True)
class DeviceChanged:
    """Devices' state, org or attributes changed, or they were registered."""

    device_ids: tuple[str, ...]
    state: str | None = None


@dataclass(frozen=True)
class PolicyChanged:
    """A policy was written, attached or detached, or a site changed."""

    policy: str | None = None


@dataclass(frozen=True)
class TrustChanged:
    """Devices' stored trust scores moved (policy conditions read them)."""

    device_ids: tuple[str, ...]
    #: moved by the trust refresher, for a change of the devices (or of their records)
    #: it followed; it hands those devices to the risk register itself, with their new
    #: scores stored (``serving.risk_refresher``), so the register judges them once
    refreshed: bool = False


@dataclass(frozen=True)
class DetectionModeChanged:
    """A device type's detection mode was set (``learn``, ``monitor``, ``enforce``)."""

    device_type: str
    mode: str


@dataclass(frozen=True)
class FirmwareSignerRevoked:
    """A firmware signer was revoked: images it signed no longer verify."""

    signer: str


@dataclass(frozen=True)
class ManufacturerTrustChanged:
    """A manufacturer CA was registered (devices present IDevIDs chaining to it)."""

    manufacturer: str


@dataclass(frozen=True)
class IssuingCasChanged:
    """An issuing CA was added (a rotation) or revoked: every process loads the CAs
    again (issuance, OCSP, chains, the TLS trust store, the broker's cafile and CRL)."""

    ca_id: str
    action: str


@dataclass(frozen=True)
class AdminTokenRevoked:
    """An admin bearer token was revoked (processes drop what they cached of it)."""

    token_id: str


@dataclass(frozen=True)
class SightingsImported:
    """Sightings were stored under ``org_path``: assets may be new, devices seen again."""

    org_path: str
    sightings: int


Change = (CertificateRevoked | CredentialRevoked | DeviceChanged | PolicyChanged
          | TrustChanged | DetectionModeChanged | FirmwareSignerRevoked
          | ManufacturerTrustChanged | SightingsImported | AdminTokenRevoked
          | IssuingCasChanged)

#: every kind of change by the name it is stored under
KINDS: dict[str, type[Change]] = {
    "certificate-revoked": CertificateRevoked,
    "credential-revoked": CredentialRevoked,
    "device-changed": DeviceChanged,
    "policy-changed": PolicyChanged,
    "trust-changed": TrustChanged,
    "detection-mode-changed": DetectionModeChanged,
    "firmware-signer-revoked": FirmwareSignerRevoked,
    "manufacturer-trust-changed": ManufacturerTrustChanged,
    "sightings-imported": SightingsImported,
    "admin-token-revoked": AdminTokenRevoked,
    "issuing-cas-changed": IssuingCasChanged,
}
_NAMES = {kind: name for name, kind in KINDS.items()}


def kind_name(change: Change) -> str:
    """The name a change's kind is stored under."""
    return _NAMES[type(change)]


def to_fields(change: Change) -> dict[str, Any]:
    """A change as plain JSON-able fields."""
    return {f.name: list(v) if isinstance(v := getattr(change, f.name), tuple) else v
            for f in dataclasses.fields(change)}


def from_fields(kind: str, fields: dict[str, Any]) -> Change:
    """The change stored as ``kind`` with ``fields`` (as ``to_fields`` wrote them)."""
    try:
        cls = KINDS[kind]
        values: dict[str, Any] = {
            name: tuple(v) if isinstance(v := fields[name], list) else v
            for name in (f.name for f in dataclasses.fields(cls)) if name in fields}
        return cls(**values)
    except (KeyError, TypeError) as e:
        raise InvalidInput(f"unreadable change of kind {kind!r}: {e}") from e


@dataclass(frozen=True)
class Published:
    """A committed change and its position in the feed (positions only grow)."""

    position: int
    change: Change


Consumer = Callable[[Published], None]


class ChangeRecorder(Protocol):
    """What a unit of work exposes as ``changes``: records a change in its transaction."""

    def record(self, change: Change) -> None:
        """Publish ``change`` when (and only if) this transaction commits."""
        ...


class ChangeFeed(Protocol):
    """Committed changes, delivered to subscribers in order, at least once."""

    def subscribe(self, kinds: tuple[type[Change], ...], consumer: Consumer, *,
                  after: int | None = None) -> None:
        """Call ``consumer`` with every change of these kinds committed from now on; with
        ``after`` (a ``position`` read earlier), first with those delivered since then
        (a consumer that was being built meanwhile catches up)."""
        ...

    @property
    def position(self) -> int:
        """The position of the last change delivered."""
        ...

    def deliver_pending(self) -> int:
        """Deliver what was committed since the last delivery now; how many changes."""
        ...
