"""SQL implementation of the OAuth2 stores.

Every token request reads its client, its certificate and its device's groups: those
reads are hand-written SQL (see ``storage/raw.py``), and a client row is parsed once
per distinct row, so a revocation (a new row) is seen by the very next read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from iotiam.pki.models import CertificateRecord, CertificateStatus, serial_hex
from iotiam.policy.models import DevicePosture
from iotiam.storage.credential_standing import refresh_standing
from iotiam.storage.raw import (
    ParsedRows,
    RawSql,
    RawStatement,
    in_params,
    in_statement,
    row_object,
    select_sql,
    utc,
    utc_required,
)
from iotiam.storage.rows import dump_json, load_json, one_of, under_path
from iotiam.storage.tables import tokens as t
from iotiam.tokens.models import (
    AuthMethod,
    ClientKind,
    ClientStatus,
    DeviceCode,
    DeviceCodeStatus,
    GrantType,
    OAuthClient,
    RevokedToken,
    StoredSigningKey,
)

# the token hot path: hand-written, run straight on the driver (see storage/raw.py)
_CLIENT_COLUMNS = tuple(c.name for c in t.oauth_clients.columns)
_CLIENT_TIMES = frozenset({"created_at", "revoked_at"})
_CLIENT_BY_ID = RawStatement(select_sql("oauth_clients", _CLIENT_COLUMNS,
                                        "client_id = :client_id"))
_CLIENTS_BY_ID = select_sql("oauth_clients", _CLIENT_COLUMNS, "client_id IN ({in_list})")
#: devices' groups and posture (stored trust score, firmware verdict) in one query: a row
#: per (device, group), or one with no group
_STANDINGS_OF_DEVICES = (
    "SELECT d.id, g.group_id, s.score, f.compliant FROM devices d"
    " LEFT JOIN group_members g ON g.device_id = d.id"
    " LEFT JOIN device_trust s ON s.device_id = d.id"
    " LEFT JOIN device_firmware f ON f.device_id = d.id"
    " WHERE d.id IN ({in_list})")
#: what tls_client_auth checks of a presented certificate (no PEM: it is not needed)
_PRESENTED_COLUMNS = ("device_id", "org_unit_id", "org_path", "profile", "subject",
                      "not_before", "not_after", "status", "fingerprint_sha256", "created_at",
                      "revoked_at", "public_key_sha256")
_PRESENTED_CERTIFICATE = RawStatement(select_sql(
    "certificates", _PRESENTED_COLUMNS, "issuer_id = :issuer_id AND serial = :serial"))
_PRESENTED_CERTIFICATES = select_sql("certificates", ("serial", *_PRESENTED_COLUMNS),
                                     "issuer_id = :issuer_id AND serial IN ({in_list})")
#: rows per IN (...) query
_IN_CHUNK = 500
_PARSED_CLIENTS: ParsedRows[OAuthClient] = ParsedRows()
_PARSED_CERTIFICATES: ParsedRows[CertificateRecord] = ParsedRows()
_DENIED = select(t.oauth_revoked_tokens.c.jti).where(
    t.oauth_revoked_tokens.c.jti == bindparam("jti"))


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


class SqlOAuthClientStore:
    """OAuth2 clients in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, client: OAuthClient) -> None:
        """Insert a client."""
        self._c.execute(insert(t.oauth_clients).values(
            client_id=client.client_id, kind=str(client.kind), device_id=client.device_id,
            org_unit_id=client.org_unit_id, org_path=client.org_path,
            auth_methods=dump_json([str(m) for m in client.auth_methods]),
            grant_types=dump_json([str(g) for g in client.grant_types]),
            scopes=dump_json(list(client.scopes)), audiences=dump_json(list(client.audiences)),
            jwks=dump_json(client.jwks) if client.jwks is not None else None,
            status=str(client.status), created_at=client.created_at,
            created_by=client.created_by, revoked_at=client.revoked_at,
        ))
        if client.device_id is not None:  # a device's client counts in its standing
            refresh_standing(self._c, [client.device_id])

    def get(self, client_id: str) -> OAuthClient | None:
        """One client by id (read every time; parsed once per distinct row)."""
        row = RawSql(self._c).first(_CLIENT_BY_ID, {"client_id": client_id})
        if row is None:
            return None
        return _PARSED_CLIENTS.get(tuple(row), lambda values: _client(
            row_object(_CLIENT_COLUMNS, values, _CLIENT_TIMES)))

    def get_many(self, client_ids: Sequence[str]) -> dict[str, OAuthClient]:
        """The registered clients among these ids, by id."""
        raw = RawSql(self._c)
        found: dict[str, OAuthClient] = {}
        for chunk in _chunks(client_ids):
            statement = in_statement(_CLIENTS_BY_ID, "id", len(chunk))
            for row in raw.all(statement, in_params("id", chunk)):
                client = _PARSED_CLIENTS.get(tuple(row), lambda values: _client(
                    row_object(_CLIENT_COLUMNS, values, _CLIENT_TIMES)))
                found[client.client_id] = client
        return found

    def presented_certificates(self, issuer_id: str, serials: Sequence[int]
                               ) -> dict[int, CertificateRecord]:
        """``presented_certificate`` for many serials of one issuer, by serial."""
        raw = RawSql(self._c)
        found: dict[int, CertificateRecord] = {}
        for chunk in _chunks(serials):
            statement = in_statement(_PRESENTED_CERTIFICATES, "serial", len(chunk))
            params = {"issuer_id": issuer_id, **in_params("serial", [serial_hex(s) for s in chunk])}
            for row in raw.all(statement, params):
                serial = int(row[0], 16)
                found[serial] = _PARSED_CERTIFICATES.get(
                    (issuer_id, serial, *row[1:]),
                    lambda values: _presented(issuer_id, values[1], values[2:]))
        return found

    def device_standings(self, device_ids: Sequence[str]
                         ) -> dict[str, tuple[list[str], DevicePosture | None]]:
        """``device_standing`` for many devices, by id (registered devices only)."""
        raw = RawSql(self._c)
        rows_of: dict[str, list[Any]] = {}
        for chunk in _chunks(device_ids):
            statement = in_statement(_STANDINGS_OF_DEVICES, "id", len(chunk))
            for row in raw.all(statement, in_params("id", chunk)):
                rows_of.setdefault(row[0], []).append(row[1:])
        return {device_id: _standing(rows) for device_id, rows in rows_of.items()}

    def presented_certificate(self, issuer_id: str, serial: int) -> CertificateRecord | None:
        """The certificate a client presents for ``tls_client_auth``, without its PEM."""
        row = RawSql(self._c).first(_PRESENTED_CERTIFICATE,
                                    {"issuer_id": issuer_id, "serial": serial_hex(serial)})
        if row is None:
            return None
        return _PARSED_CERTIFICATES.get((issuer_id, serial, *row), lambda values: _presented(
            issuer_id, serial, values[2:]))

    def for_device(self, device_id: str) -> OAuthClient | None:
        """The client bound to a device."""
        row = self._c.execute(select(t.oauth_clients).where(
            t.oauth_clients.c.device_id == device_id)).first()
        return _client(row) if row else None

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, OAuthClient]:
        """The client of each of these devices that has one."""
        if not device_ids:
            return {}
        rows = self._c.execute(select(t.oauth_clients).where(one_of(
            self._c, t.oauth_clients.c.device_id, list(dict.fromkeys(device_ids)))))
        return {r.device_id: _client(r) for r in rows}

    def list_under(self, *, org_path: str, limit: int = 1000) -> list[OAuthClient]:
        """Clients under ``org_path`` by id."""
        c = t.oauth_clients.c
        rows = self._c.execute(select(t.oauth_clients).where(under_path(c.org_path, org_path))
                               .order_by(c.client_id).limit(limit))
        return [_client(r) for r in rows]

    def revoke(self, client_id: str, at: datetime) -> None:
        """Mark revoked (and rewrite its device's credential standing)."""
        changed = self._c.execute(
            update(t.oauth_clients).where(t.oauth_clients.c.client_id == client_id)
            .values(status=str(ClientStatus.REVOKED), revoked_at=at)
            .returning(t.oauth_clients.c.device_id)).first()
        if changed is not None and changed.device_id is not None:
            refresh_standing(self._c, [changed.device_id])

    def device_standing(self, device_id: str) -> tuple[list[str], DevicePosture | None]:
        """Group ids and posture of a device (for the policy subject of its client)."""
        return self.device_standings([device_id]).get(device_id, ([], None))


