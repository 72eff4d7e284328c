"""SQL implementation of the firmware store (signers, images, rules, nonces, status)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from iotiam.attestation.models import (
    AttestationNonce,
    FirmwareImage,
    FirmwareRule,
    FirmwareSigner,
    FirmwareStatus,
    Measurement,
    SignerAlgorithm,
)
from iotiam.kernel import ancestor_paths
from iotiam.storage.rows import dump_json, load_json, one_of, under_path
from iotiam.storage.tables import attestation as t
from iotiam.storage.tables import inventory


class SqlFirmwareStore:
    """Firmware signers, images and rules, attestation nonces and device status in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def _upsert(self, table: Any) -> Any:
        return (pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert)(table)

    # -- signers -----------------------------------------------------------------------

    def add_signer(self, signer: FirmwareSigner) -> None:
        """Store a new signer."""
        self._c.execute(insert(t.firmware_signers).values(
            id=signer.id, name=signer.name, org_unit_id=signer.org_unit_id,
            org_path=signer.org_path, algorithm=str(signer.algorithm),
            public_key_pem=signer.public_key_pem, key_id=signer.key_id,
            created_at=signer.created_at, created_by=signer.created_by,
            revoked_at=signer.revoked_at, revoked_by=signer.revoked_by))

    def signer_by_name(self, org_unit_id: str, name: str) -> FirmwareSigner | None:
        """The signer ``name`` of one org unit."""
        s = t.firmware_signers.c
        row = self._c.execute(select(t.firmware_signers).where(
            s.org_unit_id == org_unit_id, s.name == name)).first()
        return _signer(row) if row else None

    def signers_under(self, org_path: str) -> list[FirmwareSigner]:
        """Signers inside the subtree."""
        s = t.firmware_signers.c
        rows = self._c.execute(select(t.firmware_signers).where(
            under_path(s.org_path, org_path)).order_by(s.org_path, s.name))
        return [_signer(r) for r in rows]

    def signers_over(self, org_path: str) -> list[FirmwareSigner]:
        """Signers at ``org_path`` or an ancestor (nearest first)."""
        s = t.firmware_signers.c
        rows = self._c.execute(select(t.firmware_signers).where(
            s.org_path.in_(ancestor_paths(org_path))))
        return sorted((_signer(r) for r in rows), key=lambda x: (-len(x.org_path), x.name))

    def revoke_signer(self, signer_id: str, at: datetime, by: str) -> bool:
        """Set ``revoked_at`` where it is still unset (one winner, like ``use_nonce``)."""
        s = t.firmware_signers.c
        result = self._c.execute(update(t.firmware_signers).where(
            s.id == signer_id, s.revoked_at.is_(None)).values(revoked_at=at, revoked_by=by))
        return result.rowcount == 1

    # -- images ------------------------------------------------------------------------

    def add_image(self, image: FirmwareImage) -> None:
        """Store a new image."""
        self._c.execute(insert(t.firmware_images).values(
            id=image.id, device_type=image.device_type, version=image.version,
            sha256=image.sha256, org_unit_id=image.org_unit_id, org_path=image.org_path,
            signer_id=image.signer_id, metadata_jws=image.metadata_jws,
            released_at=image.released_at, notes=image.notes, created_at=image.created_at,
            created_by=image.created_by))

    def replace_image(self, image: FirmwareImage) -> None:
        """Overwrite the image with the same id."""
        self._c.execute(update(t.firmware_images).where(t.firmware_images.c.id == image.id)
                        .values(sha256=image.sha256, signer_id=image.signer_id,
                                metadata_jws=image.metadata_jws,
                                released_at=image.released_at, notes=image.notes,
                                created_at=image.created_at, created_by=image.created_by))

    def images_of_signer(self, signer_id: str) -> list[FirmwareImage]:
        """Images the signer signed."""
        i = t.firmware_images.c
        rows = self._c.execute(select(t.firmware_images).where(i.signer_id == signer_id)
                               .order_by(i.device_type, i.created_at, i.id))
        return [_image(r) for r in rows]

    def images_under(self, org_path: str, device_type: str | None = None
                     ) -> list[FirmwareImage]:
        """Images inside the subtree, optionally of one device type."""
        i = t.firmware_images.c
        query = select(t.firmware_images).where(under_path(i.org_path, org_path))
        if device_type is not None:
            query = query.where(i.device_type == device_type)
        rows = self._c.execute(query.order_by(i.device_type, i.created_at, i.id))
        return [_image(r) for r in rows]

    def images_over(self, org_path: str, device_type: str) -> list[FirmwareImage]:
        """Images of the type registered at ``org_path`` or an ancestor."""
        i = t.firmware_images.c
        rows = self._c.execute(select(t.firmware_images).where(
            i.device_type == device_type, i.org_path.in_(ancestor_paths(org_path))))
        return [_image(r) for r in rows]

    # -- rules -------------------------------------------------------------------------

    def put_rule(self, rule: FirmwareRule) -> FirmwareRule | None:
        """Create or replace the rule of (org unit, device type); the previous one."""
        r = t.firmware_rules.c
        row = self._c.execute(select(t.firmware_rules).where(
            r.org_unit_id == rule.org_unit_id, r.device_type == rule.device_type)).first()
        values = {"org_path": rule.org_path, "min_version": rule.min_version,
                  "updated_at": rule.updated_at, "updated_by": rule.updated_by}
        self._c.execute(self._upsert(t.firmware_rules).values(
            org_unit_id=rule.org_unit_id, device_type=rule.device_type, **values)
            .on_conflict_do_update(index_elements=["org_unit_id", "device_type"], set_=values))
        return _rule(row) if row else None

    def rules_under(self, org_path: str) -> list[FirmwareRule]:
        """Rules inside the subtree."""
        r = t.firmware_rules.c
        rows = self._c.execute(select(t.firmware_rules).where(
            under_path(r.org_path, org_path)).order_by(r.device_type, r.org_path))
        return [_rule(x) for x in rows]

    def rules_over(self, org_path: str, device_type: str) -> list[FirmwareRule]:
        """Rules for the type at ``org_path`` or an ancestor."""
        r = t.firmware_rules.c
        rows = self._c.execute(select(t.firmware_rules).where(
            r.device_type == device_type, r.org_path.in_(ancestor_paths(org_path))))
        return [_rule(x) for x in rows]

    # -- nonces ------------------------------------------------------------------------

    def add_nonce(self, nonce: AttestationNonce) -> None:
        """Store a new nonce (its hash)."""
        self._c.execute(insert(t.attestation_nonces).values(
            nonce_hash=nonce.nonce_hash, device_id=nonce.device_id,
            created_at=nonce.created_at, expires_at=nonce.expires_at, used_at=nonce.used_at))

    def open_nonces(self, device_id: str, now: datetime) -> int:
        """Unused, unexpired nonces of the device."""
        n = t.attestation_nonces.c
        return int(self._c.execute(select(func.count()).select_from(t.attestation_nonces)
                                   .where(n.device_id == device_id, n.used_at.is_(None),
                                          n.expires_at > now)).scalar_one())

    def purge_nonces(self, device_id: str, now: datetime) -> int:
        """Delete the device's used or expired nonces."""
        n = t.attestation_nonces.c
        result = self._c.execute(delete(t.attestation_nonces).where(
            n.device_id == device_id, or_(n.used_at.is_not(None), n.expires_at <= now)))
        return int(result.rowcount)

    def nonce(self, nonce_hash: str) -> AttestationNonce | None:
        """A nonce by its hash."""
        row = self._c.execute(select(t.attestation_nonces).where(
            t.attestation_nonces.c.nonce_hash == nonce_hash)).first()
        if row is None:
            return None
        return AttestationNonce(nonce_hash=row.nonce_hash, device_id=row.device_id,
                                created_at=row.created_at, expires_at=row.expires_at,
                                used_at=row.used_at)

    def use_nonce(self, nonce_hash: str, device_id: str, now: datetime) -> bool:
        """Spend the nonce; on PostgreSQL a concurrent UPDATE waits for the row lock, then
        re-checks ``used_at IS NULL`` and matches nothing: one winner, like claims (G8)."""
        n = t.attestation_nonces.c
        result = self._c.execute(update(t.attestation_nonces).where(
            n.nonce_hash == nonce_hash, n.device_id == device_id, n.used_at.is_(None),
            n.expires_at > now).values(used_at=now))
        return result.rowcount == 1

    # -- device status -----------------------------------------------------------------

    def status(self, device_id: str) -> FirmwareStatus | None:
        """A device's status."""
        row = self._c.execute(select(t.device_firmware).where(
            t.device_firmware.c.device_id == device_id)).first()
        return _status(row) if row else None

    def statuses(self, device_ids: Sequence[str]) -> dict[str, FirmwareStatus]:
        """Statuses of those of ``device_ids`` that have one."""
        if not device_ids:
            return {}
        rows = self._c.execute(select(t.device_firmware).where(
            one_of(self._c, t.device_firmware.c.device_id, device_ids)))
        return {r.device_id: _status(r) for r in rows}

    def statuses_of_type(self, device_type: str, org_path: str
                         ) -> list[tuple[FirmwareStatus, str]]:
        """Statuses of the type's devices under ``org_path``, with the device's org path."""
        d, f = inventory.devices.c, t.device_firmware.c
        rows = self._c.execute(
            select(t.device_firmware, d.org_path.label("device_org_path"))
            .join(inventory.devices, and_(d.id == f.device_id))
            .where(d.type_name == device_type, under_path(d.org_path, org_path))
            .order_by(f.device_id))
        return [(_status(r), r.device_org_path) for r in rows]

    def unmatched_statuses(self, device_type: str, org_path: str, firmware_hash: str
                           ) -> list[tuple[FirmwareStatus, str]]:
        """Image-less statuses of the type's devices under ``org_path`` with that hash: a
        join over the subtree's devices like ``statuses_of_type`` (no index on the hash:
        only an admin registering an image asks)."""
        d, f = inventory.devices.c, t.device_firmware.c
        rows = self._c.execute(
            select(t.device_firmware, d.org_path.label("device_org_path"))
            .join(inventory.devices, d.id == f.device_id)
            .where(d.type_name == device_type, under_path(d.org_path, org_path),
                   f.image_id.is_(None), func.lower(f.firmware_hash) == firmware_hash.lower())
            .order_by(f.device_id))
        return [(_status(r), r.device_org_path) for r in rows]

    def statuses_of_signer(self, signer_id: str) -> list[FirmwareStatus]:
        """Statuses naming one of the signer's images."""
        f, i = t.device_firmware.c, t.firmware_images.c
        rows = self._c.execute(
            select(t.device_firmware).join(t.firmware_images, i.id == f.image_id)
            .where(i.signer_id == signer_id).order_by(f.device_id))
        return [_status(r) for r in rows]

    def put_status(self, status: FirmwareStatus, at: datetime) -> bool:
        """Upsert; a change of ``compliant`` moves the device's ``updated_at`` (the broker
        sync and the decision caches watch it, as with group changes)."""
        f = t.device_firmware.c
        previous = self._c.execute(select(f.compliant).where(
            f.device_id == status.device_id)).first()
        values = {
            "firmware_version": status.firmware_version,
            "firmware_hash": status.firmware_hash, "image_id": status.image_id,
            "compliant": status.compliant, "reason": status.reason[:2000],
            "measurements": dump_json([{"name": m.name, "digest": m.digest}
                                       for m in status.measurements]),
            "attested_at": status.attested_at,
        }
        self._c.execute(self._upsert(t.device_firmware)
                        .values(device_id=status.device_id, **values)
                        .on_conflict_do_update(index_elements=["device_id"], set_=values))
        changed = previous is None or bool(previous.compliant) != status.compliant
        if changed:
            self._c.execute(update(inventory.devices)
                            .where(inventory.devices.c.id == status.device_id)
                            .values(updated_at=at))
        return changed


