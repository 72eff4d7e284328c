"""SQL implementation of the PSK store.

Every write of a PSK rewrites its device's credential standing in the same transaction
(``storage/credential_standing.py``): the inventory report counts PSK holders too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from iotiam.credentials.models import Psk, PskStatus
from iotiam.storage.credential_standing import refresh_standing
from iotiam.storage.rows import one_of, under_path
from iotiam.storage.tables import credentials as t

#: ids per ``IN (...)`` (SQLite allows 32,766 bound parameters a statement)
_IN_CHUNK = 500


class SqlPskStore:
    """PSKs in SQL (only ciphertext is stored)."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, psk: Psk) -> None:
        """Store a new PSK."""
        self._c.execute(insert(t.psks).values(
            id=psk.id, identity=psk.identity, device_id=psk.device_id, org_path=psk.org_path,
            encrypted_key=psk.encrypted_key, status=str(psk.status), created_at=psk.created_at,
            expires_at=psk.expires_at, revoked_at=psk.revoked_at,
            revocation_reason=psk.revocation_reason, replaced_by=psk.replaced_by,
        ))
        refresh_standing(self._c, [psk.device_id])

    def active_for_device(self, device_id: str) -> Psk | None:
        """The device's active PSK."""
        row = self._c.execute(select(t.psks).where(
            t.psks.c.device_id == device_id, t.psks.c.status == str(PskStatus.ACTIVE))).first()
        return _psk(row) if row else None

    def for_device(self, device_id: str) -> list[Psk]:
        """Every PSK of a device, oldest first."""
        rows = self._c.execute(select(t.psks).where(t.psks.c.device_id == device_id)
                               .order_by(t.psks.c.created_at))
        return [_psk(r) for r in rows]

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, list[Psk]]:
        """Every PSK of each of these devices, oldest first."""
        found: dict[str, list[Psk]] = {}
        if not device_ids:
            return found
        rows = self._c.execute(
            select(t.psks).where(one_of(self._c, t.psks.c.device_id,
                                        list(dict.fromkeys(device_ids))))
            .order_by(t.psks.c.created_at))
        for r in rows:
            found.setdefault(r.device_id, []).append(_psk(r))
        return found

    def revoke(self, psk_id: str, at: datetime, reason: str, replaced_by: str | None) -> bool:
        """Mark revoked if still active (or next)."""
        result = self._c.execute(
            update(t.psks)
            .where(t.psks.c.id == psk_id,
                   t.psks.c.status.in_([str(PskStatus.ACTIVE), str(PskStatus.NEXT)]))
            .values(status=str(PskStatus.REVOKED), revoked_at=at, revocation_reason=reason,
                    replaced_by=replaced_by)
            .returning(t.psks.c.device_id)
        )
        return self._moved(result.first())

    def promote(self, psk_id: str) -> bool:
        """Make a next PSK the active one."""
        result = self._c.execute(
            update(t.psks).where(t.psks.c.id == psk_id, t.psks.c.status == str(PskStatus.NEXT))
            .values(status=str(PskStatus.ACTIVE)).returning(t.psks.c.device_id))
        return self._moved(result.first())

    def set_expiry(self, psk_id: str, at: datetime) -> bool:
        """Set when an active PSK expires."""
        result = self._c.execute(
            update(t.psks)
            .where(t.psks.c.id == psk_id, t.psks.c.status == str(PskStatus.ACTIVE))
            .values(expires_at=at).returning(t.psks.c.device_id))
        return self._moved(result.first())

    def _moved(self, changed: Any) -> bool:
        """After an update of one PSK: its holder's standing rewritten; whether it did."""
        if changed is None:
            return False
        refresh_standing(self._c, [changed.device_id])
        return True

    def iter_active(self, *, org_path: str) -> Iterator[Psk]:
        """Active PSKs under ``org_path``."""
        rows = self._c.execute(select(t.psks).where(
            t.psks.c.status == str(PskStatus.ACTIVE), under_path(t.psks.c.org_path, org_path)))
        for row in rows:
            yield _psk(row)


def _psk(row: Any) -> Psk:
    return Psk(
        id=row.id, identity=row.identity, device_id=row.device_id, org_path=row.org_path,
        encrypted_key=bytes(row.encrypted_key), status=PskStatus(row.status),
        created_at=row.created_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason, replaced_by=row.replaced_by,
    )
