"""SQL implementation of the PKI stores."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    bindparam,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from iotiam.errors import Conflict
from iotiam.pki.crl import RevocationRow
from iotiam.pki.models import (
    CaRole,
    CertificateRecord,
    CertificateStatus,
    Revocation,
    RevocationReason,
    SerialInUse,
    serial_hex,
)
from iotiam.pki.ports import CrlInfo, SignedCertificate, StoredCa, StoredCrl
from iotiam.storage.credential_standing import devices_of_serials, refresh_standing
from iotiam.storage.raw import (
    RawSql,
    RawStatement,
    in_params,
    in_statement,
    row_object,
    select_sql,
    utc_required,
)
from iotiam.storage.rows import one_of, under_path
from iotiam.storage.tables import pki as t

_CERT_COLUMNS = tuple(c.name for c in t.certificates.columns if c.name != "id")
_CERT_TIMES = frozenset({"not_before", "not_after", "created_at", "revoked_at"})
_WITH_PUBLIC_KEY = RawStatement(
    select_sql("certificates", _CERT_COLUMNS, "public_key_sha256 = :key_hash"))
# G1: the unique (issuer_id, serial) key refuses a second use. One multi-row statement
# reserves a batch and names the rows it stored: DO NOTHING skips a used serial and keeps
# the transaction usable (PostgreSQL), so the caller draws again for those alone, with
# no read of the serials beforehand (one statement, one round trip, per batch)
_RESERVE_COLUMNS = ("issuer_id", "serial", "device_id", "org_unit_id", "org_path", "profile",
                    "subject", "not_before", "not_after", "status", "created_at",
                    "public_key_sha256")
_RESERVE_ROWS = 500


@functools.lru_cache(maxsize=64)
def _reserve_statement(count: int) -> RawStatement:
    """``INSERT`` of ``count`` reservations, ``RETURNING`` the serials it stored."""
    rows = ", ".join("(" + ", ".join(f":{c}{i}" for c in _RESERVE_COLUMNS) + ")"
                     for i in range(count))
    return RawStatement(
        f"INSERT INTO certificates ({', '.join(_RESERVE_COLUMNS)}) VALUES {rows} "  # noqa: S608
        "ON CONFLICT (issuer_id, serial) DO NOTHING RETURNING serial")


# values per ``IN (…)``: far below every driver's parameter limit
_IN_CHUNK = 500
_TAKEN_SERIALS = select_sql(
    "certificates", ("serial",), "issuer_id = :issuer_id AND serial IN ({in_list})")
_KEY_HOLDERS = select_sql(
    "certificates", ("public_key_sha256", "device_id"), "public_key_sha256 IN ({in_list})")
_COMPLETE = RawStatement(
    "UPDATE certificates SET status = :issued, pem = :pem, fingerprint_sha256 = :fingerprint "
    "WHERE issuer_id = :issuer_id AND serial = :serial AND status = :reserved")


def _record(row: Any, *, with_pem: bool = True) -> CertificateRecord:
    return CertificateRecord(
        issuer_id=row.issuer_id,
        serial=int(row.serial, 16),
        device_id=row.device_id,
        org_unit_id=row.org_unit_id,
        org_path=row.org_path,
        profile=row.profile,
        subject=row.subject,
        not_before=row.not_before,
        not_after=row.not_after,
        status=CertificateStatus(row.status),
        fingerprint_sha256=row.fingerprint_sha256,
        pem=row.pem if with_pem else None,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        revocation_reason=RevocationReason(row.revocation_reason)
        if row.revocation_reason
        else None,
        public_key_sha256=row.public_key_sha256,
    )


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start:start + _IN_CHUNK]


class SqlCaStore:
    """CA key pairs in SQL (keys already encrypted by the caller)."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, ca: StoredCa) -> None:
        """Store a key pair."""
        self._c.execute(
            insert(t.cas).values(
                id=ca.id,
                role=str(ca.role),
                certificate_pem=ca.certificate_pem,
                encrypted_key_pem=ca.encrypted_key_pem,
                created_at=ca.created_at,
            )
        )

    def get(self, ca_id: str) -> StoredCa | None:
        """One by id."""
        row = self._c.execute(select(t.cas).where(t.cas.c.id == ca_id)).first()
        return self._to_model(row) if row else None

    def active(self, role: CaRole) -> StoredCa | None:
        """The newest key pair of a role."""
        row = self._c.execute(
            select(t.cas).where(t.cas.c.role == str(role)).order_by(t.cas.c.created_at.desc())
        ).first()
        return self._to_model(row) if row else None

    def list_all(self) -> list[StoredCa]:
        """Every key pair."""
        return [self._to_model(r) for r in self._c.execute(select(t.cas).order_by(t.cas.c.id))]

    @staticmethod
    def _to_model(row: Any) -> StoredCa:
        return StoredCa(
            id=row.id,
            role=CaRole(row.role),
            certificate_pem=row.certificate_pem,
            encrypted_key_pem=row.encrypted_key_pem,
            created_at=row.created_at,
        )