def _chunks(values: Sequence[Any]) -> list[list[Any]]:
    wanted = list(dict.fromkeys(values))
    return [wanted[i:i + _IN_CHUNK] for i in range(0, len(wanted), _IN_CHUNK)]


def _standing(rows: Sequence[Any]) -> tuple[list[str], DevicePosture | None]:
    """Groups and posture from (group, score, compliant) rows of one device."""
    groups = [r[0] for r in rows if r[0] is not None]
    if rows[0][1] is None and rows[0][2] is None:
        return groups, None
    _, score, compliant = rows[0]
    return groups, DevicePosture(None if score is None else float(score),
                                 None if compliant is None else bool(compliant))


def _presented(issuer_id: str, serial: int, row: Any) -> CertificateRecord:
    (device_id, org_unit_id, org_path, profile, subject, not_before, not_after, status,
     fingerprint, created_at, revoked_at, public_key_sha256) = row
    return CertificateRecord(
        issuer_id=issuer_id, serial=serial, device_id=device_id, org_unit_id=org_unit_id,
        org_path=org_path, profile=profile, subject=subject,
        not_before=utc_required(not_before), not_after=utc_required(not_after),
        status=CertificateStatus(status), fingerprint_sha256=fingerprint, pem=None,
        created_at=utc_required(created_at), revoked_at=utc(revoked_at),
        public_key_sha256=public_key_sha256)


