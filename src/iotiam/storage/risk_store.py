"""SQL implementation of the risk register's store (``risk.ports.RiskStore``).

A batch of entries is a handful of statements whatever its size (count what the batch
replaces, delete it, insert the new rows, add the difference to the tallies), never a
statement per row. Pages are keyset-paginated on (score down, id up): on the entries'
indexes (``ix_risk_entries_score_id``, ``..._site_score_id``) or, filtered by factor, on
the factor rows' (``ix_risk_entry_factors_factor``, ``..._site``), which carry the
entry's org path, site and score for that purpose.

Totals (``docs/risk-register.md``, "Totals"): the entries and factor rows per org path,
site, factor and severity are kept in ``risk_tallies`` by every write, in the write's
transaction. A total filtered by nothing but org, site and factor is a sum of a few
tally rows, less the factor rows a live acceptance hides (a join from the few live
acceptances); any other combination is an exact count over the index its page uses.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from iotiam.inventory.models import Criticality, DeviceClass
from iotiam.risk.models import (
    Acceptance,
    EntryFilter,
    FactorHit,
    RiskEntry,
    RiskFactor,
    Severity,
    Subject,
    TrendPoint,
    Weighting,
)
from iotiam.risk.ports import Cursor
from iotiam.storage.after_commit import after_commit, vacuum_analyse
from iotiam.storage.raw import ByIds, RawSql, RawStatement, dbapi_cursor
from iotiam.storage.rows import dump_json, load_json, one_of, under_path
from iotiam.storage.tables import risk as t

#: ids per ``IN`` list
CHUNK = 500
#: stale entries deleted per statement
STALE_CHUNK = 5000
#: a batch this large (a rebuild's) gets a larger page cache on SQLite
LARGE_BATCH = 1000
SQLITE_WRITE_CACHE_KIB = 131072
_E, _F, _A, _T = t.risk_entries, t.risk_entry_factors, t.risk_acceptances, t.risk_tallies
#: the tally key of the entries themselves (factor rows carry their factor)
ENTRIES = ""
Key = tuple[str, str, str, int]
# a rebuild writes hundreds of thousands of rows: straight to the driver (storage/raw.py)
_ENTRY_COLUMNS = ("id", "subject", "subject_id", "org_path", "site", "type", "score",
                  "factors", "criticality", "device_class", "can_write", "holder",
                  "digest", "generation", "updated_at")
_FACTOR_COLUMNS = ("entry_id", "factor", "severity", "org_path", "site", "score")
_TALLY = RawStatement(
    "INSERT INTO risk_tallies (org_path, site, factor, severity, count) "
    "VALUES (:org_path, :site, :factor, :severity, :count) "
    "ON CONFLICT (org_path, site, factor, severity) "
    "DO UPDATE SET count = risk_tallies.count + excluded.count")


# deleted rows come back (RETURNING) to be taken off the tallies: one statement each
_DELETE_FACTORS = ByIds("DELETE FROM risk_entry_factors WHERE entry_id {ids} "
                         "RETURNING org_path, site, factor, severity")
_DELETE_ENTRIES = ByIds("DELETE FROM risk_entries WHERE id {ids} RETURNING org_path, site")
_DIGESTS = ByIds("SELECT id, digest FROM risk_entries WHERE id {ids}")
#: the tables a rebuild rewrites (constant names, never input)
_ANALYSED = ("risk_entries", "risk_entry_factors", "risk_tallies")


def _hidden(now: float) -> ColumnElement[bool]:
    """The factor row is hidden by a live acceptance."""
    return exists().where(_A.c.entry_id == _F.c.entry_id, _A.c.factor == _F.c.factor,
                          _A.c.expires_at > now)


def _factor_rows(entry: RiskEntry) -> dict[str, int]:
    """Factor -> the worst severity of its hits (one row per factor)."""
    rows: dict[str, int] = {}
    for h in entry.factors:
        rows[h.factor.value] = max(rows.get(h.factor.value, 0), int(h.severity))
    return rows


class SqlRiskStore:
    """The register in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def put_entries(self, entries: Sequence[RiskEntry], *, generation: int,
                    holder: Mapping[str, str | None], now: float) -> None:
        """Replace these entries and their factor rows; the tallies follow. An entry
        whose stored row holds the same content (its digest) is left as it is: a rebuild
        over a full register rewrites only what changed."""
        if not entries:
            return
        raw = RawSql(self._c)
        # in id order: neighbouring rows land on the same pages of the primary keys
        entries = sorted(entries, key=lambda e: e.id)
        stored = dict(_DIGESTS.rows(raw, [e.id for e in entries]))
        changed: list[tuple[RiskEntry, tuple[Any, ...]]] = []
        for e in entries:
            digest = _digest(e, holder.get(e.id))
            if stored.get(e.id) != digest:
                changed.append((e, _entry_row(e, holder.get(e.id), digest, generation, now)))
        if not changed:
            return
        if raw.is_sqlite and len(changed) >= LARGE_BATCH:
            # a batch dirties a page of every index per few rows (entry ids are hashes,
            # spread over the whole table); SQLite's default 2 MB cache would spill them
            # to the WAL and read them back mid-transaction (the pragma is this
            # connection's, an upper bound: memory is taken only when used)
            self._c.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_WRITE_CACHE_KIB}")
        delta: Counter[Key] = Counter()
        replaced = [e.id for e, _ in changed if e.id in stored]
        if replaced:
            _take_off(delta, _DELETE_ENTRIES.rows(raw, replaced),
                      _DELETE_FACTORS.rows(raw, replaced))
        factor_rows: list[tuple[Any, ...]] = []
        for e, _ in changed:
            site = e.site or ""
            delta[(e.org_path, site, ENTRIES, 0)] += 1
            for factor, severity in _factor_rows(e).items():
                delta[(e.org_path, site, factor, severity)] += 1
                factor_rows.append((e.id, factor, severity, e.org_path, e.site, e.score))
        self._insert(raw, "risk_entries", _ENTRY_COLUMNS, [row for _, row in changed])
        self._insert(raw, "risk_entry_factors", _FACTOR_COLUMNS, factor_rows)
        self._tally(raw, delta)

    def _insert(self, raw: RawSql, table: str, columns: Sequence[str],
                rows: Sequence[tuple[Any, ...]]) -> None:
        """Bulk insert: ``executemany`` on SQLite, ``COPY`` on PostgreSQL (a row costs the
        driver a few microseconds instead of a pipelined statement of its own)."""
        names = ", ".join(columns)
        dbapi = self._c.dialect.loaded_dbapi
        cursor = dbapi_cursor(self._c)
        # table and column names are this module's constants, never input
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})" \
            if raw.is_sqlite else f"COPY {table} ({names}) FROM STDIN"  # noqa: S608
        try:
            if raw.is_sqlite:
                cursor.executemany(sql, rows)
            else:
                with cursor.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
        except dbapi.Error as e:
            # the same IntegrityError / DataError Core would raise (storage/database.py)
            raise DBAPIError.instance(sql, None, e, dbapi.Error) from e
        finally:
            cursor.close()

    @staticmethod
    def _tally(raw: RawSql, delta: Counter[Key]) -> None:
        """Add ``delta`` to the tallies, keys in order (two writers never deadlock)."""
        raw.change_many(_TALLY, [
            {"org_path": k[0], "site": k[1], "factor": k[2], "severity": k[3], "count": n}
            for k, n in sorted(delta.items()) if n])

    def remove_stale(self, generation: int, kept: Collection[str] = frozenset()) -> int:
        """Delete what no rebuild since ``generation`` wrote, but ``kept`` (the entries
        this rebuild found unchanged and left as they were)."""
        stale = [ident for (ident,) in self._c.execute(
            select(_E.c.id).where(_E.c.generation < generation)) if ident not in kept]
        removed = 0
        for start in range(0, len(stale), STALE_CHUNK):
            removed += self.remove_entries(stale[start:start + STALE_CHUNK])
        self._c.execute(delete(_T).where(_T.c.count == 0))
        return removed

    def remove_for_devices(self, device_ids: Sequence[str]) -> int:
        """Delete the entries these devices hold."""
        if not device_ids:
            return 0
        # the ids as one parameter: a risk refresh names a whole import batch
        return self.remove_entries([r[0] for r in self._c.execute(
            select(_E.c.id).where(one_of(self._c, _E.c.holder, device_ids)))])

    def remove_entries(self, entry_ids: Sequence[str]) -> int:
        """Delete these entries, keeping the counters by what went."""
        if not entry_ids:
            return 0
        raw = RawSql(self._c)
        delta: Counter[Key] = Counter()
        gone = _DELETE_ENTRIES.rows(raw, list(entry_ids))
        _take_off(delta, gone, _DELETE_FACTORS.rows(raw, list(entry_ids)))
        self._tally(raw, delta)
        return len(gone)

    def get(self, entry_id: str) -> RiskEntry | None:
        """One entry with its acceptances."""
        row = self._c.execute(select(_E).where(_E.c.id == entry_id)).first()
        if row is None:
            return None
        return _entry(row, self._acceptances([entry_id]).get(entry_id, ()))

    def _acceptances(self, ids: Sequence[str]) -> dict[str, list[Acceptance]]:
        found: dict[str, list[Acceptance]] = {}
        for start in range(0, len(ids), CHUNK):
            rows = self._c.execute(select(_A).where(_A.c.entry_id.in_(ids[start:start + CHUNK]))
                                   .order_by(_A.c.entry_id, _A.c.factor))
            for row in rows:
                found.setdefault(row.entry_id, []).append(_acceptance(row))
        return found

    @staticmethod
    def _scope(org_path: str, where: EntryFilter) -> str:
        return where.org_path if where.org_path and where.org_path.startswith(org_path) \
            else org_path

    def _where(self, query: Select[Any], org_path: str, where: EntryFilter,
               now: float) -> Select[Any]:
        """``where`` on the entries, or, by factor, on the factor rows joined to them."""
        scope = self._scope(org_path, where)
        if where.factor is not None:
            # driven from the factor rows' indexes: (factor[, site], score down, id)
            query = query.where(_F.c.factor == where.factor.value, ~_hidden(now),
                                under_path(_F.c.org_path, scope))
            if where.site is not None:
                query = query.where(_F.c.site == where.site)
            if where.min_score is not None:
                query = query.where(_F.c.score >= where.min_score)
        else:
            query = query.where(under_path(_E.c.org_path, scope))
            if where.site is not None:
                query = query.where(_E.c.site == where.site)
            if where.min_score is not None:
                query = query.where(_E.c.score >= where.min_score)
        if where.type is not None:
            query = query.where(_E.c.type == where.type)
        if where.subject is not None:
            query = query.where(_E.c.subject == where.subject.value)
        return query

    def page(self, *, org_path: str, where: EntryFilter, after: Cursor | None,
             limit: int, now: float) -> list[RiskEntry]:
        """Score down, then id; after the cursor."""
        if where.factor is not None:
            query = select(_E).select_from(_F.join(_E, _E.c.id == _F.c.entry_id))
            score, ident = _F.c.score, _F.c.entry_id
        else:
            query, score, ident = select(_E), _E.c.score, _E.c.id
        query = self._where(query, org_path, where, now)
        if after is not None:
            query = query.where(or_(score < after[0], and_(score == after[0], ident > after[1])))
        rows = self._c.execute(query.order_by(score.desc(), ident).limit(limit)).all()
        accepted = self._acceptances([r.id for r in rows])
        return [_entry(r, accepted.get(r.id, ())) for r in rows]

    def count(self, *, org_path: str, where: EntryFilter, now: float) -> int:
        """How many match: from the tallies when only org, site and factor narrow it,
        else counted on the page's index."""
        if where.type is None and where.subject is None and where.min_score is None \
                and where.site != "":
            return self._tallied(self._scope(org_path, where), where, now)
        if where.factor is None:
            query = select(func.count()).select_from(_E)
        elif where.type is None and where.subject is None:
            query = select(func.count()).select_from(_F)
        else:
            query = select(func.count()).select_from(_F.join(_E, _E.c.id == _F.c.entry_id))
        return int(self._c.execute(self._where(query, org_path, where, now)).scalar_one())

    def _tallied(self, scope: str, where: EntryFilter, now: float) -> int:
        factor = where.factor.value if where.factor is not None else ENTRIES
        query = select(func.coalesce(func.sum(_T.c.count), 0)).where(
            under_path(_T.c.org_path, scope), _T.c.factor == factor)
        if where.site is not None:
            query = query.where(_T.c.site == where.site)
        total = int(self._c.execute(query).scalar_one())
        if where.factor is not None:
            total -= sum(self._hidden_rows(scope, now, factor=factor, site=where.site).values())
        return total

    def _hidden_rows(self, scope: str, now: float, *, factor: str | None = None,
                     site: str | None = None) -> Counter[tuple[str, int]]:
        """Factor rows live acceptances hide, per (factor, severity): the few acceptances
        joined to their rows."""
        query = select(_F.c.factor, _F.c.severity, func.count()).select_from(
            _A.join(_F, and_(_F.c.entry_id == _A.c.entry_id, _F.c.factor == _A.c.factor))
        ).where(_A.c.expires_at > now, under_path(_F.c.org_path, scope))
        if factor is not None:
            query = query.where(_A.c.factor == factor)
        if site is not None:
            query = query.where(_F.c.site == site)
        rows = self._c.execute(query.group_by(_F.c.factor, _F.c.severity))
        return Counter({(f, int(s)): int(n) for f, s, n in rows})

    def iter_entries(self, *, org_path: str, where: EntryFilter, now: float
                     ) -> Iterator[RiskEntry]:
        """Page after page (no cursor held open between pages)."""
        after: Cursor | None = None
        while True:
            items = self.page(org_path=org_path, where=where, after=after, limit=CHUNK, now=now)
            yield from items
            if len(items) < CHUNK:
                return
            after = (items[-1].score, items[-1].id)

    def factor_counts(self, *, org_path: str, now: float
                      ) -> tuple[int, dict[str, int], dict[str, int]]:
        """Entries, and visible hits per factor and per severity (from the tallies)."""
        total = self._tallied(org_path, EntryFilter(), now)
        rows = self._c.execute(select(_T.c.factor, _T.c.severity, func.sum(_T.c.count)).where(
            under_path(_T.c.org_path, org_path), _T.c.factor != ENTRIES).group_by(
            _T.c.factor, _T.c.severity))
        hits = Counter({(f, int(s)): int(n) for f, s, n in rows})
        hits.subtract(self._hidden_rows(org_path, now))
        by_factor: dict[str, int] = {}
        by_severity: dict[str, int] = {}
        for (factor, severity), n in sorted(hits.items()):
            if n > 0:
                by_factor[factor] = by_factor.get(factor, 0) + n
                label = Severity(severity).label
                by_severity[label] = by_severity.get(label, 0) + n
        return total, by_factor, by_severity

    def set_score(self, entry_id: str, score: int) -> None:
        """Replace the score (the factor rows carry it too)."""
        # no digest: the next rebuild writes the row whatever it finds
        self._c.execute(update(_E).where(_E.c.id == entry_id).values(score=score,
                                                                       digest=None))
        self._c.execute(update(_F).where(_F.c.entry_id == entry_id).values(score=score))

    def accept(self, acceptance: Acceptance) -> None:
        """Store (replace) an acceptance."""
        self._c.execute(delete(_A).where(_A.c.entry_id == acceptance.entry_id,
                                         _A.c.factor == acceptance.factor.value))
        self._c.execute(insert(_A).values(
            entry_id=acceptance.entry_id, factor=acceptance.factor.value,
            org_path=acceptance.org_path, reason=acceptance.reason,
            expires_at=acceptance.expires_at, accepted_by=acceptance.by,
            created_at=acceptance.created_at))

    def live_acceptances(self, now: float) -> list[Acceptance]:
        """Unexpired acceptances."""
        rows = self._c.execute(select(_A).where(_A.c.expires_at > now)
                               .order_by(_A.c.entry_id, _A.c.factor))
        return [_acceptance(r) for r in rows]

    def with_expired_acceptances(self, now: float, *, since: float) -> list[str]:
        """Entries an acceptance hid until a time in (since, now]."""
        rows = self._c.execute(select(_A.c.entry_id).distinct().where(
            _A.c.expires_at > since, _A.c.expires_at <= now).order_by(_A.c.entry_id))
        return [r.entry_id for r in rows]

    def start_rebuild(self, at: float) -> int:
        """Number a new rebuild (the table's autoincrement: never reused)."""
        result = self._c.execute(insert(t.risk_rebuilds).values(started_at=at))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def current_generation(self) -> int:
        """The newest rebuild's number."""
        return int(self._c.execute(select(func.max(t.risk_rebuilds.c.id))).scalar() or 0)

    def finish_rebuild(self, generation: int, at: float,
                       counts: Mapping[str, Mapping[str, int]]) -> None:
        """Record the finish and the counts."""
        self._c.execute(update(t.risk_rebuilds).where(t.risk_rebuilds.c.id == generation)
                        .values(finished_at=at))
        rows = [{"rebuild": generation, "org_path": path, "key": key, "count": n}
                for path, keys in counts.items() for key, n in keys.items()]
        if rows:
            self._c.execute(insert(t.risk_counts), rows)
        self._analyse()

    def _analyse(self) -> None:
        """On PostgreSQL, VACUUM (ANALYZE) the tables a rebuild rewrote once it commits.
        Autovacuum gets to them minutes later, and until then the planner, expecting a
        handful of rows, sorted the whole register for every console page (0.1 s at 100k
        entries, 0.8 s for a factor's page) instead of walking the (score, id) indexes,
        and a filtered total visited every heap page the rebuild wrote (0.3-0.45 s at 1M
        entries) where the visibility map lets it read the index alone (~50 ms). The
        statistics collector's modification counts lag the rebuild's commits, so it runs
        every time; at 1M entries it takes a few seconds of a rebuild's minutes."""
        if self._c.dialect.name != "postgresql":
            return
        after_commit(self._c, vacuum_analyse(_ANALYSED))

    def trend(self, *, org_path: str, limit: int) -> list[TrendPoint]:
        """Sums under the path of the last finished rebuilds, oldest first."""
        r = t.risk_rebuilds
        last = self._c.execute(select(r.c.id, r.c.finished_at).where(
            r.c.finished_at.is_not(None)).order_by(r.c.id.desc()).limit(limit)).all()
        points = {row.id: TrendPoint(row.id, row.finished_at, {}) for row in last}
        if not points:
            return []
        c = t.risk_counts
        sums = self._c.execute(select(c.c.rebuild, c.c.key, func.sum(c.c.count)).where(
            c.c.rebuild.in_(list(points)), under_path(c.c.org_path, org_path)).group_by(
            c.c.rebuild, c.c.key))
        for rebuild, key, n in sums:
            points[rebuild].counts[key] = int(n)
        return [points[k] for k in sorted(points)]


