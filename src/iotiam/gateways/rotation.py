"""Which children's PSKs must be replaced now: the rules, and the read that finds them.

A child's key is replaced

* when its gateway lost its standing after the key was made (``gateway-revoked``): a
  certificate of the gateway was revoked, or the gateway stopped being trusted (it left
  ``active``, or every credential it had was revoked: ``Device.tokens_not_before``).
  The keys it received may be in other hands now, so every child it held a key for is
  re-keyed, once; the new key is delivered only to a gateway that may hold it (the
  child's, or the one it is moved to);
* on a schedule (``scheduled``): when the key is older than the rotation period. With
  an overlap, a *next* key is made instead and the current one stays valid until the
  overlap ends; the child's first connection with the next key promotes it
  (``Gateways.next_key_used``), and if the overlap ends unused it is promoted anyway
  (``overlap-ended``): the child is then cut off until it has the new key.

The rules are pure (``due_reason``); ``Gateways.rotate_child_keys`` applies them, one
child a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from iotiam.credentials.models import PskStatus
from iotiam.gateways.ports import GatewaysUnitOfWork
from iotiam.inventory.models import Device
from iotiam.pki.models import CertificateRecord

GATEWAY_REVOKED = "gateway-revoked"
SCHEDULED = "scheduled"
OVERLAP_ENDED = "overlap-ended"
#: children read per batch while looking for due keys
BATCH = 500


@dataclass(frozen=True)
class DueKey:
    """A child whose active PSK must be replaced, and why."""

    child_id: str
    gateway_id: str
    psk_id: str
    reason: str
    #: the child's pending next key (made by a scheduled rotation), if any
    next_id: str | None = None


@dataclass(frozen=True)
class RotationReport:
    """What one pass did."""

    rotated: tuple[DueKey, ...] = ()
    #: children due but not re-keyed (changed meanwhile, or may get no new credential)
    skipped: int = 0

    def count(self, reason: str) -> int:
        """How many were re-keyed for ``reason``."""
        return sum(1 for due in self.rotated if due.reason == reason)


def lost_standing_at(gateway: Device | None,
                     certificates: Iterable[CertificateRecord]) -> datetime | None:
    """When the gateway last lost the right to hold its children's keys (None: never)."""
    moments = [c.revoked_at for c in certificates if c.revoked_at is not None]
    if gateway is not None and gateway.tokens_not_before is not None:
        moments.append(gateway.tokens_not_before)
    return max(moments) if moments else None


def due_reason(key_made_at: datetime, gateway_lost_at: datetime | None, now: datetime,
               period: timedelta | None, overlap_ends_at: datetime | None = None
               ) -> str | None:
    """Why a child's key must be replaced now (None: it need not). ``overlap_ends_at``:
    when the current key expires, if a next key is pending."""
    if gateway_lost_at is not None and key_made_at < gateway_lost_at:
        return GATEWAY_REVOKED  # at once, with no overlap: the old gateway held both
    if overlap_ends_at is not None:
        return OVERLAP_ENDED if overlap_ends_at <= now else None
    if period is not None and key_made_at + period <= now:
        return SCHEDULED
    return None


def due_keys(uow: GatewaysUnitOfWork, now: datetime, period: timedelta | None
             ) -> list[DueKey]:
    """Every child whose active PSK must be replaced now, by child id."""
    due: list[DueKey] = []
    batch: list[str] = []
    for psk in uow.psks.iter_active(org_path="/"):
        batch.append(psk.device_id)
        if len(batch) >= BATCH:
            due += _due_in(uow, batch, now, period)
            batch = []
    if batch:
        due += _due_in(uow, batch, now, period)
    return sorted(due, key=lambda d: d.child_id)


def _due_in(uow: GatewaysUnitOfWork, device_ids: Sequence[str], now: datetime,
            period: timedelta | None) -> list[DueKey]:
    links = uow.gateway_links.get_many(device_ids)
    if not links:
        return []
    gateway_ids = sorted({link.gateway_id for link in links.values()})
    gateways = uow.devices.get_many(gateway_ids)
    certificates = uow.certificates.for_devices(gateway_ids)
    lost = {g: lost_standing_at(gateways.get(g), certificates.get(g, []))
            for g in gateway_ids}
    psks = uow.psks.for_devices(list(links))
    due = []
    for child_id, link in links.items():
        held = psks.get(child_id, [])
        live = [p for p in held if p.status is PskStatus.ACTIVE]
        pending = [p for p in held if p.status is PskStatus.NEXT]
        if not live:
            continue
        next_id = pending[-1].id if pending else None
        ends = (live[-1].expires_at or now) if pending else None
        reason = due_reason(live[-1].created_at, lost[link.gateway_id], now, period, ends)
        if reason is not None:
            due.append(DueKey(child_id, link.gateway_id, live[-1].id, reason, next_id))
    return due
