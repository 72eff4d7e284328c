"""What the discovery domain needs from the outside, and what it offers the risk register."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import IO, Any, Protocol

from iotiam.audit.ports import AuditUnitOfWork
from iotiam.changes import ChangeRecorder
from iotiam.discovery.models import (
    Binding,
    CredentialSeen,
    DevicePresence,
    DeviceSeen,
    DiscoveredAsset,
    IdentifierKind,
    Match,
    Refusal,
    RegisteredDevice,
    Sighting,
    SourceContext,
)
from iotiam.enrollment.models import ClaimToken
from iotiam.inventory.models import ImportRowResult
from iotiam.kernel import Principal

#: a sighting as stored: the sighting, its digest under the org path it was imported
#: under (``scoped_digests``), that org path, and what it was matched to
SightingRow = tuple[Sighting, bytes, str, Match]


class SightingSource(Protocol):
    """One kind of input (an nmap XML, a leases file, a Zeek log ...), read as a stream.

    ``read`` yields a sighting or a refusal per record, in input order, holding no more
    than one record in memory: a million-line file is read in bounded memory. It raises
    nothing for a bad record (that is a ``Refusal``); it raises ``InvalidInput`` only when
    the input as a whole is not of its kind (an nmap source given a CSV).
    """

    #: the name users give ``--source`` (``nmap``, ``dhcpd`` ...)
    name: str
    #: the options (``SourceContext.options``) it reads; one ending in ``.`` names a
    #: family (``map.``). An import naming any other is refused before a byte is read:
    #: a misspelt option must not be ignored
    options: frozenset[str]

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """The sightings in ``stream``."""
        ...


class RegisteredIdentities(Protocol):
    """The identifiers registered devices are known by (read from inventory, pki, PSKs).

    A device is known by the fingerprints and issuer+serial of every certificate it was
    issued, its PSK identities, its id (its MQTT client id and username), and the
    ``mac``, ``hostname`` and ``ip`` attributes an admin gave it. An ``ip`` is asked as
    ``models.ip_key(site, ip)`` and matches a device whose ``site`` is that site: an
    address an admin declared is static, but only at its own site.
    """

    def devices_for(self, kind: IdentifierKind, values: Sequence[str], *,
                    org_path: str) -> Mapping[str, RegisteredDevice]:
        """``value -> device`` for the values some device under ``org_path`` has."""
        ...


class SightingSink(Protocol):
    """Where iotiam's own traffic reports what it saw of unknown identities.

    Called from hot paths (the event pipeline, the broker watcher, the token endpoint):
    ``observe`` must not block on the database; it queues and returns.
    """

    def observe(self, sightings: Sequence[Sighting]) -> None:
        """Take sightings made by iotiam itself (recorded under the root org)."""
        ...


class DiscoveryStore(Protocol):
    """Sightings, discovered assets, the identifier bindings that join them, and the
    per-device presence aggregate. Writes come in batches (one import batch each)."""

    def begin_import(self) -> None:
        """Hold, until the transaction ends, the lock that keeps imports one at a time
        (two imports reconciling at once would both create the asset of one MAC), and
        make the batch's lookups fast whatever the tables' size (planner statistics)."""
        ...

    def claim_digests(self, digests: Sequence[bytes]) -> set[bytes]:
        """Record these sighting digests (``scoped_digests``: a sighting's digest under the
        org path it is imported under); the ones that were not recorded before: the rest
        are duplicates of sightings that org stored already."""
        ...

    def bindings_for(self, kind: IdentifierKind, values: Sequence[str], *,
                     org_path: str) -> Mapping[str, Binding]:
        """``value -> binding`` for the values bound under ``org_path``; where several
        org units hold one value, the one at ``org_path`` itself, else the latest seen."""
        ...

    def assets_by_id(self, asset_ids: Sequence[str]) -> Mapping[str, DiscoveredAsset]:
        """These assets (without their identifiers), by id."""
        ...

    def presence_for(self, device_ids: Sequence[str]) -> Mapping[str, DevicePresence]:
        """The presence aggregate of these devices, those that have one."""
        ...

    def merge_assets(self, merged: Mapping[str, str]) -> None:
        """``gone -> kept``: move each gone asset's bindings and sightings to the kept
        one and delete it (the kept one's aggregate is saved by ``save_assets``)."""
        ...

    def save_assets(self, assets: Sequence[DiscoveredAsset]) -> None:
        """Insert or replace these assets' rows (their ``identifiers`` are not stored
        here: they are the bindings)."""
        ...

    def save_bindings(self, bindings: Sequence[Binding]) -> None:
        """Insert or replace these bindings (keyed by kind, value and org path)."""
        ...

    def save_presence(self, presence: Sequence[DevicePresence]) -> None:
        """Insert or replace these devices' presence aggregates."""
        ...

    def add_sightings(self, rows: Sequence[SightingRow]) -> None:
        """Keep what ``iter_credentials_seen`` reads of these ``(sighting, digest,
        org_path, match)`` rows, whose digests were claimed: the rows that show a
        credential (a certificate, an issuer and serial, a PSK identity)."""
        ...

    def asset(self, asset_id: str) -> DiscoveredAsset | None:
        """One asset, with its identifiers."""
        ...

    def assets(self, *, org_path: str, after: str | None = None, limit: int = 100,
               status: str | None = None, site: str | None = None,
               source: str | None = None) -> list[DiscoveredAsset]:
        """Assets under ``org_path`` in id order after ``after`` (keyset paging)."""
        ...

    def count_assets(self, *, org_path: str, status: str | None = None,
                     site: str | None = None, source: str | None = None) -> int:
        """How many assets ``assets`` would page through."""
        ...

    def iter_assets(self, *, org_path: str) -> Iterator[DiscoveredAsset]:
        """Every asset under ``org_path``, streamed."""
        ...

    def iter_devices_seen(self, *, org_path: str) -> Iterator[DeviceSeen]:
        """What the sources saw of each registered device under ``org_path``."""
        ...

    def iter_credentials_seen(self, *, org_path: str) -> Iterator[CredentialSeen]:
        """Every certificate and PSK identity the sources saw under ``org_path``."""
        ...

    def devices_seen(self, *, org_path: str, device_ids: Sequence[str]) -> list[DeviceSeen]:
        """What the sources saw of these devices (those seen) under ``org_path``."""
        ...

    def credentials_seen(self, *, org_path: str,
                         keys: Sequence[tuple[IdentifierKind, str]]) -> list[CredentialSeen]:
        """The credentials of ``keys`` (those seen) under ``org_path``, each exactly as
        :meth:`iter_credentials_seen` tallies it."""
        ...


class DiscoveryUnitOfWork(AuditUnitOfWork, Protocol):
    """What an import works in: the discovery store, the registered identities it
    matches against, and the audit chain its batches are recorded in."""

    @property
    def discovery(self) -> DiscoveryStore:
        """Sightings, assets, bindings, presence."""
        ...

    @property
    def registered_identities(self) -> RegisteredIdentities:
        """The identifiers of registered devices (read only)."""
        ...

    @property
    def changes(self) -> ChangeRecorder:
        """Where an import says that sightings were stored (the risk register follows)."""
        ...


class DiscoveryReader(Protocol):
    """What the risk register reads of discovery (one consistent read)."""

    def iter_assets(self, *, org_path: str) -> Iterator[DiscoveredAsset]:
        """Every asset under ``org_path``, streamed."""
        ...

    def iter_devices_seen(self, *, org_path: str) -> Iterator[DeviceSeen]:
        """What the sources saw of each registered device under ``org_path``."""
        ...

    def iter_credentials_seen(self, *, org_path: str) -> Iterator[CredentialSeen]:
        """Every certificate and PSK identity the sources saw under ``org_path``."""
        ...

    def devices_seen(self, *, org_path: str, device_ids: Sequence[str]) -> list[DeviceSeen]:
        """What the sources saw of these devices (those seen) under ``org_path``."""
        ...

    def credentials_seen(self, *, org_path: str,
                         keys: Sequence[tuple[IdentifierKind, str]]) -> list[CredentialSeen]:
        """The credentials of ``keys`` (those seen) under ``org_path``, each exactly as
        :meth:`iter_credentials_seen` tallies it."""
        ...


__all__ = ["AdoptionTargets", "ClaimIssuer", "DeviceRegistration", "DiscoveryReader",
           "DiscoveryStore", "DiscoveryUnitOfWork", "Refusal", "RegisteredIdentities",
           "SightingRow", "SightingSink", "SightingSource"]


class AdoptionTargets(Protocol):
    """The discovered assets an admin brings under management (the ``Discovery`` service)."""

    def asset(self, principal: Principal, asset_id: str) -> DiscoveredAsset:
        """One asset in the caller's subtree (``NotFound`` otherwise)."""
        ...

    def mark_adopted(self, principal: Principal, adopted: Mapping[str, str]) -> None:
        """Record ``asset id -> device id``: the assets are now those devices (audited)."""
        ...


class DeviceRegistration(Protocol):
    """How adoption registers devices (the inventory's bulk import: row by row, G12)."""

    def import_devices(self, actor: Principal, rows: Sequence[tuple[int, dict[str, Any]]]
                       ) -> list[ImportRowResult]:
        """Register each row as a pending device; each lands whole or is reported."""
        ...


class ClaimIssuer(Protocol):
    """How adoption gives each new device its first enrollment (one-time claim tokens)."""

    def create_claims(self, actor: Principal, device_ids: list[str], ttl: timedelta
                      ) -> list[tuple[ClaimToken, str]]:
        """A claim per device, all or nothing; the plaintexts are shown once."""
        ...