def _take_off(delta: Counter[Key], entries: Iterable[Any], factors: Iterable[Any]) -> None:
    """Take deleted rows ((org, site) of entries, (org, site, factor, severity) of factor
    rows) off ``delta``."""
    for org_path, site in entries:
        delta[(org_path, site or "", ENTRIES, 0)] -= 1
    for org_path, site, factor, severity in factors:
        delta[(org_path, site or "", factor, int(severity))] -= 1


def _digest(e: RiskEntry, holder: str | None) -> str:
    """Of what an entry's row stores but its generation and time (the hits as their
    values: no JSON is encoded for an entry that turns out unchanged)."""
    content = (e.id, e.subject.value, e.subject_id, e.org_path, e.site, e.type, e.score,
               [(h.factor.value, int(h.severity), h.summary, h.evidence, h.since)
                for h in e.factors], _text(e.weighting.criticality),
               _text(e.weighting.device_class), e.weighting.can_write, holder)
    return hashlib.blake2b(repr(content).encode(), digest_size=16).hexdigest()


def _entry_row(e: RiskEntry, holder: str | None, digest: str, generation: int,
               now: float) -> tuple[Any, ...]:
    """The row of ``risk_entries`` (``_ENTRY_COLUMNS``) for an entry."""
    return (e.id, e.subject.value, e.subject_id, e.org_path, e.site, e.type, e.score,
            dump_json([h.to_json() for h in e.factors]), _text(e.weighting.criticality),
            _text(e.weighting.device_class), e.weighting.can_write, holder, digest,
            generation, now)


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def _acceptance(row: Any) -> Acceptance:
    return Acceptance(row.entry_id, RiskFactor(row.factor), row.reason, row.expires_at,
                      row.accepted_by, row.created_at, row.org_path)


def _entry(row: Any, accepted: Sequence[Acceptance]) -> RiskEntry:
    weighting = Weighting(Criticality(row.criticality) if row.criticality else None,
                          DeviceClass(row.device_class) if row.device_class else None,
                          bool(row.can_write))
    return RiskEntry(row.id, Subject(row.subject), row.subject_id, row.org_path, row.site,
                     row.type, row.score,
                     tuple(FactorHit.from_json(h) for h in load_json(row.factors)),
                     tuple(accepted), weighting)
