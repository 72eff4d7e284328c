"""``device_credentials``: one row per credential holder, what its credential status is
judged from at any time (``storage/fleet_counts.py`` reads it).

A holder's row is rewritten in the transaction that issues or revokes one of its
certificates (the certificate store, the revocation sets), makes, promotes, revokes or
ends one of its PSKs (the PSK store), registers or revokes its OAuth client (the client
store), or moves the device (a transfer); ``device_credential_days`` moves with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, text

from iotiam.inventory.credential_status import NEVER, renewal_point
from iotiam.storage.raw import RawSql, RawStatement, in_params, in_statement, row_object, utc
from iotiam.storage.tables import inventory

_STANDING = inventory.device_credentials
_DAYS = inventory.device_credential_days
#: the instants of a holder's row, each counted by its day
INSTANTS = ("newest_not_before", "newest_not_after", "renew_by", "issued_until", "key_since")
_DAY_KEY = ("org_path", "type_name", "not_before_day", "not_after_day", "renew_by_day",
            "issued_until_day", "key_since_day")
#: the day of a missing instant: far from any threshold's day
NO_DAY = -1_000_000
_EPOCH = date(1970, 1, 1)
_TIMES = frozenset(INSTANTS)
#: rows written per ``INSERT`` when the whole table is rebuilt
_BATCH = 5000

# Every credential kind a device's status is judged from (``inventory/credential_status``),
# in one shape: a certificate; a PSK (not a ``next`` one) valid from its creation until
# it expires or :never; a device's OAuth client from its registration until :never, and
# ranked after every key (``late``: it decides only when no certificate or PSK is live).
_HELD = """
  SELECT device_id, status, not_before, not_after, public_key_sha256, 0 AS late,
         0 AS kind, id AS row_id, '' AS text_id
  FROM certificates WHERE device_id IS NOT NULL AND status <> 'reserved' {where}
  UNION ALL
  SELECT device_id, CASE WHEN status = 'active' THEN 'issued' ELSE 'revoked' END,
         created_at, COALESCE(expires_at, :never), 'psk:' || id, 0, 1, 0, id
  FROM psks WHERE status <> 'next' {where}
  UNION ALL
  SELECT device_id, CASE WHEN status = 'active' THEN 'issued' ELSE 'revoked' END,
         created_at, COALESCE(revoked_at, :never), 'oauth:' || client_id, 1, 2, 0, client_id
  FROM oauth_clients WHERE device_id IS NOT NULL {where}
"""
# Per device, in one pass of window functions (no self-join: a planner that misjudges a
# join of two derived tables of millions of rows falls back to nested loops): the live
# credential with the newest notBefore (a key ahead of an OAuth client; the oldest row
# on a tie, as a scan in row order finds it) ranks first, ahead of any revoked one;
# beside it the latest notAfter of any live one and when its key was first certified.
# Only issued and revoked certificates count (``iter_device_certificates``); a reserved
# one is not signed yet. (A revoked client's end is its revocation: only a live one's
# is read, and :never alone would leave its type unknown to PostgreSQL.)
_HOLDERS = """
SELECT x.device_id, d.org_path, d.type_name,
       CASE WHEN x.status = 'issued' THEN x.not_before END,
       CASE WHEN x.status = 'issued' THEN x.not_after END,
       x.issued_until,
       CASE WHEN x.status = 'issued' AND x.public_key_sha256 IS NOT NULL
            THEN x.key_since END
