"""SQL discovery store: batched writes of an import, and the lookups reconciliation needs.

An import batch is a few thousand rows of each kind, so every write is one statement
per batch, sent straight to the driver: ``executemany`` of one prepared statement on
SQLite; on PostgreSQL a binary ``COPY`` into a staging table of the session and one
``INSERT ... SELECT ... ON CONFLICT`` from it (``raw.BulkInsert``, ``copied``). A batch's
sighting digests are claimed first (``INSERT ... ON CONFLICT DO NOTHING RETURNING``: the
new ones come back, the rest are duplicates); only sightings that show a credential are
kept as rows.
Reads of assets, presence and credentials are in ``discovery_reads.py``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from iotiam.discovery.models import (
    Binding,
    DevicePresence,
    DiscoveredAsset,
    IdentifierKind,
)
from iotiam.discovery.ports import SightingRow
from iotiam.storage.discovery_reads import SqlDiscoveryReads, asset_of, presence_of
from iotiam.storage.raw import BulkInsert, bulk_upsert, dbapi_cursor
from iotiam.storage.tables import discovery as t

#: values per ``IN (...)`` on SQLite (its limit is 32766 parameters)
IN_CHUNK = 900
#: the advisory lock that keeps imports one at a time on PostgreSQL: this constant and a
#: hash of the schema, so that installations sharing one server (a schema each) do not
#: queue behind each other's imports (advisory locks are per database, not per schema)
IMPORT_LOCK = 0x64697363  # "disc"
#: the page cache an import's connection may use on SQLite, KiB
SQLITE_IMPORT_CACHE_KIB = 131072

_SIGHTING_FIELDS = ("source", "seen_at", "site", "network", "ip", "mac", "hostname",
                    "client_id", "username", "certificate", "issuer", "serial", "subject",
                    "not_after", "key", "signature_hash", "psk_identity", "vendor", "model")
_SIGHTING_VALUES = operator.attrgetter(*_SIGHTING_FIELDS)
_SIGHTING_COLUMNS = ("digest", "org_path", *_SIGHTING_FIELDS, "open_ports", "detail",
                     "device_id", "asset_id", "basis", "confidence")
_ASSET_COLUMNS = ("id", "org_path", "status", "first_seen", "last_seen", "sources",
                  "sightings", "site", "network", "ip", "mac", "hostname", "vendor", "model",
                  "open_ports", "device_id")
_BINDING_COLUMNS = ("kind", "value", "org_path", "asset_id", "device_id", "first_seen",
                    "last_seen")
_PRESENCE_COLUMNS = ("device_id", "org_path", "first_seen", "last_seen", "sources",
                     "sightings", "places")

#: the tables an import grows, by name (only these names are ever analysed)
_ANALYSED = {name: name for name in ("discovery_sightings", "discovery_identifiers",
                                     "discovery_assets", "discovery_presence")}
_GROWN_TABLES = ("SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) "
                 "AND schemaname = current_schema() AND n_mod_since_analyze > 1000 "
                 "AND n_mod_since_analyze > n_live_tup / 2")
# constant names only, never input
_ASSETS_WHERE = f"SELECT {', '.join(_ASSET_COLUMNS)} FROM discovery_assets WHERE {{in}}"  # noqa: S608
_PRESENCE_WHERE = (f"SELECT {', '.join(_PRESENCE_COLUMNS)} "  # noqa: S608
                   "FROM discovery_presence WHERE {in}")


_CLAIM_PG = ("INSERT INTO discovery_sighting_digests (digest) SELECT unnest(%s::bytea[]) "
             "ON CONFLICT DO NOTHING RETURNING digest")
_CLAIM_SQLITE_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS discovery_claimed "
                       "(digest BLOB PRIMARY KEY) WITHOUT ROWID")
_CLAIM_SQLITE_FILL = "INSERT OR IGNORE INTO temp.discovery_claimed (digest) VALUES (?)"
# ``WHERE true``: SQLite's grammar needs it between a SELECT and an ON CONFLICT
_CLAIM_SQLITE_MOVE = ("INSERT INTO discovery_sighting_digests (digest) SELECT digest "
                      "FROM temp.discovery_claimed WHERE true ON CONFLICT DO NOTHING "
                      "RETURNING digest")
_CLAIM_SQLITE_EMPTY = "DELETE FROM temp.discovery_claimed"
_ADD_SIGHTINGS = BulkInsert(t.sightings, _SIGHTING_COLUMNS, "ON CONFLICT (digest) DO NOTHING")
# PostgreSQL: through a staging table filled by ``COPY`` (``BulkInsert``'s ``copied``)
_SAVE_ASSETS = bulk_upsert(t.assets, _ASSET_COLUMNS, ("id",), copied=True)
_SAVE_BINDINGS = bulk_upsert(t.bindings, _BINDING_COLUMNS, ("kind", "value", "org_path"),
                             copied=True)
_SAVE_PRESENCE = bulk_upsert(t.presence, _PRESENCE_COLUMNS, ("device_id",), copied=True)


#: each kind's stored text (``Enum.value`` is a property: a lookup here is a third of it)
_KIND_TEXT = {kind: kind.value for kind in IdentifierKind}


def _ports(ports: tuple[int, ...]) -> str | None:
    return ",".join(map(str, ports)) if ports else None


class SqlDiscoveryStore(SqlDiscoveryReads):
    """``DiscoveryStore`` on one connection (the unit of work's)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._pg = conn.dialect.name == "postgresql"

    def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
        cursor = dbapi_cursor(self._conn)
        try:
            if self._pg:
                # planned for these values each time (a custom plan): a generic plan of
                # an IN list is chosen blind, and has scanned a table per value
                cursor.execute(sql, params, prepare=False)
            else:
                cursor.execute(sql, params)
            return [] if cursor.description is None else list(cursor.fetchall())
        finally:
            cursor.close()

    def _where_in(self, select: str, column: str, values: Sequence[Any],
                  extra: Sequence[Any] = (), array: str = "text[]") -> list[Any]:
        """``select`` + ``WHERE column IN values`` (+ the caller's ``AND ...`` with
        ``extra`` parameters); one query on PostgreSQL (``= ANY``), chunks on SQLite."""
        if not values:
            return []
        if self._pg:
            # planned with the values known (``_query``), ``= ANY`` is an index probe per
            # value or, if the planner scans, one hashed lookup per row (PostgreSQL 14+)
            where = select.replace("{in}", f"{column} = ANY(%s::{array})").replace("?", "%s")
            return self._query(where, [list(values), *extra])
        found: list[Any] = []
        for start in range(0, len(values), IN_CHUNK):
            chunk = values[start:start + IN_CHUNK]
            where = select.replace("{in}", f"{column} IN ({', '.join('?' * len(chunk))})")
            found.extend(self._query(where, [*chunk, *extra]))
        return found

    def begin_import(self) -> None:
        """PostgreSQL: a transaction-scoped advisory lock, and fresh statistics for the
        discovery tables that grew since they were last analysed; SQLite has one writer
        anyway, and its planner takes the indexes without statistics."""
        if not self._pg:
            # a batch dirties pages all over the bindings' and the digests' keys; with
            # SQLite's default 2 MB cache they spill to the WAL and are read back within
            # the transaction (the pragma is this connection's and an upper bound: the
            # memory is taken only when used)
            self._query(f"PRAGMA cache_size=-{SQLITE_IMPORT_CACHE_KIB}", [])
            return
        self._query("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                    [IMPORT_LOCK])
        # an import grows these tables faster than autovacuum analyses them; with the
        # statistics of an empty table the planner scans them for every looked-up value.
        # Then again each time it has doubled (what changed since is over half of what
        # lives; a table never analysed has it all): an ANALYZE samples a fixed number of
        # rows (~0.1 s), and analysing after every third's growth ran twice as many
        for (table,) in self._query(_GROWN_TABLES, [list(_ANALYSED)]):
            self._query(f"ANALYZE {_ANALYSED[table]}", [])

    def claim_digests(self, digests: Sequence[bytes]) -> set[bytes]:
        """Record these sighting digests; the ones that were not recorded before."""
        if not digests:
            return set()
        if self._pg:
            rows = self._query(_CLAIM_PG, [list(digests)])
            return {bytes(row[0]) for row in rows}
        # SQLite's RETURNING answers ``execute``, not ``executemany``: the digests go
        # through a temporary table (one prepared insert per digest), then one statement
        # moves the new ones over and names them
        cursor = dbapi_cursor(self._conn)
        try:
            cursor.execute(_CLAIM_SQLITE_STAGE)
            cursor.executemany(_CLAIM_SQLITE_FILL, [(d,) for d in sorted(digests)])
            fresh = {row[0] for row in cursor.execute(_CLAIM_SQLITE_MOVE).fetchall()}
            cursor.execute(_CLAIM_SQLITE_EMPTY)
            return fresh
        finally:
            cursor.close()

    def bindings_for(self, kind: IdentifierKind, values: Sequence[str], *,
                     org_path: str) -> Mapping[str, Binding]:
        """``value -> binding`` under ``org_path`` (its own first, else the latest)."""
        rows = self._where_in(
            "SELECT value, org_path, asset_id, device_id, first_seen, last_seen "
            "FROM discovery_identifiers WHERE {in} AND kind = ? AND substr(org_path, 1, ?) = ?",
            "value", list(values), [str(kind), len(org_path), org_path])
        found: dict[str, Binding] = {}
        # in the rows' order, not sorted (a batch reads thousands): the choice is the same
        # as in (value, org_path) order, ties on the time going to the smaller path
        for value, path, asset_id, device_id, first, last in rows:
            old = found.get(value)
            if old is None or (old.org_path != org_path and (
                    path == org_path or last > old.last_seen
                    or (last == old.last_seen and path < old.org_path))):
                found[value] = Binding(kind, value, path, first, last, asset_id, device_id)
        return found

    def assets_by_id(self, asset_ids: Sequence[str]) -> Mapping[str, DiscoveredAsset]:
        """These assets, without identifiers."""
        rows = self._where_in(_ASSETS_WHERE, "id", list(asset_ids))
        return {row[0]: asset_of(row) for row in rows}

    def presence_for(self, device_ids: Sequence[str]) -> Mapping[str, DevicePresence]:
        """These devices' presence aggregates."""
        rows = self._where_in(_PRESENCE_WHERE, "device_id", list(device_ids))
        return {row[0]: presence_of(row) for row in rows}

    def merge_assets(self, merged: Mapping[str, str]) -> None:
        """Move each gone asset's bindings and sightings to the kept one; delete it."""
        if not merged:
            return
        mark = "%s" if self._pg else "?"
        pairs = [(kept, gone) for gone, kept in merged.items()]
        cursor = dbapi_cursor(self._conn)
        try:
            for table in ("discovery_identifiers", "discovery_sightings"):
                cursor.executemany(f"UPDATE {table} SET asset_id = {mark} "  # noqa: S608
                                   f"WHERE asset_id = {mark}", pairs)
            cursor.executemany(f"DELETE FROM discovery_assets WHERE id = {mark}",  # noqa: S608
                               [(gone,) for gone in merged])
        finally:
            cursor.close()

    def save_assets(self, assets: Sequence[DiscoveredAsset]) -> None:
        """Insert or replace these assets' rows."""
        # in key order, here and below: neighbouring rows land on the same pages
        _SAVE_ASSETS.run(self._conn, [
            (a.id, a.org_path, str(a.status), a.first_seen, a.last_seen, ",".join(a.sources),
             a.sightings, a.site, a.network, a.ip, a.mac, a.hostname, a.vendor, a.model,
             _ports(a.open_ports), a.device_id)
            for a in sorted(assets, key=operator.attrgetter("id"))])

    def save_bindings(self, bindings: Sequence[Binding]) -> None:
        """Insert or replace these bindings."""
        kind_text = _KIND_TEXT
        _SAVE_BINDINGS.run(self._conn, [
            (kind_text[b.kind], b.value, b.org_path, b.asset_id, b.device_id, b.first_seen,
             b.last_seen) for b in sorted(bindings)])

    def save_presence(self, presence: Sequence[DevicePresence]) -> None:
        """Insert or replace these presence aggregates."""
        _SAVE_PRESENCE.run(self._conn, [
            (p.device_id, p.org_path, p.first_seen, p.last_seen, ",".join(sorted(p.sources)),
             p.sightings, json.dumps([[site, ip, at] for (site, ip), at in p.places.items()]))
            for p in presence])

    def add_sightings(self, rows: Sequence[SightingRow]) -> None:
        """Keep the rows that show a credential (their digests are claimed already)."""
        _ADD_SIGHTINGS.run(self._conn, [
            (digest, org_path, *_SIGHTING_VALUES(s), _ports(s.open_ports), s.detail,
             m.device_id, m.asset_id, m.basis.value, m.confidence)
            for s, digest, org_path, m in rows
            if s.certificate or s.psk_identity or (s.issuer and s.serial)])