def _client(row: Any) -> OAuthClient:
    return OAuthClient(
        client_id=row.client_id, kind=ClientKind(row.kind), device_id=row.device_id,
        org_unit_id=row.org_unit_id, org_path=row.org_path,
        auth_methods=tuple(AuthMethod(m) for m in load_json(row.auth_methods)),
        grant_types=tuple(GrantType(g) for g in load_json(row.grant_types)),
        scopes=tuple(load_json(row.scopes)), audiences=tuple(load_json(row.audiences)),
        jwks=load_json(row.jwks) if row.jwks is not None else None,
        status=ClientStatus(row.status), created_at=row.created_at,
        created_by=row.created_by, revoked_at=row.revoked_at,
    )


class SqlSigningKeyStore:
    """Signing keys in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, key: StoredSigningKey) -> None:
        """Store a key."""
        self._c.execute(insert(t.oauth_signing_keys).values(
            kid=key.kid, algorithm=key.algorithm, public_jwk=dump_json(key.public_jwk),
            encrypted_key_pem=key.encrypted_key_pem, created_at=key.created_at,
            retired_at=key.retired_at, publish_until=key.publish_until,
        ))

    def list_all(self) -> list[StoredSigningKey]:
        """Every key, oldest first."""
        rows = self._c.execute(select(t.oauth_signing_keys)
                               .order_by(t.oauth_signing_keys.c.created_at))
        return [StoredSigningKey(
            kid=r.kid, algorithm=r.algorithm, public_jwk=load_json(r.public_jwk),
            encrypted_key_pem=r.encrypted_key_pem, created_at=r.created_at,
            retired_at=r.retired_at, publish_until=r.publish_until) for r in rows]

    def retire(self, kid: str, at: datetime, publish_until: datetime) -> None:
        """Stop signing with a key."""
        c = t.oauth_signing_keys.c
        self._c.execute(update(t.oauth_signing_keys).where(c.kid == kid, c.retired_at.is_(None))
                        .values(retired_at=at, publish_until=publish_until))


class SqlAssertionJtiStore:
    """Used client-assertion jtis; the primary key makes each usable once."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def use(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record a jti; False if it was recorded before (by anyone, even concurrently)."""
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT here
        statement = _insert(self._c)(t.oauth_assertion_jtis).values(
            client_id=client_id, jti=jti, expires_at=expires_at,
        ).on_conflict_do_nothing().returning(t.oauth_assertion_jtis.c.jti)
        return self._c.execute(statement).first() is not None

    def purge(self, before: datetime) -> int:
        """Forget jtis of assertions that expired before ``before``."""
        c = t.oauth_assertion_jtis.c
        return int(self._c.execute(delete(t.oauth_assertion_jtis)
                                   .where(c.expires_at < before)).rowcount)


