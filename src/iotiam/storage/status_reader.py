"""The OCSP hot path: one plain SELECT per lookup, no ORM layers, still the live database.

G3 needs the status read from the database on every OCSP request (another replica may
have revoked a moment ago), so it cannot be cached; it can be cheap. This takes a
pooled DBAPI connection, runs one indexed SELECT (on PostgreSQL outside a transaction: one
round trip) and returns the connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from iotiam.pki.models import CertificateStatus, RevocationReason, serial_hex
from iotiam.storage.raw import utc

_SQL = ("SELECT status, revoked_at, revocation_reason FROM certificates "
        "WHERE issuer_id = {p} AND serial = {p}")


class SqlStatusReader:
    """``CertificateStatusReader`` over raw DBAPI connections from the engine's pool."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name != "sqlite"
        self._sql = _SQL.format(p="%s" if self._postgres else "?")

    def _autocommitted(self, driver: Any, issuer_id: str, serial: int) -> Any:
        """On PostgreSQL the SELECT runs outside a transaction: one round trip, where
        ``BEGIN``, the SELECT and the ``ROLLBACK`` took three (psycopg switches
        ``autocommit`` on an idle connection without asking the server)."""
        driver.autocommit = True
        try:
            return driver.execute(self._sql, (issuer_id, serial_hex(serial))).fetchone()
        finally:
            if not driver.closed:
                driver.autocommit = False

    def status_of(
        self, issuer_id: str, serial: int
    ) -> tuple[CertificateStatus, datetime | None, RevocationReason | None] | None:
        """Status, revocation time and reason of one certificate."""
        conn = self._engine.raw_connection()
        try:
            if self._postgres:
                row = self._autocommitted(conn.driver_connection, issuer_id, serial)
            else:
                cursor = conn.cursor()
                try:
                    cursor.execute(self._sql, (issuer_id, serial_hex(serial)))
                    row = cursor.fetchone()
                finally:
                    cursor.close()
        finally:
            conn.close()
        if row is None:
            return None
        status, revoked_at, reason = row
        return (CertificateStatus(status), utc(revoked_at),
                RevocationReason(reason) if reason else None)
