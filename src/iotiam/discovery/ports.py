"""What the discovery domain needs from the outside, and what it offers the risk register."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Protocol

from iotiam.discovery.models import (
    CredentialSeen,
    DeviceSeen,
    DiscoveredAsset,
    IdentifierKind,
    Refusal,
    Sighting,
    SourceContext,
)


class SightingSource(Protocol):
    """One kind of input (an nmap XML, a leases file, a Zeek log ...), read as a stream.

    ``read`` yields a sighting or a refusal per record, in input order, holding no more
    than one record in memory: a million-line file is read in bounded memory. It raises
    nothing for a bad record (that is a ``Refusal``); it raises ``InvalidInput`` only when
    the input as a whole is not of its kind (an nmap source given a CSV).
    """

    #: the name users give ``--source`` (``nmap``, ``dhcpd`` ...)
    name: str

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """The sightings in ``stream``."""
        ...


class RegisteredIdentities(Protocol):
    """The identifiers registered devices are known by (read from inventory, pki, PSKs).

    A device is known by the fingerprints and issuer+serial of every certificate it was
    issued, its PSK identities, its id (its MQTT client id and username), and the
    ``mac``, ``hostname`` and ``ip`` attributes an admin gave it.
    """

    def devices_for(self, kind: IdentifierKind, values: Sequence[str], *,
                    org_path: str) -> Mapping[str, str]:
        """``value -> device id`` for the values some device under ``org_path`` has."""
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
    """Sightings, discovered assets and the identifiers that join them."""

    def add_sightings(self, rows: Sequence[tuple[Sighting, str, str | None, str | None]]
                      ) -> int:
        """Store ``(sighting, org_path, device_id, asset_id)`` rows whose digest is new;
        how many were new."""
        ...

    def known_digests(self, digests: Sequence[bytes]) -> set[bytes]:
        """Which of these sighting digests are already stored."""
        ...

    def assets_for(self, kind: IdentifierKind, values: Sequence[str], *,
                   org_path: str) -> Mapping[str, str]:
        """``value -> asset id`` for the values a discovered asset under ``org_path`` has."""
        ...

    def asset(self, asset_id: str) -> DiscoveredAsset | None:
        """One asset."""
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


__all__ = ["DiscoveryReader", "DiscoveryStore", "Refusal", "RegisteredIdentities",
           "SightingSink", "SightingSource"]