class SqlTokenDenyList:
    """Revoked access tokens."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, entry: RevokedToken) -> None:
        """Deny a token (idempotent)."""
        self._c.execute(_insert(self._c)(t.oauth_revoked_tokens).values(
            jti=entry.jti, client_id=entry.client_id, org_path=entry.org_path,
            revoked_at=entry.revoked_at, expires_at=entry.expires_at,
        ).on_conflict_do_nothing())

    def is_denied(self, jti: str) -> bool:
        """Whether a token was revoked."""
        return self._c.execute(_DENIED, {"jti": jti}).first() is not None

    def purge(self, before: datetime) -> int:
        """Forget entries of tokens that expired before ``before``."""
        c = t.oauth_revoked_tokens.c
        return int(self._c.execute(delete(t.oauth_revoked_tokens)
                                   .where(c.expires_at < before)).rowcount)


class SqlDeviceCodeStore:
    """RFC 8628 device codes in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, code: DeviceCode) -> None:
        """Store a new code."""
        self._c.execute(insert(t.oauth_device_codes).values(
            device_code_hash=code.device_code_hash, user_code=code.user_code,
            client_id=code.client_id, org_path=code.org_path,
            scopes=dump_json(list(code.scopes)), audience=code.audience,
            status=str(code.status), created_at=code.created_at, expires_at=code.expires_at,
            interval_seconds=code.interval_seconds, last_polled_at=code.last_polled_at,
            decided_at=code.decided_at, decided_by=code.decided_by,
        ))

    def by_hash(self, device_code_hash: str) -> DeviceCode | None:
        """One code by the hash of its device code."""
        row = self._c.execute(select(t.oauth_device_codes).where(
            t.oauth_device_codes.c.device_code_hash == device_code_hash)).first()
        return _device_code(row) if row else None

    def by_user_code(self, user_code: str) -> DeviceCode | None:
        """One code by its user code."""
        row = self._c.execute(select(t.oauth_device_codes).where(
            t.oauth_device_codes.c.user_code == user_code)).first()
        return _device_code(row) if row else None

    def pending_under(self, *, org_path: str, now: datetime) -> list[DeviceCode]:
        """Pending unexpired codes under ``org_path``."""
        c = t.oauth_device_codes.c
        rows = self._c.execute(select(t.oauth_device_codes).where(
            c.status == str(DeviceCodeStatus.PENDING), c.expires_at > now,
            under_path(c.org_path, org_path)).order_by(c.created_at).limit(1000))
        return [_device_code(r) for r in rows]

    def decide(self, device_code_hash: str, status: DeviceCodeStatus, at: datetime,
               by: str) -> bool:
        """Pending → approved/denied; False if no longer pending."""
        c = t.oauth_device_codes.c
        result = self._c.execute(update(t.oauth_device_codes).where(
            c.device_code_hash == device_code_hash, c.status == str(DeviceCodeStatus.PENDING),
        ).values(status=str(status), decided_at=at, decided_by=by))
        return int(result.rowcount) == 1

    def polled(self, device_code_hash: str, at: datetime, interval_seconds: int) -> None:
        """Record a poll."""
        c = t.oauth_device_codes.c
        self._c.execute(update(t.oauth_device_codes).where(
            c.device_code_hash == device_code_hash).values(
            last_polled_at=at, interval_seconds=interval_seconds))

    def redeem(self, device_code_hash: str, at: datetime) -> bool:
        """Approved → used, once."""
        c = t.oauth_device_codes.c
        result = self._c.execute(update(t.oauth_device_codes).where(
            c.device_code_hash == device_code_hash, c.status == str(DeviceCodeStatus.APPROVED),
            c.expires_at > at,
        ).values(status=str(DeviceCodeStatus.USED)))
        return int(result.rowcount) == 1


def _device_code(row: Any) -> DeviceCode:
    return DeviceCode(
        device_code_hash=row.device_code_hash, user_code=row.user_code,
        client_id=row.client_id, org_path=row.org_path, scopes=tuple(load_json(row.scopes)),
        audience=row.audience, status=DeviceCodeStatus(row.status),
        created_at=row.created_at, expires_at=row.expires_at,
        interval_seconds=row.interval_seconds, last_polled_at=row.last_polled_at,
        decided_at=row.decided_at, decided_by=row.decided_by,
    )
