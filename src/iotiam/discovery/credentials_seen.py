"""Credentials as the sightings showed them: one tally per certificate or PSK identity.

Both stores read ``iter_credentials_seen`` through this, so the rule is written once:
a certificate is known by its fingerprint, else by its issuer and serial; the places are
those within ``IP_BINDING_SECONDS`` of its last sighting.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from iotiam.discovery.models import (
    IP_BINDING_SECONDS,
    CredentialSeen,
    IdentifierKind,
    Sighting,
)

Key = tuple[IdentifierKind, str]


def credential_keys(sighting: Sighting) -> list[Key]:
    """The credentials a sighting shows."""
    keys: list[Key] = []
    if sighting.certificate:
        keys.append((IdentifierKind.CERTIFICATE, sighting.certificate))
    elif sighting.issuer and sighting.serial:
        keys.append((IdentifierKind.ISSUER_SERIAL, f"{sighting.issuer}|{sighting.serial}"))
    if sighting.psk_identity:
        keys.append((IdentifierKind.PSK_IDENTITY, sighting.psk_identity))
    return keys


@dataclass
class _Tally:
    last_seen: float
    newest: Sighting
    devices: set[str] = field(default_factory=set)
    assets: set[str] = field(default_factory=set)
    places: dict[tuple[str | None, str], float] = field(default_factory=dict)


class CredentialTally:
    """Adds up sightings into one :class:`CredentialSeen` per credential (memory: one
    small tally per credential, never the sightings)."""

    def __init__(self, org_path: str) -> None:
        self._org_path = org_path
        self._tallies: dict[Key, _Tally] = {}

    def add(self, sighting: Sighting, device_id: str | None, asset_id: str | None) -> None:
        """Count one sighting for each credential it shows."""
        for key in credential_keys(sighting):
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally(sighting.seen_at, sighting)
            elif sighting.seen_at > tally.last_seen:
                tally.last_seen, tally.newest = sighting.seen_at, sighting
            if device_id:
                tally.devices.add(device_id)
            if asset_id:
                tally.assets.add(asset_id)
            if sighting.ip:
                place = (sighting.site, sighting.ip)
                tally.places[place] = max(sighting.seen_at, tally.places.get(place, 0.0))

    def results(self) -> Iterator[CredentialSeen]:
        """Each credential, in (kind, value) order."""
        for (kind, value), tally in sorted(self._tallies.items()):
            newest = tally.newest
            places = sorted((p for p, at in tally.places.items()
                             if at >= tally.last_seen - IP_BINDING_SECONDS),
                            key=lambda p: (p[0] or "", p[1]))
            yield CredentialSeen(
                kind=kind, value=value, org_path=self._org_path, last_seen=tally.last_seen,
                device_ids=tuple(sorted(tally.devices)), asset_ids=tuple(sorted(tally.assets)),
                places=tuple(places), issuer=newest.issuer, serial=newest.serial,
                subject=newest.subject, not_after=newest.not_after, key=newest.key,
                signature_hash=newest.signature_hash)
