"""SQL implementation of the enrollment stores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from iotiam.enrollment.models import (
    ClaimToken,
    EnrollmentRequest,
    HoldReason,
    ManifestEntry,
    Manufacturer,
    RequestStatus,
)
from iotiam.storage.raw import RawSql, RawStatement, row_object, select_sql
from iotiam.storage.rows import under_path
from iotiam.storage.tables import enrollment as t


class SqlClaimTokenStore:
    """Claim tokens in SQL; redemption is one conditional UPDATE, so it wins exactly once."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, token: ClaimToken) -> None:
        """Store a new token."""
        self._c.execute(
            insert(t.claim_tokens).values(
                id=token.id,
                device_id=token.device_id,
                org_path=token.org_path,
                secret_hash=token.secret_hash,
                created_at=token.created_at,
                expires_at=token.expires_at,
                created_by=token.created_by,
                used_at=token.used_at,
            )
        )

    def get(self, token_id: str) -> ClaimToken | None:
        """One token by id (hot: every claim enrollment)."""
        row = RawSql(self._c).first(_GET_CLAIM, {"id": token_id})
        return _claim(row_object(_CLAIM_COLUMNS, row, _CLAIM_TIMES)) if row else None

    def redeem(self, token_id: str, at: datetime) -> bool:
        """Mark used if unused and unexpired (G8: the row update is the lock)."""
        raw = RawSql(self._c)
        return raw.change(_REDEEM_CLAIM, {"id": token_id, "at": raw.when(at)}) == 1

    def for_device(self, device_id: str) -> list[ClaimToken]:
        """Every token of a device, oldest first."""
        rows = self._c.execute(
            select(t.claim_tokens)
            .where(t.claim_tokens.c.device_id == device_id)
            .order_by(t.claim_tokens.c.created_at)
        )
        return [_claim(r) for r in rows]

    def expire_for_device(self, device_id: str, at: datetime) -> int:
        """End every unused, unexpired token of a device now."""
        c = t.claim_tokens.c
        result = self._c.execute(
            update(t.claim_tokens)
            .where(c.device_id == device_id, c.used_at.is_(None), c.expires_at > at)
            .values(expires_at=at)
        )
        return int(result.rowcount)


_CLAIM_COLUMNS = ("id", "device_id", "org_path", "secret_hash", "created_at", "expires_at",
                  "created_by", "used_at")
_CLAIM_TIMES = frozenset({"created_at", "expires_at", "used_at"})
# every EST enrollment with a claim runs these two: hand-written (see storage/raw.py)
_GET_CLAIM = RawStatement(select_sql("claim_tokens", _CLAIM_COLUMNS, "id = :id"))
_REDEEM_CLAIM = RawStatement(
    "UPDATE claim_tokens SET used_at = :at "
    "WHERE id = :id AND used_at IS NULL AND expires_at > :at")


def _claim(row: Any) -> ClaimToken:
    return ClaimToken(
        id=row.id,
        device_id=row.device_id,
        org_path=row.org_path,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        expires_at=row.expires_at,
        created_by=row.created_by,
        used_at=row.used_at,
    )