FROM (
  SELECT device_id, status, not_before, not_after, public_key_sha256,
         ROW_NUMBER() OVER (PARTITION BY device_id
                            ORDER BY CASE WHEN status = 'issued' THEN 0 ELSE 1 END, late,
                                     not_before DESC, kind, row_id, text_id) AS rank,
         MAX(CASE WHEN status = 'issued' THEN not_after END)
             OVER (PARTITION BY device_id) AS issued_until,
         MIN(not_before) OVER (PARTITION BY device_id, public_key_sha256) AS key_since
  FROM ({held}) held
) x
JOIN devices d ON d.id = x.device_id
WHERE x.rank = 1
"""
_ALL_HOLDERS = text(_HOLDERS.format(held=_HELD.format(where="")))
# the write path's statements go straight to the driver (storage/raw.py): they run in
# every issuance and revocation
_HOLDERS_OF = _HOLDERS.format(held=_HELD.format(where="AND device_id IN ({in_list})"))
_DEVICES_OF_SERIALS = ("SELECT DISTINCT device_id FROM certificates WHERE issuer_id = "
                       ":issuer AND serial IN ({in_list}) AND device_id IS NOT NULL")
# PostgreSQL: two transactions issuing to one device (two replicas) take turns here, so
# the second reads the first's certificate and row once it committed (READ COMMITTED
# reads afresh per statement): each replaces the row it sees, and the day buckets move
# by exactly what was replaced. SQLite has one writer at a time already.
_LOCK_HOLDERS = ("SELECT id FROM devices WHERE id IN ({in_list}) "
                 "ORDER BY id FOR UPDATE")
_STANDING_COLUMNS = ("device_id", "org_path", "type_name", *INSTANTS)
# the rows replaced, as they were: their buckets lose them
_DROP = (f"DELETE FROM device_credentials WHERE device_id IN ({{in_list}}) "  # noqa: S608
         f"RETURNING {', '.join(_STANDING_COLUMNS)}")
_PUT = RawStatement(
    f"INSERT INTO device_credentials ({', '.join(_STANDING_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(':' + c for c in _STANDING_COLUMNS)})")
_BUMP = RawStatement(
    f"INSERT INTO device_credential_days ({', '.join(_DAY_KEY)}, n) "  # noqa: S608
    f"VALUES ({', '.join(':' + c for c in _DAY_KEY)}, :n) ON CONFLICT ({', '.join(_DAY_KEY)}) "
    "DO UPDATE SET n = device_credential_days.n + excluded.n")


def _standing_row(row: Any) -> dict[str, Any]:
    """A ``device_credentials`` row from a :data:`_HOLDERS` result row."""
    device_id, org_path, type_name, not_before, not_after, issued_until, key_since = row
    not_before, not_after = utc(not_before), utc(not_after)
    return {
        "device_id": device_id, "org_path": org_path, "type_name": type_name,
        "newest_not_before": not_before, "newest_not_after": not_after,
        "renew_by": (renewal_point(not_before, not_after)
                     if not_before is not None and not_after is not None else None),
        "issued_until": utc(issued_until), "key_since": utc(key_since),
    }


def refresh_standing(conn: Connection, device_ids: Iterable[str]) -> None:
    """Rewrite the ``device_credentials`` rows of these devices from their certificates,
    and their day buckets (inside the transaction that changed them)."""
    raw = RawSql(conn)
    wanted = sorted(set(device_ids))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        ids = in_params("id", chunk)
        if conn.dialect.name == "postgresql":  # sent with the read below
            raw.defer(in_statement(_LOCK_HOLDERS, "id", len(chunk)), [ids])
        # the new rows and the replaced ones in one round trip (PostgreSQL)
        held, dropped = raw.all_together([
            (in_statement(_HOLDERS_OF, "id", len(chunk)), {**ids, "never": raw.when(NEVER)}),
            (in_statement(_DROP, "id", len(chunk)), ids)])
        rows = [_standing_row(r) for r in held]
        moved = Counter(day_bucket(r) for r in rows)
        moved.subtract(day_bucket(vars(row_object(_STANDING_COLUMNS, r, _TIMES)))
                       for r in dropped)
        raw.defer(_PUT, [{**r, **{c: raw.when(r[c]) for c in INSTANTS}} for r in rows])
        _bump(conn, moved)


def day_of(value: datetime | None) -> int:
    """The UTC day of ``value`` (days since 1970-01-01), ``NO_DAY`` for none."""
    return NO_DAY if value is None else (value.astimezone(UTC).date() - _EPOCH).days


def day_start(day: int) -> datetime:
    """The first instant of a :func:`day_of` day."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)


def day_bucket(row: Mapping[Any, Any]) -> tuple[Any, ...]:
    """A ``device_credentials`` row's key in ``device_credential_days``."""
    return (row["org_path"], row["type_name"], *(day_of(row[c]) for c in INSTANTS))


def _bump(conn: Connection, moved: Counter[tuple[Any, ...]]) -> None:
    """Add ``moved`` to the day buckets, keys in one order (no deadlock between writers)."""
    RawSql(conn).defer(_BUMP, [dict(zip(_DAY_KEY, key, strict=True), n=n)
                               for key, n in sorted(moved.items()) if n])


def devices_of_serials(conn: Connection, issuer_id: str, serials: Sequence[str]) -> set[str]:
    """The devices holding these certificates of one issuer (serials in stored form)."""
    raw = RawSql(conn)
    found: set[str] = set()
    for start in range(0, len(serials), 500):
        chunk = list(serials[start:start + 500])
        found.update(r[0] for r in raw.all(
            in_statement(_DEVICES_OF_SERIALS, "serial", len(chunk)),
            {"issuer": issuer_id, **in_params("serial", chunk)}))
    return found


def rebuild_standing(conn: Connection) -> int:
    """Rewrite every row and day bucket from the credentials (one query, streamed); how
    many holders were written."""
    conn.execute(delete(_STANDING))
    conn.execute(delete(_DAYS))
    written = 0
    buckets: Counter[tuple[Any, ...]] = Counter()
    batch: list[dict[str, Any]] = []
    # streamed: a million holders are never all in memory
    for row in conn.execute(_ALL_HOLDERS, {"never": RawSql(conn).when(NEVER)},
                            execution_options={"stream_results": True, "yield_per": _BATCH}):
        batch.append(_standing_row(row))
        buckets[day_bucket(batch[-1])] += 1
        if len(batch) == _BATCH:
            written += _write(conn, batch)
            batch = []
    written += _write(conn, batch)
    _bump(conn, buckets)
    return written


def _write(conn: Connection, rows: list[dict[str, Any]]) -> int:
    if rows:
        conn.execute(insert(_STANDING), rows)
    return len(rows)
