"""SQL implementation of the risk register's store (``risk.ports.RiskStore``).

A batch of entries is four statements (delete the old rows and factor rows of those ids,
insert the new ones), never a statement per row. Pages are keyset-paginated on
(score down, id up), the index ``ix_risk_entries_score_id``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
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
from iotiam.storage.raw import RawSql, RawStatement
from iotiam.storage.rows import dump_json, load_json, under_path
from iotiam.storage.tables import risk as t

#: ids per ``IN`` list
CHUNK = 500
_E, _F, _A = t.risk_entries, t.risk_entry_factors, t.risk_acceptances
# a rebuild writes hundreds of thousands of rows: straight to the driver (storage/raw.py)
_INSERT_ENTRY = RawStatement(
    "INSERT INTO risk_entries (id, subject, subject_id, org_path, site, type, score, "
    "factors, criticality, device_class, can_write, holder, generation, updated_at) "
    "VALUES (:id, :subject, :subject_id, :org_path, :site, :type, :score, :factors, "
    ":criticality, :device_class, :can_write, :holder, :generation, :updated_at)")
_INSERT_FACTOR = RawStatement(
    "INSERT INTO risk_entry_factors (entry_id, factor, severity) "
    "VALUES (:entry_id, :factor, :severity)")


def _hidden(now: float) -> ColumnElement[bool]:
    """The factor row is hidden by a live acceptance."""
    return exists().where(_A.c.entry_id == _F.c.entry_id, _A.c.factor == _F.c.factor,
                          _A.c.expires_at > now)


class SqlRiskStore:
    """The register in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def put_entries(self, entries: Sequence[RiskEntry], *, generation: int,
                    holder: Mapping[str, str | None], now: float) -> None:
        """Replace these entries and their factor rows."""
        if not entries:
            return
        ids = [e.id for e in entries]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            self._c.execute(delete(_F).where(_F.c.entry_id.in_(chunk)))
            self._c.execute(delete(_E).where(_E.c.id.in_(chunk)))
        raw = RawSql(self._c)
        raw.change_many(_INSERT_ENTRY, [{
            "id": e.id, "subject": e.subject.value, "subject_id": e.subject_id,
            "org_path": e.org_path, "site": e.site, "type": e.type, "score": e.score,
            "factors": dump_json([h.to_json() for h in e.factors]),
            "criticality": _text(e.weighting.criticality),
            "device_class": _text(e.weighting.device_class),
            "can_write": e.weighting.can_write, "holder": holder.get(e.id),
            "generation": generation, "updated_at": now} for e in entries])
        factor_rows: dict[tuple[str, str], int] = {}
        for e in entries:
            for h in e.factors:
                key = (e.id, h.factor.value)
                factor_rows[key] = max(factor_rows.get(key, 0), int(h.severity))
        raw.change_many(_INSERT_FACTOR, [{"entry_id": i, "factor": f, "severity": s}
                                         for (i, f), s in factor_rows.items()])

    def remove_stale(self, generation: int) -> int:
        """Delete what no rebuild since ``generation`` wrote."""
        stale = select(_E.c.id).where(_E.c.generation < generation)
        self._c.execute(delete(_F).where(_F.c.entry_id.in_(stale)))
        return self._c.execute(delete(_E).where(_E.c.generation < generation)).rowcount or 0

    def remove_for_devices(self, device_ids: Sequence[str]) -> int:
        """Delete the entries these devices hold."""
        removed = 0
        for start in range(0, len(device_ids), CHUNK):
            chunk = list(device_ids[start:start + CHUNK])
            held = select(_E.c.id).where(_E.c.holder.in_(chunk))
            self._c.execute(delete(_F).where(_F.c.entry_id.in_(held)))
            removed += self._c.execute(delete(_E).where(_E.c.holder.in_(chunk))).rowcount or 0
        return removed

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

    def _where(self, query: Select[Any], org_path: str, where: EntryFilter,
               now: float) -> Select[Any]:
        scope = where.org_path if where.org_path and where.org_path.startswith(org_path) \
            else org_path
        query = query.where(under_path(_E.c.org_path, scope))
        if where.factor is not None:
            # driven from the factor index: the few entries with that factor, not a scan
            query = query.where(_E.c.id.in_(select(_F.c.entry_id).where(
                _F.c.factor == where.factor.value, ~_hidden(now))))
        if where.site is not None:
            query = query.where(_E.c.site == where.site)
        if where.type is not None:
            query = query.where(_E.c.type == where.type)
        if where.subject is not None:
            query = query.where(_E.c.subject == where.subject.value)
        if where.min_score is not None:
            query = query.where(_E.c.score >= where.min_score)
        return query

    def page(self, *, org_path: str, where: EntryFilter, after: Cursor | None,
             limit: int, now: float) -> list[RiskEntry]:
        """Score down, then id; after the cursor."""
        query = self._where(select(_E), org_path, where, now)
        if after is not None:
            query = query.where(or_(_E.c.score < after[0],
                                    and_(_E.c.score == after[0], _E.c.id > after[1])))
        rows = self._c.execute(query.order_by(_E.c.score.desc(), _E.c.id).limit(limit)).all()
        accepted = self._acceptances([r.id for r in rows])
        return [_entry(r, accepted.get(r.id, ())) for r in rows]

    def count(self, *, org_path: str, where: EntryFilter, now: float) -> int:
        """How many match."""
        query = self._where(select(func.count()).select_from(_E), org_path, where, now)
        return int(self._c.execute(query).scalar_one())

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
        """Entries, and visible hits per factor and per severity."""
        total = self.count(org_path=org_path, where=EntryFilter(), now=now)
        joined = select(_F.c.factor, _F.c.severity, func.count()).select_from(
            _F.join(_E, _E.c.id == _F.c.entry_id)).where(
            under_path(_E.c.org_path, org_path), ~_hidden(now)).group_by(
            _F.c.factor, _F.c.severity)
        by_factor: dict[str, int] = {}
        by_severity: dict[str, int] = {}
        for factor, severity, n in self._c.execute(joined):
            by_factor[factor] = by_factor.get(factor, 0) + n
            label = Severity(severity).label
            by_severity[label] = by_severity.get(label, 0) + n
        return total, by_factor, by_severity

    def set_score(self, entry_id: str, score: int) -> None:
        """Replace the score."""
        self._c.execute(update(_E).where(_E.c.id == entry_id).values(score=score))

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