class SqlManufacturerStore:
    """Manufacturer CAs in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, manufacturer: Manufacturer) -> None:
        """Store a new manufacturer."""
        m = manufacturer
        self._c.execute(insert(t.manufacturers).values(
            name=m.name, org_unit_id=m.org_unit_id, org_path=m.org_path,
            device_type=m.device_type, certificate_pem=m.certificate_pem, subject=m.subject,
            fingerprint_sha256=m.fingerprint_sha256, not_after=m.not_after,
            created_at=m.created_at, created_by=m.created_by,
        ))

    def get(self, name: str) -> Manufacturer | None:
        """One manufacturer by name."""
        row = self._c.execute(
            select(t.manufacturers).where(t.manufacturers.c.name == name)).first()
        return _manufacturer(row) if row else None

    def by_fingerprint(self, fingerprint_sha256: str) -> Manufacturer | None:
        """The manufacturer registered with this CA certificate."""
        row = self._c.execute(select(t.manufacturers).where(
            t.manufacturers.c.fingerprint_sha256 == fingerprint_sha256)).first()
        return _manufacturer(row) if row else None

    def list_all(self) -> list[Manufacturer]:
        """Every manufacturer, by name."""
        rows = self._c.execute(select(t.manufacturers).order_by(t.manufacturers.c.name))
        return [_manufacturer(r) for r in rows]

    def list_under(self, org_path: str) -> list[Manufacturer]:
        """Manufacturers inside the subtree at ``org_path``, by name."""
        rows = self._c.execute(
            select(t.manufacturers)
            .where(under_path(t.manufacturers.c.org_path, org_path))
            .order_by(t.manufacturers.c.name)
        )
        return [_manufacturer(r) for r in rows]


class SqlManifestStore:
    """Manifest entries in SQL; the serial is the primary key, so it has one manufacturer."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, entry: ManifestEntry) -> None:
        """Store an entry."""
        self._c.execute(insert(t.manifest_entries).values(
            manufacturer=entry.manufacturer, serial=entry.serial,
            public_key_sha256=entry.public_key_sha256, imported_at=entry.imported_at,
            enrolled_at=entry.enrolled_at, batch=entry.batch,
        ))

    def get(self, serial: str) -> ManifestEntry | None:
        """The entry of a serial."""
        row = self._c.execute(
            select(t.manifest_entries).where(t.manifest_entries.c.serial == serial)).first()
        return _manifest_entry(row) if row else None

    def count(self, manufacturer: str) -> int:
        """How many serials a manufacturer's manifest lists."""
        return int(self._c.execute(
            select(func.count()).select_from(t.manifest_entries)
            .where(t.manifest_entries.c.manufacturer == manufacturer)).scalar_one())

    def pin_key(self, serial: str, public_key_sha256: str) -> bool:
        """Set the key of an entry that has none (one conditional UPDATE)."""
        c = t.manifest_entries.c
        result = self._c.execute(
            update(t.manifest_entries)
            .where(c.serial == serial, c.public_key_sha256.is_(None))
            .values(public_key_sha256=public_key_sha256)
        )
        return result.rowcount == 1

    def mark_enrolled(self, serial: str, at: datetime) -> None:
        """Remember the first enrollment of a serial."""
        c = t.manifest_entries.c
        self._c.execute(
            update(t.manifest_entries)
            .where(c.serial == serial, c.enrolled_at.is_(None))
            .values(enrolled_at=at)
        )