class SqlCertificateStore:
    """Certificates and revocations in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def taken_serials(self, issuer_id: str, serials: Sequence[int]) -> set[int]:
        """Which of these serials the issuer has already used (reserved or issued)."""
        raw = RawSql(self._c)
        taken: set[int] = set()
        for chunk in _chunks([serial_hex(s) for s in serials]):
            statement = in_statement(_TAKEN_SERIALS, "serial", len(chunk))
            rows = raw.all(statement, {"issuer_id": issuer_id, **in_params("serial", chunk)})
            taken.update(int(row[0], 16) for row in rows)
        return taken

    def reserve_many(self, records: Sequence[CertificateRecord]) -> set[int]:
        """Record certificates before they are signed (G5); the unique key enforces G1.
        Returns the serials not reserved because the issuer has used them already."""
        if len({r.serial for r in records}) != len(records):
            raise SerialInUse("a serial appears twice among the certificates to reserve")
        raw = RawSql(self._c)
        reserved = str(CertificateStatus.RESERVED)
        # a batch shares its instants: convert each once
        when = functools.lru_cache(maxsize=8)(raw.when)
        stored: set[str] = set()
        for start in range(0, len(records), _RESERVE_ROWS):
            chunk = records[start:start + _RESERVE_ROWS]
            params: dict[str, Any] = {}
            for i, record in enumerate(chunk):
                params.update({
                    f"issuer_id{i}": record.issuer_id,
                    f"serial{i}": serial_hex(record.serial),
                    f"device_id{i}": record.device_id,
                    f"org_unit_id{i}": record.org_unit_id,
                    f"org_path{i}": record.org_path,
                    f"profile{i}": record.profile,
                    f"subject{i}": record.subject,
                    f"not_before{i}": when(record.not_before),
                    f"not_after{i}": when(record.not_after),
                    f"status{i}": reserved,
                    f"created_at{i}": when(record.created_at),
                    f"public_key_sha256{i}": record.public_key_sha256,
                })
            stored.update(row[0] for row in raw.all(_reserve_statement(len(chunk)), params))
        return {r.serial for r in records if serial_hex(r.serial) not in stored}

    def complete(self, signed: Sequence[SignedCertificate]) -> None:
        """Attach signed certificates to their reservations."""
        def all_reserved(updated: int) -> None:
            if updated != len(signed):
                raise Conflict("a certificate to store is no longer reserved")

        # sent with the standing's first read (PostgreSQL): one round trip for both
        RawSql(self._c).defer(_COMPLETE, [{
            "issuer_id": cert.issuer_id, "serial": serial_hex(cert.serial), "pem": cert.pem,
            "fingerprint": cert.fingerprint_sha256, "issued": str(CertificateStatus.ISSUED),
            "reserved": str(CertificateStatus.RESERVED),
        } for cert in signed], all_reserved)
        # the report's per-device row moves with the certificate (fleet_counts.py)
        refresh_standing(self._c, {cert.device_id for cert in signed
                                   if cert.device_id is not None})

    def get(
        self, issuer_id: str, serial: int, *, for_update: bool = False
    ) -> CertificateRecord | None:
        """One certificate."""
        query = select(t.certificates).where(
            t.certificates.c.issuer_id == issuer_id,
            t.certificates.c.serial == serial_hex(serial),
        )
        if for_update and self._c.dialect.name != "sqlite":
            query = query.with_for_update()
        row = self._c.execute(query).first()
        return _record(row) if row else None

    def find_by_serial(self, serial: int) -> list[CertificateRecord]:
        """Certificates with this serial under any issuer."""
        rows = self._c.execute(
            select(t.certificates).where(t.certificates.c.serial == serial_hex(serial))
        )
        return [_record(r) for r in rows]

    def status_of(
        self, issuer_id: str, serial: int
    ) -> tuple[CertificateStatus, datetime | None, RevocationReason | None] | None:
        """Status, revocation time and reason, for OCSP."""
        c = t.certificates.c
        row = self._c.execute(
            select(c.status, c.revoked_at, c.revocation_reason).where(
                c.issuer_id == issuer_id, c.serial == serial_hex(serial)
            )
        ).first()
        if row is None:
            return None
        reason = RevocationReason(row.revocation_reason) if row.revocation_reason else None
        return CertificateStatus(row.status), row.revoked_at, reason

    def revoke(self, issuer_id: str, serial: int, at: datetime, reason: RevocationReason) -> None:
        """Mark a certificate revoked; a second revocation of the same serial is refused (G4)."""
        c = t.certificates.c
        result = self._c.execute(
            update(t.certificates)
            .where(
                c.issuer_id == issuer_id,
                c.serial == serial_hex(serial),
                c.status != str(CertificateStatus.REVOKED),
            )
            .values(status=str(CertificateStatus.REVOKED), revoked_at=at,
                    revocation_reason=str(reason))
        )
        if result.rowcount != 1:
            raise Conflict(f"certificate {serial_hex(serial)} is already revoked")
        refresh_standing(self._c, devices_of_serials(self._c, issuer_id, [serial_hex(serial)]))

    def page(
        self,
        *,
        org_path: str,
        device_id: str | None = None,
        status: CertificateStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CertificateRecord]:
        """Certificates under ``org_path``, newest first."""
        c = t.certificates.c
        query = select(t.certificates).where(under_path(c.org_path, org_path))
        if device_id:
            query = query.where(c.device_id == device_id)
        if status:
            query = query.where(c.status == str(status))
        rows = self._c.execute(query.order_by(c.id.desc()).limit(limit).offset(offset))
        return [_record(r) for r in rows]

    def for_device(self, device_id: str) -> list[CertificateRecord]:
        """Every certificate of a device, oldest first."""
        rows = self._c.execute(
            select(t.certificates)
            .where(t.certificates.c.device_id == device_id)
            .order_by(t.certificates.c.id)
        )
        return [_record(r) for r in rows]

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, list[CertificateRecord]]:
        """Every certificate of each of these devices, oldest first."""
        c = t.certificates.c
        found: dict[str, list[CertificateRecord]] = {}
        if not device_ids:
            return found
        for r in self._c.execute(select(t.certificates).where(
                one_of(self._c, c.device_id, list(dict.fromkeys(device_ids)))).order_by(c.id)):
            found.setdefault(r.device_id, []).append(_record(r))
        return found

    def key_holders(self, key_hashes: Sequence[str]) -> list[tuple[str, str | None]]:
        """(key hash, device id) of every certificate (any status) for one of these keys."""
        raw = RawSql(self._c)
        found: list[tuple[str, str | None]] = []
        for chunk in _chunks(list(dict.fromkeys(key_hashes))):
            statement = in_statement(_KEY_HOLDERS, "key", len(chunk))
            found += [(row[0], row[1]) for row in raw.all(statement, in_params("key", chunk))]
        return found

    def with_public_key(self, public_key_sha256: str) -> list[CertificateRecord]:
        """Certificates (any status) for this key (hot: every issuance asks)."""
        rows = RawSql(self._c).all(_WITH_PUBLIC_KEY, {"key_hash": public_key_sha256})
        return [_record(row_object(_CERT_COLUMNS, r, _CERT_TIMES)) for r in rows]

    def revocation_rows(self, issuer_id: str, *, expired_after: datetime
                        ) -> Sequence[RevocationRow]:
        """Raw (serial hex, revoked_at, reason) rows of revocations inside the CRL window.

        The hot part of a CRL rebuild (100k rows): the time column is coerced to a plain
        type so no per-row datetime processing runs; ``CrlEntryCache`` parses misses.
        """
        c = t.certificates.c
        query = select(c.serial, type_coerce(c.revoked_at, String), c.revocation_reason).where(
            c.issuer_id == issuer_id,
            c.status == str(CertificateStatus.REVOKED),
            c.not_after > expired_after,
        )
        return [(r[0], r[1], r[2]) for r in self._c.execute(query)]

    def revocations(self, issuer_id: str, *, expired_after: datetime) -> Sequence[Revocation]:
        """Revoked certificates of an issuer still inside the CRL window (G6)."""
        reasons = {r.value: r for r in RevocationReason}
        return [
            Revocation(int(serial, 16), utc_required(revoked_at), reasons[reason])
            for serial, revoked_at, reason in self.revocation_rows(
                issuer_id, expired_after=expired_after)
        ]

    def iter_device_certificates(self, *, org_path: str) -> Iterator[CertificateRecord]:
        """Issued or revoked device certificates under ``org_path``, without PEM."""
        c = t.certificates.c
        columns = [col for col in t.certificates.c if col.name != "pem"]
        rows = self._c.execute(
            select(*columns).where(
                under_path(c.org_path, org_path),
                c.device_id.is_not(None),
                c.status != str(CertificateStatus.RESERVED),
            )
        )
        for row in rows:
            yield _record(row, with_pem=False)

    def live_issued_by(self, issuer_id: str, now: datetime) -> list[tuple[int, str | None]]:
        """(serial, device id) of the issuer's issued, unexpired certificates, oldest first."""
        c = t.certificates.c
        rows = self._c.execute(select(c.serial, c.device_id).where(
            c.issuer_id == issuer_id, c.status == str(CertificateStatus.ISSUED),
            c.not_after > now).order_by(c.id))
        return [(int(r.serial, 16), r.device_id) for r in rows]

    def count_live(self, issuer_id: str, now: datetime) -> int:
        """How many of the issuer's issued certificates are unexpired."""
        c = t.certificates.c
        return int(self._c.execute(select(func.count()).select_from(t.certificates).where(
            c.issuer_id == issuer_id, c.status == str(CertificateStatus.ISSUED),
            c.not_after > now)).scalar_one())

    def revoke_many(self, issuer_id: str, serials: Sequence[int], at: datetime,
                    reason: RevocationReason) -> None:
        """One statement for all; those revoked already stay as they were (G4)."""
        if not serials:
            return
        c = t.certificates.c
        hexes = [serial_hex(s) for s in serials]
        self._c.execute(
            update(t.certificates).where(
                c.issuer_id == issuer_id, c.serial == bindparam("b_serial"),
                c.status != str(CertificateStatus.REVOKED))
            .values(status=str(CertificateStatus.REVOKED), revoked_at=at,
                    revocation_reason=str(reason)),
            [{"b_serial": h} for h in hexes])
        refresh_standing(self._c, devices_of_serials(self._c, issuer_id, hexes))


