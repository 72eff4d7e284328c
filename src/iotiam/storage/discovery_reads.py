"""SQL reads of discovery: asset pages and details, and the streams the risk register
reads (assets, device presence, credentials seen), each paged by key so a large
installation is read in bounded memory."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from iotiam.discovery.credentials_seen import CredentialTally
from iotiam.discovery.models import (
    AssetStatus,
    CredentialSeen,
    DevicePresence,
    DeviceSeen,
    DiscoveredAsset,
    IdentifierKind,
    Sighting,
)
from iotiam.storage.rows import one_of, under_path
from iotiam.storage.tables import discovery as t

#: rows per page of the streamed reads
STREAM_PAGE = 2000
#: values per ``IN`` list of the narrow reads
IN_CHUNK = 500
_CREDENTIAL_KINDS = (IdentifierKind.CERTIFICATE, IdentifierKind.ISSUER_SERIAL,
                     IdentifierKind.PSK_IDENTITY)
_KIND_ORDER = {kind: n for n, kind in enumerate(IdentifierKind)}
#: a stored status -> its member (a dict look-up: calling the enum costs a microsecond, and
#: an import batch reads back thousands of assets)
_STATUS = {status.value: status for status in AssetStatus}


def _ports(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(",")) if text else ()


def asset_of(row: Sequence[Any], identifiers: tuple[tuple[IdentifierKind, str], ...] = ()
             ) -> DiscoveredAsset:
    """An asset from a row of ``discovery_assets`` (its columns in table order)."""
    (asset_id, org_path, status, first_seen, last_seen, sources, sightings, site, network,
     ip, mac, hostname, vendor, model, open_ports, device_id) = row
    return DiscoveredAsset(
        id=asset_id, org_path=org_path, status=_STATUS[status], first_seen=first_seen,
        last_seen=last_seen, sources=tuple(sources.split(",")) if sources else (),
        identifiers=identifiers, sightings=sightings, site=site, network=network, ip=ip,
        mac=mac, hostname=hostname, vendor=vendor, model=model,
        open_ports=_ports(open_ports), device_id=device_id)


def presence_of(row: Sequence[Any]) -> DevicePresence:
    """A presence aggregate from a row of ``discovery_presence``."""
    device_id, org_path, first_seen, last_seen, sources, sightings, places = row
    return DevicePresence(
        device_id=device_id, org_path=org_path, first_seen=first_seen, last_seen=last_seen,
        sources=frozenset(sources.split(",")) if sources else frozenset(),
        sightings=int(sightings),
        places={(site, ip): at for site, ip, at in json.loads(places)})


_PER_SITE = (IdentifierKind.IP, IdentifierKind.HOSTNAME)
_KIND = {kind.value: kind for kind in IdentifierKind}


def _grouped(asset_ids: Sequence[str], rows: Iterable[Sequence[Any]]
             ) -> dict[str, tuple[tuple[IdentifierKind, str], ...]]:
    """Binding rows (asset id, kind, value) -> each asset's identifiers in kind order
    (rows of assets not in ``asset_ids`` are ignored: a range holds other org paths')."""
    found: dict[str, set[tuple[IdentifierKind, str]]] = {a: set() for a in asset_ids}
    for asset_id, stored_kind, value in rows:
        identifiers = found.get(asset_id)
        if identifiers is None:
            continue
        kind = _KIND[stored_kind]
        # an address is bound as ``site|ip@slot`` (``reconcile.ip_slot``), a host name as
        # ``site|name`` (``keys.binding_key``; the last part is the value)
        identifiers.add((kind, value.rpartition("|")[2].partition("@")[0]
                         if kind in _PER_SITE else value))
    return {a: tuple(sorted(ids, key=_identifier_order)) if len(ids) > 1 else tuple(ids)
            for a, ids in found.items()}


def _identifier_order(identifier: tuple[IdentifierKind, str]) -> tuple[int, str]:
    return _KIND_ORDER[identifier[0]], identifier[1]


class SqlDiscoveryReads:
    """The read half of the discovery store."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _identifiers(self, asset_ids: Sequence[str]
                     ) -> dict[str, tuple[tuple[IdentifierKind, str], ...]]:
        b = t.bindings.c
        rows = self._conn.execute(select(b.asset_id, b.kind, b.value).where(
            b.asset_id.in_(list(asset_ids)))) if asset_ids else ()
        return _grouped(asset_ids, rows)

    def _identifiers_between(self, asset_ids: Sequence[str], after: str | None
                             ) -> dict[str, tuple[tuple[IdentifierKind, str], ...]]:
        """The identifiers of a page of assets in id order: one range scan of the
        bindings' asset index (``after`` < id <= the page's last), not an ``IN`` list."""
        if not asset_ids:
            return {}
        b = t.bindings.c
        where = [b.asset_id <= asset_ids[-1]]
        if after is not None:
            where.append(b.asset_id > after)
        return _grouped(asset_ids, self._conn.execute(
            select(b.asset_id, b.kind, b.value).where(*where)))

    def _with_identifiers(self, rows: Sequence[Sequence[Any]]) -> list[DiscoveredAsset]:
        identifiers = self._identifiers([row[0] for row in rows])
        return [asset_of(row, identifiers[row[0]]) for row in rows]

    def asset(self, asset_id: str) -> DiscoveredAsset | None:
        """One asset with its identifiers."""
        row = self._conn.execute(select(t.assets).where(t.assets.c.id == asset_id)).first()
        return None if row is None else self._with_identifiers([row])[0]

    @staticmethod
    def _filters(org_path: str, status: str | None, site: str | None,
                 source: str | None) -> list[ColumnElement[bool]]:
        where = [under_path(t.assets.c.org_path, org_path)]
        if status is not None:
            where.append(t.assets.c.status == status)
        if site is not None:
            where.append(t.assets.c.site == site)
        if source is not None:
            # sources is a sorted comma-joined list: match one whole name
            where.append(or_(t.assets.c.sources == source,
                             t.assets.c.sources.startswith(f"{source},", autoescape=True),
                             t.assets.c.sources.endswith(f",{source}", autoescape=True),
                             t.assets.c.sources.contains(f",{source},", autoescape=True)))
        return where

    def assets(self, *, org_path: str, after: str | None = None, limit: int = 100,
               status: str | None = None, site: str | None = None,
               source: str | None = None) -> list[DiscoveredAsset]:
        """A page of assets under ``org_path`` in id order."""
        where = self._filters(org_path, status, site, source)
        if after is not None:
            where.append(t.assets.c.id > after)
        rows = self._conn.execute(select(t.assets).where(and_(*where))
                                  .order_by(t.assets.c.id).limit(limit)).all()
        return self._with_identifiers(rows)

    def count_assets(self, *, org_path: str, status: str | None = None,
                     site: str | None = None, source: str | None = None) -> int:
        """How many assets the filters select."""
        where = self._filters(org_path, status, site, source)
        return int(self._conn.execute(select(func.count()).select_from(t.assets)
                                      .where(and_(*where))).scalar_one())

    def iter_assets(self, *, org_path: str) -> Iterator[DiscoveredAsset]:
        """Every asset under ``org_path`` in id order, a page at a time, each page's
        identifiers read by one range of the bindings' asset index."""
        where = self._filters(org_path, None, None, None)
        after: str | None = None
        while True:
            rows = self._conn.execute(
                select(t.assets).where(*where, *([t.assets.c.id > after] if after else []))
                .order_by(t.assets.c.id).limit(STREAM_PAGE)).all()
            identifiers = self._identifiers_between([row[0] for row in rows], after)
            for row in rows:
                yield asset_of(row, identifiers[row[0]])
            if len(rows) < STREAM_PAGE:
                return
            after = rows[-1][0]

    def iter_devices_seen(self, *, org_path: str) -> Iterator[DeviceSeen]:
        """Each device's presence under ``org_path``, by device id."""
        after = ""
        while True:
            rows = self._conn.execute(
                select(t.presence).where(under_path(t.presence.c.org_path, org_path),
                                         t.presence.c.device_id > after)
                .order_by(t.presence.c.device_id).limit(STREAM_PAGE)).all()
            for row in rows:
                yield presence_of(row).seen()
            if len(rows) < STREAM_PAGE:
                return
            after = rows[-1][0]

    def iter_credentials_seen(self, *, org_path: str) -> Iterator[CredentialSeen]:
        """Every certificate and PSK identity the sightings under ``org_path`` showed."""
        s = t.sightings.c
        tally = CredentialTally(org_path)
        self._tally(tally, org_path, or_(s.certificate.is_not(None), s.psk_identity.is_not(None),
                                         and_(s.issuer.is_not(None), s.serial.is_not(None))))
        yield from tally.results()

    def devices_seen(self, *, org_path: str, device_ids: Sequence[str]) -> list[DeviceSeen]:
        """What the sources saw of these devices under ``org_path``, by device id."""
        p = t.presence.c
        # the ids as one parameter: a risk refresh asks for a whole import batch
        rows = self._conn.execute(
            select(t.presence).where(under_path(p.org_path, org_path),
                                     one_of(self._conn, p.device_id, sorted(set(device_ids))))
            .order_by(p.device_id))
        return [presence_of(row).seen() for row in rows]

    def credentials_seen(self, *, org_path: str,
                         keys: Sequence[tuple[IdentifierKind, str]]) -> list[CredentialSeen]:
        """The credentials of ``keys`` under ``org_path``: the sightings that show one of
        them, tallied as :meth:`iter_credentials_seen` tallies them all."""
        s = t.sightings.c
        wanted = set(keys)
        values: dict[IdentifierKind, list[str]] = {kind: [] for kind in _CREDENTIAL_KINDS}
        for kind, value in sorted(wanted):
            if kind in values:
                values[kind].append(value)
        tally = CredentialTally(org_path)
        # a sighting tallied twice (it shows two wanted credentials, in two chunks) counts
        # once: a tally keeps sets and maxima
        for kind, column in ((IdentifierKind.CERTIFICATE, s.certificate),
                             (IdentifierKind.PSK_IDENTITY, s.psk_identity)):
            for start in range(0, len(values[kind]), IN_CHUNK):
                self._tally(tally, org_path,
                            column.in_(values[kind][start:start + IN_CHUNK]))
        pairs = [value.rpartition("|") for value in values[IdentifierKind.ISSUER_SERIAL]]
        for start in range(0, len(pairs), IN_CHUNK):
            self._tally(tally, org_path, or_(*(and_(s.issuer == issuer, s.serial == serial)
                                              for issuer, _, serial in
                                              pairs[start:start + IN_CHUNK])))
        return [c for c in tally.results() if (c.kind, c.value) in wanted]

    def _tally(self, tally: CredentialTally, org_path: str,
               shows: ColumnElement[bool]) -> None:
        """Add the sightings under ``org_path`` that ``shows`` selects, a page at a time."""
        s = t.sightings.c
        fields = ("source", "seen_at", "site", "ip", "certificate", "issuer", "serial",
                  "subject", "not_after", "key", "signature_hash", "psk_identity")
        after = 0
        while True:
            rows = self._conn.execute(
                select(s.id, s.device_id, s.asset_id, *(s[name] for name in fields))
                .where(under_path(s.org_path, org_path), shows, s.id > after)
                .order_by(s.id).limit(STREAM_PAGE)).all()
            for row in rows:
                tally.add(Sighting(**dict(zip(fields, row[3:], strict=True))), row[1], row[2])
            if len(rows) < STREAM_PAGE:
                return
            after = rows[-1][0]