def _signer(row: Any) -> FirmwareSigner:
    return FirmwareSigner(
        id=row.id, name=row.name, org_unit_id=row.org_unit_id, org_path=row.org_path,
        algorithm=SignerAlgorithm(row.algorithm), public_key_pem=row.public_key_pem,
        key_id=row.key_id, created_at=row.created_at, created_by=row.created_by,
        revoked_at=row.revoked_at, revoked_by=row.revoked_by)


def _image(row: Any) -> FirmwareImage:
    return FirmwareImage(
        id=row.id, device_type=row.device_type, version=row.version, sha256=row.sha256,
        org_unit_id=row.org_unit_id, org_path=row.org_path, signer_id=row.signer_id,
        metadata_jws=row.metadata_jws, created_at=row.created_at, created_by=row.created_by,
        released_at=row.released_at, notes=row.notes)


def _rule(row: Any) -> FirmwareRule:
    return FirmwareRule(
        org_unit_id=row.org_unit_id, org_path=row.org_path, device_type=row.device_type,
        min_version=row.min_version, updated_at=row.updated_at, updated_by=row.updated_by)


def _status(row: Any) -> FirmwareStatus:
    return FirmwareStatus(
        device_id=row.device_id, firmware_version=row.firmware_version,
        firmware_hash=row.firmware_hash, compliant=bool(row.compliant), reason=row.reason,
        attested_at=row.attested_at, image_id=row.image_id,
        measurements=tuple(Measurement(name=m["name"], digest=m["digest"])
                           for m in load_json(row.measurements)))
