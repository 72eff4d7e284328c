"""The discovery store and the registered identities, in memory."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from iotiam.discovery.credentials_seen import CredentialTally
from iotiam.discovery.models import (
    Binding,
    CredentialSeen,
    DevicePresence,
    DeviceSeen,
    DiscoveredAsset,
    IdentifierKind,
    Match,
    RegisteredDevice,
    Sighting,
    normalize_hostname,
    normalize_ip,
    normalize_mac,
)
from iotiam.discovery.ports import SightingRow
from iotiam.errors import InvalidInput
from iotiam.testing.fakes.credentials import MemoryPskStore
from iotiam.testing.fakes.inventory import MemoryDeviceStore
from iotiam.testing.fakes.memory import MemoryStore, under
from iotiam.testing.fakes.pki import MemoryCaStore, MemoryCertificateStore

Kind = IdentifierKind


@dataclass
class MemoryDiscoveryStore(MemoryStore):
    """``DiscoveryStore``: sighting digests, credential sightings by digest, assets by id,
    bindings by key."""

    #: every claimed sighting digest
    digests: set[bytes] = field(default_factory=set)
    #: the sightings that show a credential
    sightings: dict[bytes, tuple[Sighting, str, Match]] = field(default_factory=dict)
    stored_assets: dict[str, DiscoveredAsset] = field(default_factory=dict)
    bindings: dict[tuple[IdentifierKind, str, str], Binding] = field(default_factory=dict)
    presence: dict[str, DevicePresence] = field(default_factory=dict)

    def begin_import(self) -> None:
        """The memory database has one writer at a time already."""

    def claim_digests(self, digests: Sequence[bytes]) -> set[bytes]:
        """Record these digests; the new ones."""
        fresh = set(digests) - self.digests
        self.digests |= fresh
        return fresh

    def bindings_for(self, kind: IdentifierKind, values: Sequence[str], *,
                     org_path: str) -> Mapping[str, Binding]:
        """``value -> binding`` under ``org_path`` (its own first, else the latest)."""
        wanted = set(values)
        found: dict[str, Binding] = {}
        for (k, value, path), binding in sorted(self.bindings.items()):
            if k is not kind or value not in wanted or not under(path, org_path):
                continue
            old = found.get(value)
            if old is None or (old.org_path != org_path and (
                    path == org_path or binding.last_seen > old.last_seen)):
                found[value] = binding
        return found

    def assets_by_id(self, asset_ids: Sequence[str]) -> Mapping[str, DiscoveredAsset]:
        """These assets, without identifiers."""
        return {a: self.stored_assets[a] for a in asset_ids if a in self.stored_assets}

    def presence_for(self, device_ids: Sequence[str]) -> Mapping[str, DevicePresence]:
        """These devices' presence."""
        return {d: self.presence[d] for d in device_ids if d in self.presence}

    def merge_assets(self, merged: Mapping[str, str]) -> None:
        """Move the gone assets' bindings and sightings, then delete them."""
        for gone, kept in merged.items():
            for key, binding in list(self.bindings.items()):
                if binding.asset_id == gone:
                    self.bindings[key] = binding._replace(asset_id=kept)
            for digest, (sighting, path, match) in list(self.sightings.items()):
                if match.asset_id == gone:
                    self.sightings[digest] = (sighting, path, match._replace(asset_id=kept))
            self.stored_assets.pop(gone, None)

    def save_assets(self, assets: Sequence[DiscoveredAsset]) -> None:
        """Insert or replace."""
        for asset in assets:
            self.stored_assets[asset.id] = asset._replace(identifiers=())

    def save_bindings(self, bindings: Sequence[Binding]) -> None:
        """Insert or replace."""
        for binding in bindings:
            self.bindings[(binding.kind, binding.value, binding.org_path)] = binding

    def save_presence(self, presence: Sequence[DevicePresence]) -> None:
        """Insert or replace."""
        for row in presence:
            self.presence[row.device_id] = row

    def add_sightings(self, rows: Sequence[SightingRow]) -> None:
        """Keep the rows that show a credential."""
        for sighting, digest, path, match in rows:
            if sighting.certificate or sighting.psk_identity or (
                    sighting.issuer and sighting.serial):
                self.sightings.setdefault(digest, (sighting, path, match))

    def _with_identifiers(self, asset: DiscoveredAsset) -> DiscoveredAsset:
        found = sorted({(b.kind, b.value.rpartition("|")[2].partition("@")[0]
                         if b.kind in (Kind.IP, Kind.HOSTNAME) else b.value)
                        for b in self.bindings.values() if b.asset_id == asset.id},
                       key=lambda item: (list(Kind).index(item[0]), item[1]))
        return asset._replace(identifiers=tuple(found))

    def asset(self, asset_id: str) -> DiscoveredAsset | None:
        """One asset with its identifiers."""
        found = self.stored_assets.get(asset_id)
        return None if found is None else self._with_identifiers(found)

    def _selected(self, org_path: str, status: str | None, site: str | None,
                  source: str | None) -> list[DiscoveredAsset]:
        return [a for _, a in sorted(self.stored_assets.items())
                if under(a.org_path, org_path) and status in (None, a.status)
                and site in (None, a.site) and (source is None or source in a.sources)]

    def assets(self, *, org_path: str, after: str | None = None, limit: int = 100,
               status: str | None = None, site: str | None = None,
               source: str | None = None) -> list[DiscoveredAsset]:
        """A page in id order."""
        selected = [a for a in self._selected(org_path, status, site, source)
                    if after is None or a.id > after]
        return [self._with_identifiers(a) for a in selected[:limit]]

    def count_assets(self, *, org_path: str, status: str | None = None,
                     site: str | None = None, source: str | None = None) -> int:
        """How many the filters select."""
        return len(self._selected(org_path, status, site, source))

    def iter_assets(self, *, org_path: str) -> Iterator[DiscoveredAsset]:
        """Every asset under ``org_path``."""
        for asset in self._selected(org_path, None, None, None):
            yield self._with_identifiers(asset)

    def iter_devices_seen(self, *, org_path: str) -> Iterator[DeviceSeen]:
        """Every device's presence under ``org_path``, by device id."""
        for device_id in sorted(self.presence):
            row = self.presence[device_id]
            if under(row.org_path, org_path):
                yield row.seen()

    def iter_credentials_seen(self, *, org_path: str) -> Iterator[CredentialSeen]:
        """Every credential the sightings under ``org_path`` carried."""
        tally = CredentialTally(org_path)
        for sighting, path, match in self.sightings.values():
            if under(path, org_path):
                tally.add(sighting, match.device_id, match.asset_id)
        yield from tally.results()

    def devices_seen(self, *, org_path: str, device_ids: Sequence[str]) -> list[DeviceSeen]:
        """These devices' presence under ``org_path``, by device id."""
        wanted = set(device_ids)
        return [s for s in self.iter_devices_seen(org_path=org_path) if s.device_id in wanted]

    def credentials_seen(self, *, org_path: str,
                         keys: Sequence[tuple[IdentifierKind, str]]) -> list[CredentialSeen]:
        """The credentials of ``keys`` under ``org_path``."""
        wanted = set(keys)
        return [c for c in self.iter_credentials_seen(org_path=org_path)
                if (c.kind, c.value) in wanted]


