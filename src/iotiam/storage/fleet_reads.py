"""Devices as the broker sync (``broker.fleet.FleetReads``), the decision point's device
cache (``policy.subjects.DeviceSubjects``) and the trust refresher read them.

Published changes (revocations, state, policies: ``iotiam.changes``) reach them through
the change feed; ``device_changes`` is the safety net they poll for what moves a
device's ``updated_at`` without publishing a change. Every query here is answered from
an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, func, or_, select

from iotiam.clock import Clock
from iotiam.credentials.models import PskStatus
from iotiam.gateways.rules import is_gateway_type
from iotiam.inventory.models import Device, DeviceState
from iotiam.pki.models import CertificateStatus
from iotiam.policy.models import DevicePosture
from iotiam.storage.database import Database
from iotiam.storage.inventory_store import device_from_row
from iotiam.storage.tables import (
    attestation,
    credentials,
    gateways,
    inventory,
    pki,
    response,
    tokens,
)
from iotiam.tokens.models import ClientStatus


class SqlFleetReads:
    """Indexed change queries over devices, certificates and PSKs."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._db = database
        #: credential standing is judged at this clock's now (expiry)
        self._clock = clock

    def device_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        """(device, updated_at) of the devices updated after ``since``."""
        d = inventory.devices.c
        with self._db.reading() as uow:
            rows = uow.conn.execute(select(d.id, d.updated_at).where(d.updated_at > since))
            return [(r.id, r.updated_at) for r in rows]

    def unscored_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        """``device_changes`` but for the devices whose ``updated_at`` is their score's
        ``computed_at`` (the trust refresher's own touch), left out by the query: after an
        import the window holds every new device, and reading them back each pass cost
        more than scoring them."""
        d, t = inventory.devices.c, response.device_trust.c
        with self._db.reading() as uow:
            rows = uow.conn.execute(
                select(d.id, d.updated_at)
                .select_from(inventory.devices.outerjoin(response.device_trust,
                                                         t.device_id == d.id))
                .where(d.updated_at > since,
                       or_(t.computed_at.is_(None), t.computed_at != d.updated_at)))
            return [(r.id, r.updated_at) for r in rows]

    def psk_version(self) -> tuple[int, datetime | None]:
        """(live PSKs, newest change): moves on every issue, rotation and revocation, and
        on every change of a device holding a live PSK (its state decides whether the
        PSK opens the broker: inventory/lifecycle.py)."""
        p, d = credentials.psks.c, inventory.devices.c
        with self._db.reading() as uow:
            row = uow.conn.execute(
                select(func.count(), func.max(p.created_at), func.max(p.revoked_at))
                .where(p.status == str(PskStatus.ACTIVE))).one()
            revoked = uow.conn.execute(select(func.max(p.revoked_at))).scalar()
            holders = uow.conn.execute(
                select(func.max(d.updated_at)).select_from(
                    credentials.psks.join(inventory.devices, d.id == p.device_id))
                .where(p.status == str(PskStatus.ACTIVE))).scalar()
        newest = max((x for x in (row[1], revoked, holders) if x is not None), default=None)
        return int(row[0]), newest

    def device(self, device_id: str) -> Device | None:
        """One device by id, whatever its state (the primary key)."""
        with self._db.reading() as uow:
            return uow.devices.get(device_id)

    def devices_of(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """The known devices among these ids (a batch of changed devices: one query per
        500, not one per device)."""
        found: dict[str, Device] = {}
        with self._db.reading() as uow:
            for start in range(0, len(device_ids), 500):
                found.update(uow.devices.get_many(device_ids[start:start + 500]))
        return found

    def device_page(self, after_id: str | None, limit: int) -> list[Device]:
        """Devices not decommissioned, by id."""
        d = inventory.devices.c
        query = select(inventory.devices).where(d.state != str(DeviceState.DECOMMISSIONED))
        if after_id is not None:
            query = query.where(d.id > after_id)
        with self._db.reading() as uow:
            return [device_from_row(r) for r in uow.conn.execute(query.order_by(d.id).limit(limit))]

    def groups_of(self, device_ids: Sequence[str]) -> dict[str, set[str]]:
        """Group ids per device."""
        m = inventory.group_members.c
        found: dict[str, set[str]] = {}
        with self._db.reading() as uow:
            for start in range(0, len(device_ids), 500):
                chunk = list(device_ids[start:start + 500])
                rows = uow.conn.execute(select(m.device_id, m.group_id)
                                        .where(m.device_id.in_(chunk)))
                for row in rows:
                    found.setdefault(row.device_id, set()).add(row.group_id)
        return found

    def children_of(self, gateway_ids: Sequence[str]) -> dict[str, list[str]]:
        """The children registered under each of these gateways, by id."""
        g = gateways.gateway_links.c
        found: dict[str, list[str]] = {}
        with self._db.reading() as uow:
            for start in range(0, len(gateway_ids), 500):
                rows = uow.conn.execute(select(g.gateway_id, g.child_id).where(
                    g.gateway_id.in_(list(gateway_ids[start:start + 500])))
                    .order_by(g.child_id))
                for row in rows:
                    found.setdefault(row.gateway_id, []).append(row.child_id)
        return found

    def gateways_of(self, device_ids: Sequence[str]) -> dict[str, str]:
        """The gateway each of these devices is registered under."""
        with self._db.reading() as uow:
            return {child: link.gateway_id
                    for child, link in uow.gateway_links.get_many(device_ids).items()}

    def gateway_types(self) -> set[str]:
        """The device types whose devices are gateways (their profile acts for children)."""
        with self._db.reading() as uow:
            return {t.name for t in uow.device_types.list_all() if is_gateway_type(t)}

    def posture_of(self, device_ids: Sequence[str]) -> dict[str, DevicePosture]:
        """Stored trust score, firmware verdict and credential standing of every device."""
        d, f = response.device_trust.c, attestation.device_firmware.c
        scores: dict[str, float] = {}
        firmware: dict[str, bool] = {}
        credentialed: set[str] = set()
        now = self._clock.now()
        with self._db.reading() as uow:
            for start in range(0, len(device_ids), 500):
                chunk = list(device_ids[start:start + 500])
                for r in uow.conn.execute(select(d.device_id, d.score)
                                          .where(d.device_id.in_(chunk))):
                    scores[r.device_id] = float(r.score)
                # the verdict is read where attestation writes it: fresh, even before the
                # score catches up
                for r in uow.conn.execute(select(f.device_id, f.compliant)
                                          .where(f.device_id.in_(chunk))):
                    firmware[r.device_id] = bool(r.compliant)
                credentialed.update(_credentialed(uow.conn, chunk, now))
        return {device: DevicePosture(scores.get(device), firmware.get(device),
                                      credentialed=device in credentialed)
                for device in device_ids}


def _credentialed(conn: Connection, device_ids: list[str], now: datetime) -> set[str]:
    """The devices that hold a valid credential now (G3): an issued, unexpired
    certificate, an active, unexpired PSK or an active OAuth client with its own keys
    (a client that signs with its certificate's key has no credential of its own)."""
    c, p, o = pki.certificates.c, credentials.psks.c, tokens.oauth_clients.c
    queries = [
        select(c.device_id).where(c.device_id.in_(device_ids),
                                  c.status == str(CertificateStatus.ISSUED),
                                  c.not_before <= now, c.not_after > now),
        select(p.device_id).where(p.device_id.in_(device_ids),
                                  p.status == str(PskStatus.ACTIVE),
                                  or_(p.expires_at.is_(None), p.expires_at > now)),
        select(o.device_id).where(o.device_id.in_(device_ids),
                                  o.status == str(ClientStatus.ACTIVE), o.jwks.is_not(None)),
    ]
    return {row[0] for query in queries for row in conn.execute(query.distinct())}
