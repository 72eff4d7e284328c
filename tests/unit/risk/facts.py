"""Values the risk tests judge: devices, types, certificates, PSKs, sightings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iotiam.credentials.models import Psk, PskStatus
from iotiam.discovery.models import (
    AssetStatus,
    CredentialSeen,
    DeviceSeen,
    DiscoveredAsset,
    IdentifierKind,
)
from iotiam.inventory.models import (
    Criticality,
    Device,
    DeviceClass,
    DeviceState,
    DeviceType,
    RotationPolicy,
)
from iotiam.pki.models import CertificateRecord, CertificateStatus

NOW_DT = datetime(2026, 6, 1, tzinfo=UTC)
NOW = NOW_DT.timestamp()
DAY = 86400.0


def ago(days: float) -> datetime:
    return NOW_DT - timedelta(days=days)


def device_type(name: str = "sensor", cls: DeviceClass = DeviceClass.SENSOR,
                criticality: Criticality = Criticality.LOW, max_age_days: int = 30) -> DeviceType:
    return DeviceType(name, cls, criticality, "", "device", ago(400),
                      RotationPolicy(max_credential_age=timedelta(days=max_age_days)))


def device(ident: str = "dev-1", *, type_name: str = "sensor", org: str = "/root/acme/",
           state: DeviceState = DeviceState.ACTIVE, updated_days: float = 1,
           site: str | None = "plant-1") -> Device:
    return Device(ident, type_name, org.strip("/").split("/")[-1], org, state, site, None, {},
                  ago(300), ago(updated_days))


def cert(device_id: str = "dev-1", *, serial: int = 0x1234, issued_days: float = 10,
         lifetime_days: float = 90, status: CertificateStatus = CertificateStatus.ISSUED,
         key: str = "k1", fingerprint: str | None = None, revoked_days: float | None = None,
         issuer: str = "issuing-1", org: str = "/root/acme/") -> CertificateRecord:
    not_before = ago(issued_days)
    return CertificateRecord(
        issuer, serial, device_id, "acme", org, "device", f"CN={device_id}", not_before,
        not_before + timedelta(days=lifetime_days), status,
        fingerprint or f"{serial:064x}", None, not_before,
        revoked_at=ago(revoked_days) if revoked_days is not None else None,
        public_key_sha256=key)


def psk(device_id: str = "dev-1", identity: str = "dev-1-psk", *, created_days: float = 5,
        status: PskStatus = PskStatus.ACTIVE, revoked_days: float | None = None,
        org: str = "/root/acme/") -> Psk:
    return Psk(f"psk-{identity}", identity, device_id, org, b"", status, ago(created_days),
               None, revoked_at=ago(revoked_days) if revoked_days is not None else None)


def seen_cert(fingerprint: str, *, last_days: float = 0, devices: tuple[str, ...] = (),
              assets: tuple[str, ...] = (), issuer: str | None = "CN=Other CA",
              key: str | None = None, signature_hash: str | None = None,
              not_after_days: float | None = None,
              places: tuple[tuple[str | None, str], ...] = (),
              org: str = "/root/acme/") -> CredentialSeen:
    return CredentialSeen(IdentifierKind.CERTIFICATE, fingerprint, org, NOW - last_days * DAY,
                          devices, assets, places, issuer, "ab", "CN=x",
                          NOW + not_after_days * DAY if not_after_days is not None else None,
                          key, signature_hash)


def seen_psk(identity: str, *, devices: tuple[str, ...] = (), assets: tuple[str, ...] = (),
             last_days: float = 0, org: str = "/root/acme/") -> CredentialSeen:
    return CredentialSeen(IdentifierKind.PSK_IDENTITY, identity, org, NOW - last_days * DAY,
                          devices, assets)


def seen_device(device_id: str, *, last_days: float = 0,
                places: tuple[tuple[str | None, str], ...] = ()) -> DeviceSeen:
    return DeviceSeen(device_id, "/root/acme/", NOW - 100 * DAY, NOW - last_days * DAY,
                      ("nmap",), 3, places)


def asset(ident: str = "ast-1", *, ports: tuple[int, ...] = (),
          identifiers: tuple[tuple[IdentifierKind, str], ...] = (
              (IdentifierKind.MAC, "aa:bb:cc:dd:ee:ff"),),
          org: str = "/root/acme/", status: AssetStatus = AssetStatus.UNMANAGED
          ) -> DiscoveredAsset:
    return DiscoveredAsset(ident, org, status, NOW - 10 * DAY, NOW - DAY, ("nmap",),
                           identifiers, 4, site="plant-1", ip="10.0.0.9",
                           mac="aa:bb:cc:dd:ee:ff", open_ports=ports)
