"""The inventory report's counts in SQL (``inventory.ports.FleetCounts``).

``device_counts`` is kept by triggers on ``devices`` (migration 0022), so every write of
a device — one, a bulk import, a state change, a transfer — moves it in its own
transaction. ``device_credentials`` holds one row per credential holder and
``device_credential_days`` counts those rows per day of each instant, both rewritten
whenever a credential of the device (a certificate, a PSK, its OAuth client) is made,
revoked or changed, or the device is transferred (``storage/credential_standing.py``).
Expiry needs no write: the rows keep instants (newest notBefore/notAfter, renewal
point, key age), and the status is judged against ``now`` when the report is read —
whole day buckets where their days allow, rows only for the buckets on a threshold's
day (``storage/credential_days.py``; docs/scale.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    text,
)

from iotiam.inventory.credential_status import (
    HeldCredential,
    credential_status_by_device,
    credential_tally,
    held_credentials,
)
from iotiam.inventory.models import CredentialStatus, CredentialTally, DeviceTally
from iotiam.storage.credential_days import Thresholds
from iotiam.storage.credential_standing import rebuild_standing
from iotiam.storage.credential_store import SqlPskStore
from iotiam.storage.inventory_store import SqlDeviceStore
from iotiam.storage.oauth_store import SqlOAuthClientStore
from iotiam.storage.pki_store import SqlCertificateStore
from iotiam.storage.rows import under_path
from iotiam.storage.tables import inventory

_COUNTS = inventory.device_counts
_STANDING = inventory.device_credentials
_DAYS = inventory.device_credential_days
#: a device the one-row summary cannot judge (an older certificate outlives the newest,
#: or the newest carries no key hash): judged from its certificates instead
_IRREGULAR = "irregular"

_RECOUNT_DEVICES = (
    "INSERT INTO device_counts (org_path, type_name, state, site, n) "
    "SELECT org_path, type_name, state, COALESCE(site, ''), COUNT(*) FROM devices "
    "GROUP BY org_path, type_name, state, COALESCE(site, '')")


@dataclass(frozen=True)
class Recount:
    """What a full recount found: the count rows that were wrong, the holders rebuilt."""

    device_counts_fixed: int
    credential_rows: int


def recount(conn: Connection) -> Recount:
    """Rebuild every count from the devices and certificates, in set-based SQL (the
    migration's fill and ``iotiam db recount``)."""
    before = {tuple(r[:4]): int(r[4]) for r in conn.execute(select(_COUNTS)) if r[4]}
    conn.execute(delete(_COUNTS))
    conn.execute(text(_RECOUNT_DEVICES))
    after = {tuple(r[:4]): int(r[4]) for r in conn.execute(select(_COUNTS))}
    fixed = sum(1 for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    written = rebuild_standing(conn)
    return Recount(fixed, written)


class SqlFleetCounts:
    """The maintained counts, read per org subtree (G9)."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def device_tallies(self, *, org_path: str) -> list[DeviceTally]:
        """Devices under ``org_path`` per org unit, type, state and site."""
        c = _COUNTS.c
        rows = self._c.execute(select(c.org_path, c.type_name, c.state, c.site, c.n).where(
            under_path(c.org_path, org_path), c.n > 0).order_by(
            c.org_path, c.type_name, c.state, c.site))
        return [DeviceTally(r.org_path, r.type_name, r.state, r.site, int(r.n)) for r in rows]

    def credential_tally(
        self, *, org_path: str, now: datetime, rotation_age: timedelta,
        expiring_within: timedelta | None, max_age_by_type: dict[str, timedelta],
    ) -> CredentialTally:
        """The day buckets judged whole where their days allow; the rows of the others
        judged one by one (and the rare irregular holders from their certificates)."""
        thresholds = Thresholds(now, rotation_age, expiring_within, max_age_by_type)
        d = _DAYS.c
        by_status: Counter[str] = Counter()
        stale_keys = 0
        reads: dict[tuple[Any, ...], ColumnElement[bool]] = {}
        for bucket in self._c.execute(select(_DAYS).where(under_path(d.org_path, org_path),
                                                          d.n != 0)):
            verdict, key, rows = thresholds.judge(bucket)
            if verdict is not None:
                by_status[verdict[0]] += bucket.n
                stale_keys += verdict[1] * bucket.n
            else:
                reads[key] = thresholds.on_threshold_days() if rows is None else rows
        if reads:
            exact = self._rows_tally(org_path, or_(*reads.values()), now, rotation_age,
                                     expiring_within, max_age_by_type)
            by_status.update(exact.by_status)
            stale_keys += exact.never_rotated
        return CredentialTally({name: n for name, n in by_status.items() if n}, stale_keys)

    def credential_page(
        self, *, org_path: str, status: CredentialStatus, now: datetime,
        rotation_age: timedelta, type_name: str | None = None, state: str | None = None,
        site: str | None = None, after_id: str | None = None, limit: int = 100,
    ) -> tuple[list[str], str | None]:
        """Ids of the devices under ``org_path`` whose credential status at ``now`` is
        ``status``, in id order after ``after_id``, judged in SQL on the holders' rows
        (the irregular few from their certificates); and the cursor of the next page
        (the last id read when ``limit`` candidates were read, else None)."""
        d, c = inventory.devices.c, _STANDING.c
        judged, _, irregular = _judged(now, rotation_age, None, {})
        query = select(d.id, judged.label("status")).select_from(
            inventory.devices.outerjoin(_STANDING, c.device_id == d.id)).where(
            under_path(d.org_path, org_path))
        if status is CredentialStatus.NONE:
            query = query.where(c.device_id.is_(None))
        else:
            query = query.where(c.device_id.is_not(None),
                                or_(judged == str(status), irregular))
        for column, value in ((d.type_name, type_name), (d.state, state), (d.site, site)):
            if value:
                query = query.where(column == value)
        if after_id:
            query = query.where(d.id > after_id)
        rows = self._c.execute(query.order_by(d.id).limit(limit)).all()
        odd = [r.id for r in rows if r.status == _IRREGULAR]
        regular = {r.id for r in rows if r.status != _IRREGULAR}
        if odd:
            verdicts = credential_status_by_device(self._held(odd), now=now,
                                                   rotation_age=rotation_age)
            regular |= {i for i in odd if verdicts.get(i, CredentialStatus.NONE) is status}
        ids = [r.id for r in rows if r.id in regular]
        return ids, rows[-1].id if len(rows) == limit else None

    def _held(self, device_ids: list[str]) -> list[HeldCredential]:
        """Every credential of these devices (the irregular few), as the status judges."""
        certificates = SqlCertificateStore(self._c).for_devices(device_ids)
        psks = SqlPskStore(self._c).for_devices(device_ids)
        clients = SqlOAuthClientStore(self._c).for_devices(device_ids)
        return held_credentials(chain.from_iterable(certificates.values()),
                                chain.from_iterable(psks.values()), clients.values())

    def _rows_tally(
        self, org_path: str, where: ColumnElement[bool], now: datetime,
        rotation_age: timedelta, expiring_within: timedelta | None,
        max_age_by_type: dict[str, timedelta],
    ) -> CredentialTally:
        """The holders' rows under ``org_path`` that ``where`` selects, judged at ``now``."""
        c = _STANDING.c
        status, never_rotated, irregular = _judged(now, rotation_age, expiring_within,
                                                    max_age_by_type)
        judged = select(status.label("status"), never_rotated.label("never_rotated")).where(
            under_path(c.org_path, org_path), where).subquery()
        rows = self._c.execute(select(judged.c.status, func.count(),
                                      func.sum(judged.c.never_rotated))
                               .group_by(judged.c.status))
        by_status: dict[str, int] = {}
        stale_keys = 0
        irregulars = 0
        for name, n, never in rows:
            if name == _IRREGULAR:
                irregulars = int(n)
            else:
                by_status[name] = int(n)
                stale_keys += int(never or 0)
        if not irregulars:
            return CredentialTally(by_status, stale_keys)
        odd = [r[0] for r in self._c.execute(select(c.device_id).where(
            under_path(c.org_path, org_path), where, irregular))]
        devices = SqlDeviceStore(self._c).get_many(odd).values()
        extra = credential_tally(
            devices, self._held(odd), now=now, rotation_age=rotation_age,
            expiring_within=expiring_within, max_age_by_type=max_age_by_type)
        for name, n in extra.by_status.items():
            by_status[name] = by_status.get(name, 0) + n
        return CredentialTally(by_status, stale_keys + extra.never_rotated)


def _judged(
    now: datetime, rotation_age: timedelta, expiring_within: timedelta | None,
    max_age_by_type: dict[str, timedelta],
) -> tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[bool]]:
    """(status, never rotated 0/1, irregular) of a ``device_credentials`` row at ``now``:
    ``credential_status_by_device`` and ``never_rotated_devices`` in SQL."""
    c = _STANDING.c
    live = c.newest_not_after > now
    irregular = or_(and_(c.newest_not_after <= now, c.issued_until > now),
                    and_(live, c.key_since.is_(None)))
    expiring = c.renew_by <= now
    if expiring_within is not None:
        expiring = or_(expiring, c.newest_not_after <= now + expiring_within)
    status = case(
        (c.newest_not_before.is_(None), literal(str(CredentialStatus.REVOKED))),
        (irregular, literal(_IRREGULAR)),
        (and_(live, expiring), literal(str(CredentialStatus.EXPIRING))),
        (and_(live, c.newest_not_before <= now - rotation_age),
         literal(str(CredentialStatus.OVERDUE_ROTATION))),
        (live, literal(str(CredentialStatus.ACTIVE))),
        else_=literal(str(CredentialStatus.EXPIRED)),
    )
    never_rotated: ColumnElement[Any]
    if max_age_by_type:
        oldest_allowed = case(
            *[(c.type_name == kind, literal(now - age, _STANDING.c.key_since.type))
              for kind, age in sorted(max_age_by_type.items())], else_=None)
        never_rotated = case((and_(live, c.key_since <= oldest_allowed), 1), else_=0)
    else:
        never_rotated = literal(0)
    return status, never_rotated, irregular