class SqlEnrollmentRequestStore:
    """Held enrollment requests in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, request: EnrollmentRequest) -> None:
        """Store a new request."""
        r = request
        self._c.execute(insert(t.enrollment_requests).values(
            id=r.id, device_id=r.device_id, org_unit_id=r.org_unit_id, org_path=r.org_path,
            manufacturer=r.manufacturer, reason=str(r.reason), detail=r.detail,
            source=r.source, presented=r.presented, profile=r.profile, csr_pem=r.csr_pem,
            csr_sha256=r.csr_sha256, public_key_sha256=r.public_key_sha256,
            idevid_pem=r.idevid_pem, status=str(r.status), created_at=r.created_at,
            last_seen_at=r.last_seen_at, polls=r.polls, decided_at=r.decided_at,
            decided_by=r.decided_by, decision_note=r.decision_note,
            certificate_serial=r.certificate_serial,
        ))

    def get(self, request_id: str) -> EnrollmentRequest | None:
        """One request by id."""
        row = self._c.execute(select(t.enrollment_requests).where(
            t.enrollment_requests.c.id == request_id)).first()
        return _request(row) if row else None

    def by_csr(self, csr_sha256: str) -> EnrollmentRequest | None:
        """The request made with this CSR."""
        row = self._c.execute(select(t.enrollment_requests).where(
            t.enrollment_requests.c.csr_sha256 == csr_sha256)).first()
        return _request(row) if row else None

    def count_pending(self, *, source: str | None = None) -> int:
        """Pending requests, in all or from one source."""
        c = t.enrollment_requests.c
        query = select(func.count()).select_from(t.enrollment_requests).where(
            c.status == str(RequestStatus.PENDING))
        if source is not None:
            query = query.where(c.source == source)
        return int(self._c.execute(query).scalar_one())

    def drop_stale(self, before: datetime) -> int:
        """Delete pending requests created before ``before``."""
        c = t.enrollment_requests.c
        result = self._c.execute(delete(t.enrollment_requests).where(
            c.status == str(RequestStatus.PENDING), c.created_at < before))
        return int(result.rowcount)

    def touch(self, request_id: str, at: datetime) -> None:
        """Count a poll."""
        c = t.enrollment_requests.c
        self._c.execute(update(t.enrollment_requests).where(c.id == request_id)
                        .values(last_seen_at=at, polls=c.polls + 1))

    def decide(
        self, request_id: str, status: RequestStatus, at: datetime, by: str, note: str | None
    ) -> bool:
        """Close a pending request (one conditional UPDATE: exactly one caller wins)."""
        c = t.enrollment_requests.c
        result = self._c.execute(
            update(t.enrollment_requests)
            .where(c.id == request_id, c.status == str(RequestStatus.PENDING))
            .values(status=str(status), decided_at=at, decided_by=by, decision_note=note)
        )
        return result.rowcount == 1

    def set_certificate(self, request_id: str, serial_hex: str) -> None:
        """Record the certificate an approval produced."""
        self._c.execute(update(t.enrollment_requests)
                        .where(t.enrollment_requests.c.id == request_id)
                        .values(certificate_serial=serial_hex))

    def page(
        self, *, org_path: str, include_unscoped: bool, status: RequestStatus | None,
        limit: int,
    ) -> list[EnrollmentRequest]:
        """Requests under ``org_path`` (and unscoped ones when allowed), oldest first."""
        c = t.enrollment_requests.c
        scope = under_path(c.org_path, org_path)
        if include_unscoped:
            scope = or_(scope, c.org_path.is_(None))
        query = select(t.enrollment_requests).where(scope)
        if status is not None:
            query = query.where(c.status == str(status))
        rows = self._c.execute(query.order_by(c.created_at, c.id).limit(limit))
        return [_request(r) for r in rows]

    def close_for_device(self, device_id: str, at: datetime, by: str, note: str) -> int:
        """Reject every pending request of a device."""
        c = t.enrollment_requests.c
        result = self._c.execute(
            update(t.enrollment_requests)
            .where(c.device_id == device_id, c.status == str(RequestStatus.PENDING))
            .values(status=str(RequestStatus.REJECTED), decided_at=at, decided_by=by,
                    decision_note=note)
        )
        return int(result.rowcount)


def _manufacturer(row: Any) -> Manufacturer:
    return Manufacturer(
        name=row.name, org_unit_id=row.org_unit_id, org_path=row.org_path,
        device_type=row.device_type, certificate_pem=row.certificate_pem, subject=row.subject,
        fingerprint_sha256=row.fingerprint_sha256, not_after=row.not_after,
        created_at=row.created_at, created_by=row.created_by,
    )


def _manifest_entry(row: Any) -> ManifestEntry:
    return ManifestEntry(
        manufacturer=row.manufacturer, serial=row.serial, imported_at=row.imported_at,
        public_key_sha256=row.public_key_sha256, enrolled_at=row.enrolled_at,
        batch=row.batch,
    )


def _request(row: Any) -> EnrollmentRequest:
    return EnrollmentRequest(
        id=row.id, device_id=row.device_id, reason=HoldReason(row.reason), detail=row.detail,
        source=row.source, presented=row.presented, csr_pem=row.csr_pem,
        csr_sha256=row.csr_sha256, public_key_sha256=row.public_key_sha256,
        status=RequestStatus(row.status), created_at=row.created_at,
        last_seen_at=row.last_seen_at, org_unit_id=row.org_unit_id, org_path=row.org_path,
        manufacturer=row.manufacturer, profile=row.profile, idevid_pem=row.idevid_pem,
        polls=row.polls, decided_at=row.decided_at, decided_by=row.decided_by,
        decision_note=row.decision_note, certificate_serial=row.certificate_serial,
    )
