"""The OCSP hot path: one plain SELECT per lookup, no ORM layers, still the live database.

G3 needs the status read from the database on every OCSP request (another replica may
have revoked a moment ago), so it cannot be cached; it can be cheap. This takes a
pooled DBAPI connection, runs one indexed SELECT and returns the connection.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from iotiam.pki.models import CertificateStatus, RevocationReason, serial_hex
from iotiam.storage.raw import utc

_SQL = ("SELECT status, revoked_at, revocation_reason FROM certificates "
        "WHERE issuer_id = {p} AND serial = {p}")


class SqlStatusReader:
    """``CertificateStatusReader`` over raw DBAPI connections from the engine's pool."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sql = _SQL.format(p="?" if engine.dialect.name == "sqlite" else "%s")

    def status_of(
        self, issuer_id: str, serial: int
    ) -> tuple[CertificateStatus, datetime | None, RevocationReason | None] | None:
        """Status, revocation time and reason of one certificate."""
        conn = self._engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self._sql, (issuer_id, serial_hex(serial)))
                row = cursor.fetchone()
            finally:
                cursor.close()
            if self._engine.dialect.name != "sqlite":
                conn.rollback()  # end the read transaction before the connection goes back
        finally:
            conn.close()
        if row is None:
            return None
        status, revoked_at, reason = row
        return (CertificateStatus(status), utc(revoked_at),
                RevocationReason(reason) if reason else None)