@functools.lru_cache(maxsize=64)
def ca_subject(pem: str) -> str | None:
    """A CA's subject as RFC 4514 text (None for what is not a certificate)."""
    try:
        return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()
    except ValueError:
        return None


class MemoryRegisteredIdentities:
    """``RegisteredIdentities`` over the memory inventory, certificates and PSKs."""

    def __init__(self, devices: MemoryDeviceStore, certificates: MemoryCertificateStore,
                 psks: MemoryPskStore, cas: MemoryCaStore) -> None:
        self._devices = devices
        self._certificates = certificates
        self._psks = psks
        self._cas = cas

    def devices_for(self, kind: IdentifierKind, values: Sequence[str], *,
                    org_path: str) -> Mapping[str, RegisteredDevice]:
        """``value -> device`` for values a device under ``org_path`` has."""
        wanted = set(values)
        found: dict[str, RegisteredDevice] = {}
        for value, device_id in self._candidates(kind, wanted):
            device = self._devices.devices.get(device_id)
            if value in wanted and device is not None and under(device.org_path, org_path):
                found.setdefault(value, RegisteredDevice(device.id, device.org_path))
        return found

    def _candidates(self, kind: IdentifierKind, wanted: set[str]
                    ) -> Iterator[tuple[str, str]]:
        if kind is Kind.CERTIFICATE:
            for cert in self._certificates.certificates.values():
                if cert.device_id and cert.fingerprint_sha256:
                    yield cert.fingerprint_sha256, cert.device_id
        elif kind is Kind.ISSUER_SERIAL:
            subjects = {ca.id: ca_subject(ca.certificate_pem) for ca in self._cas.cas.values()}
            for cert in self._certificates.certificates.values():
                if cert.device_id and subjects.get(cert.issuer_id):
                    yield f"{subjects[cert.issuer_id]}|{cert.serial:x}", cert.device_id
        elif kind is Kind.PSK_IDENTITY:
            for psk in self._psks.psks.values():
                yield psk.identity, psk.device_id
        elif kind is Kind.CLIENT_ID:
            for device_id in self._devices.devices:
                yield device_id, device_id
        else:
            yield from self._attributes(kind)

    def _attributes(self, kind: IdentifierKind) -> Iterator[tuple[str, str]]:
        normalize = {Kind.MAC: normalize_mac, Kind.HOSTNAME: normalize_hostname,
                     Kind.IP: normalize_ip}[kind]
        for device in self._devices.devices.values():
            raw = device.attributes.get(str(kind))
            if not raw or (kind is Kind.IP and str(device.state) == "decommissioned"):
                continue  # a retired device holds no address: its old one is handed on
            try:
                value = normalize(raw)
            except InvalidInput:
                continue
            yield (f"{device.site or ''}|{value}" if kind is Kind.IP else value), device.id