class SqlCrlStore:
    """Published CRLs in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, crl: StoredCrl) -> None:
        """Store a CRL."""
        self._c.execute(
            insert(t.crls).values(
                issuer_id=crl.issuer_id,
                number=crl.number,
                this_update=crl.this_update,
                next_update=crl.next_update,
                revocation_watermark=crl.revocation_watermark,
                der=crl.der,
            )
        )

    def latest_info(self, issuer_id: str) -> CrlInfo | None:
        """Metadata of the newest CRL (the DER blob stays in the database)."""
        c = t.crls.c
        row = self._c.execute(
            select(c.issuer_id, c.number, c.next_update, c.revocation_watermark)
            .where(c.issuer_id == issuer_id).order_by(c.number.desc()).limit(1)
        ).first()
        if row is None:
            return None
        return CrlInfo(issuer_id=row.issuer_id, number=row.number, next_update=row.next_update,
                       revocation_watermark=row.revocation_watermark)

    def latest(self, issuer_id: str) -> StoredCrl | None:
        """The newest CRL of an issuer."""
        row = self._c.execute(
            select(t.crls)
            .where(t.crls.c.issuer_id == issuer_id)
            .order_by(t.crls.c.number.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return StoredCrl(
            issuer_id=row.issuer_id,
            number=row.number,
            this_update=row.this_update,
            next_update=row.next_update,
            revocation_watermark=row.revocation_watermark,
            der=bytes(row.der),
        )


class SqlCounterStore:
    """Monotonic counters; one upsert statement, so it is atomic on both backends (G2)."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def next(self, name: str) -> int:
        """Increment and return the new value."""
        dialect_insert = pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert
        upsert = dialect_insert(t.counters).values(name=name, value=1)
        stmt = upsert.on_conflict_do_update(
            index_elements=[t.counters.c.name], set_={"value": t.counters.c.value + 1}
        ).returning(t.counters.c.value)
        value = self._c.execute(stmt).scalar_one()
        return int(value)

    def current(self, name: str) -> int:
        """Current value, 0 if never incremented."""
        value = self._c.execute(
            select(t.counters.c.value).where(t.counters.c.name == name)
        ).scalar_one_or_none()
        return int(value) if value is not None else 0
