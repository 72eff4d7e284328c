"""Manufacturer trust: registered IDevID CAs and their manufacturing manifests.

Like AWS IoT's just-in-time provisioning: an admin registers the CA a manufacturer
signs device identities with, says where its devices land (org unit, device type)
and imports the manifest of serials it shipped. Devices then enroll on first contact
with nothing but their IDevID (see ``first_contact``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import ManufacturerTrustChanged
from iotiam.clock import Clock
from iotiam.enrollment import idevid
from iotiam.enrollment.manifest import parse_row, serial_of
from iotiam.enrollment.models import ManifestEntry, ManifestRowResult, Manufacturer
from iotiam.enrollment.ports import EnrollmentUnitOfWork
from iotiam.errors import Conflict, IamError, IdNotAvailable, InvalidInput, NotFound
from iotiam.inventory.models import check_identifier
from iotiam.kernel import Principal, Role, Transactions, within

MAX_MANIFEST_ROWS = 5000
DEFAULT_DEVICE_TYPE = "sensor"


def _visible(uow: EnrollmentUnitOfWork, actor: Principal, name: str) -> Manufacturer:
    maker = uow.manufacturers.get(name)
    if maker is None or not actor.sees(maker.org_path):
        raise NotFound(f"manufacturer {name[:128]!r} not found")
    return maker


class Manufacturers:
    """Register manufacturer CAs and import their manifests."""

    def __init__(self, uow: Transactions[EnrollmentUnitOfWork], clock: Clock,
                 audit: Auditor) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit

    def trust_anchors(self) -> list[str]:
        """PEM of every registered manufacturer CA (for the TLS layer, not for tenants)."""
        with self._uow.reading() as uow:
            return [m.certificate_pem for m in uow.manufacturers.list_all()]

    def register(
        self, actor: Principal, *, name: str, certificate_pem: str,
        org_unit_id: str | None = None, device_type: str = DEFAULT_DEVICE_TYPE,
    ) -> Manufacturer:
        """Trust a manufacturer CA for first contact; its devices land in ``org_unit_id``."""
        draft = AuditDraft(tag=AuditTag.MANUFACTURER_REGISTERED, actor=actor.name,
                           org_path=actor.org_path, subject=f"manufacturer:{name[:128]}")
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "registering manufacturers")
            check_identifier(name, "manufacturer name")
            now = self._clock.now()
            ca = idevid.load_ca_certificate(certificate_pem, now)
            fingerprint = idevid.certificate_sha256(ca)
            with self._uow() as uow:
                unit_id = org_unit_id or actor.org_unit_id
                unit = uow.org_units.get(unit_id)
                if unit is None or not actor.sees(unit.path):
                    raise NotFound(f"org unit {unit_id[:128]!r} not found")
                if uow.device_types.get(device_type) is None:
                    raise InvalidInput(f"unknown device type {device_type!r}")
                if uow.manufacturers.get(name) is not None:
                    raise IdNotAvailable("manufacturer name", name)
                if uow.manufacturers.by_fingerprint(fingerprint) is not None:
                    raise Conflict("this CA certificate is already registered as a manufacturer")
                if any(idevid.certificate_sha256(x509.load_pem_x509_certificate(
                        own.certificate_pem.encode())) == fingerprint
                       for own in uow.cas.list_all()):
                    raise InvalidInput("this is one of iotiam's own CAs, not a manufacturer's")
                maker = Manufacturer(
                    name=name, org_unit_id=unit.id, org_path=unit.path,
                    device_type=device_type,
                    certificate_pem=ca.public_bytes(serialization.Encoding.PEM).decode(),
                    subject=ca.subject.rfc4514_string()[:1024], fingerprint_sha256=fingerprint,
                    not_after=ca.not_valid_after_utc, created_at=now, created_by=actor.name,
                )
                uow.manufacturers.add(maker)
                # the TLS layer of every process trusts it for the handshake
                uow.changes.record(ManufacturerTrustChanged(name))
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.MANUFACTURER_REGISTERED, actor=actor.name,
                    org_path=unit.path, subject=f"manufacturer:{name}",
                    details={"subject": maker.subject, "sha256": fingerprint,
                             "org": unit.id, "type": device_type,
                             "not_after": maker.not_after.isoformat()},
                ))
        return maker

    def list_manufacturers(self, actor: Principal) -> list[tuple[Manufacturer, int]]:
        """Manufacturers in the caller's subtree, with the size of their manifests."""
        with self._uow.reading() as uow:
            return [(m, uow.manifest.count(m.name))
                    for m in uow.manufacturers.list_under(actor.org_path)]

    def get(self, actor: Principal, name: str) -> tuple[Manufacturer, int]:
        """One manufacturer the caller may see, with the size of its manifest."""
        with self._uow.reading() as uow:
            maker = _visible(uow, actor, name)
            return maker, uow.manifest.count(maker.name)

    def import_manifest(
        self, actor: Principal, name: str, rows: Sequence[tuple[int, Any]]
    ) -> list[ManifestRowResult]:
        """Add serials to a manufacturer's manifest; each row lands or is reported."""
        draft = AuditDraft(tag=AuditTag.MANIFEST_IMPORTED, actor=actor.name,
                           org_path=actor.org_path, subject=f"manufacturer:{name[:128]}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.ADMIN, "importing manufacturing manifests")
            if not 1 <= len(rows) <= MAX_MANIFEST_ROWS:
                raise InvalidInput(f"between 1 and {MAX_MANIFEST_ROWS} rows per request; "
                                   "send chunks")
            maker = _visible(uow, actor, name)
            now = self._clock.now()
            results: list[ManifestRowResult] = []
            added: list[str] = []
            for number, raw in rows:
                try:
                    if self._import_row(uow, maker, raw, now):
                        added.append(serial_of(raw) or "")
                except IamError as e:
                    results.append(ManifestRowResult(number, serial_of(raw), False, e.detail))
                    continue
                results.append(ManifestRowResult(number, serial_of(raw), True))
            failed = [r for r in results if not r.ok]
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.MANIFEST_IMPORTED, actor=actor.name, org_path=maker.org_path,
                subject=f"manufacturer:{maker.name}",
                details={"added": len(added), "unchanged": len(results) - len(failed)
                         - len(added), "failed": len(failed),
                         "serials": added[:1000],
                         "failed_rows": [{"row": r.row, "error": r.error}
                                         for r in failed][:100]},
            ))
        return results

    @staticmethod
    def _import_row(uow: EnrollmentUnitOfWork, maker: Manufacturer, raw: Any, now: datetime
                    ) -> bool:
        """Store one row; False when the manifest already held it (re-imports are no-ops)."""
        row = parse_row(raw)
        existing = uow.manifest.get(row.serial)
        if existing is not None:
            if existing.manufacturer != maker.name:
                # held by another manufacturer, maybe another tenant's: not said (G9)
                raise IdNotAvailable("device id", row.serial)
            if row.public_key_sha256 is None or row.public_key_sha256 == \
                    existing.public_key_sha256:
                return False
            if existing.public_key_sha256 is not None:
                raise Conflict(f"serial {row.serial!r} is already in this manifest with "
                               "another key")
            uow.manifest.pin_key(row.serial, row.public_key_sha256)
            return False
        device = uow.devices.get(row.serial)
        if device is not None and not within(device.org_path, maker.org_path):
            raise IdNotAvailable("device id", row.serial)  # whose it is is not said (G9)
        with uow.savepoint():
            uow.manifest.add(ManifestEntry(manufacturer=maker.name, serial=row.serial,
                                           imported_at=now,
                                           public_key_sha256=row.public_key_sha256,
                                           batch=row.batch))
        return True
