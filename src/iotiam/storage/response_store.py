"""SQL implementations of the response layer's stores."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from iotiam.detection.models import DetectionMode, Finding, FindingState, FindingType, Severity
from iotiam.inventory.models import DeviceState
from iotiam.response.models import (
    Action,
    EventBatch,
    Mitigation,
    StoredFinding,
    TrustFactor,
    TrustScore,
    WouldActCount,
)
from iotiam.storage.raw import ByIds, RawSql, bulk_upsert, utc_required
from iotiam.storage.rows import dump_json, load_json, one_of, under_path
from iotiam.storage.tables import inventory
from iotiam.storage.tables import response as t

_LIVE = (str(FindingState.OPEN), str(FindingState.ACKNOWLEDGED))
#: ``IN`` lists are cut to this many ids (SQLite's variable limit is 32,766; stay modest)
CHUNK = 500

_TRUST_OF = ByIds("SELECT device_id, score, firmware_compliant, factors, computed_at "
                  "FROM device_trust WHERE device_id {ids}")
# one statement for a whole batch of scores
_PUT_TRUST = bulk_upsert(t.device_trust, ("device_id", "score", "firmware_compliant",
                                          "factors", "computed_at"), ("device_id",))


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


class SqlFindingStore:
    """Findings in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, stored: StoredFinding) -> None:
        """Store a new finding."""
        f = stored.finding
        self._c.execute(insert(t.findings).values(
            id=stored.id, device_id=f.device_id, device_type=f.device_type,
            org_path=stored.org_path, type=str(f.type), severity=int(f.severity),
            state=str(stored.state), mode=str(stored.mode), detector=f.detector,
            summary=f.summary, evidence=dump_json(dict(f.evidence)),
            event_at=datetime.fromtimestamp(f.at, UTC), raised_at=stored.raised_at,
            updated_at=stored.updated_at, last_seen_at=stored.last_seen_at,
            repeats=stored.repeats, actions=dump_json(list(stored.actions)), note=stored.note,
            updated_by=stored.updated_by, subject=f.subject,
            last_event_at=_utc(stored.episode_end)))

    def live_for(self, subject: str, finding_type: FindingType) -> StoredFinding | None:
        """The latest open or acknowledged finding of this subject and type."""
        row = self._c.execute(select(t.findings).where(
            t.findings.c.type == str(finding_type), t.findings.c.subject == subject,
            t.findings.c.state.in_(_LIVE)).order_by(t.findings.c.last_event_at.desc(),
                                                    t.findings.c.id.desc()).limit(1)).first()
        return _finding(row) if row else None

    def _later_event(self, event_at: float) -> Any:
        moment = _utc(event_at)
        return case((t.findings.c.last_event_at < moment, moment),
                    else_=t.findings.c.last_event_at)

    def repeat(self, finding_id: str, at: datetime, event_at: float) -> None:
        """Count a repeat, move last_seen_at (and last_event_at forward)."""
        self._c.execute(update(t.findings).where(t.findings.c.id == finding_id).values(
            repeats=t.findings.c.repeats + 1, last_seen_at=at,
            last_event_at=self._later_event(event_at)))

    def escalate(self, finding_id: str, worse: Finding, at: datetime) -> None:
        """Take the worse severity, summary and evidence."""
        self._c.execute(update(t.findings).where(t.findings.c.id == finding_id).values(
            severity=int(worse.severity), summary=worse.summary,
            evidence=dump_json(dict(worse.evidence)), updated_at=at, last_seen_at=at,
            repeats=t.findings.c.repeats + 1, last_event_at=self._later_event(worse.at)))

    def add_batch(self, batch: EventBatch) -> None:
        """Record an upload."""
        self._c.execute(insert(t.event_batches).values(
            id=batch.id, org_path=batch.org_path, created_at=batch.created_at,
            created_by=batch.created_by, events=batch.events))

    def get_batch(self, batch_id: str) -> EventBatch | None:
        """One upload."""
        row = self._c.execute(select(t.event_batches).where(
            t.event_batches.c.id == batch_id)).first()
        return EventBatch(id=row.id, org_path=row.org_path, created_at=row.created_at,
                          created_by=row.created_by, events=row.events) if row else None

    def remove_batch(self, batch_id: str) -> None:
        """Forget an upload and its links."""
        self._c.execute(delete(t.event_batch_findings).where(
            t.event_batch_findings.c.batch_id == batch_id))
        self._c.execute(delete(t.event_batches).where(t.event_batches.c.id == batch_id))

    def prune_batches(self, before: datetime) -> int:
        """Forget old uploads and their links."""
        old = select(t.event_batches.c.id).where(t.event_batches.c.created_at < before)
        self._c.execute(delete(t.event_batch_findings).where(
            t.event_batch_findings.c.batch_id.in_(old)))
        return int(self._c.execute(delete(t.event_batches).where(
            t.event_batches.c.created_at < before)).rowcount or 0)

    def link_batch(self, batch_id: str, finding_ids: Sequence[str]) -> None:
        """Link findings to an upload (each once)."""
        links = t.event_batch_findings
        have = {r.finding_id for r in self._c.execute(select(links.c.finding_id).where(
            links.c.batch_id == batch_id, one_of(self._c, links.c.finding_id, finding_ids)))}
        rows = [{"batch_id": batch_id, "finding_id": f}
                for f in dict.fromkeys(finding_ids) if f not in have]
        if rows:
            self._c.execute(insert(links), rows)

    def batch_findings(self, batch_id: str) -> list[StoredFinding]:
        """The upload's findings, oldest first."""
        links = t.event_batch_findings
        rows = self._c.execute(select(t.findings).join(
            links, links.c.finding_id == t.findings.c.id).where(
            links.c.batch_id == batch_id).order_by(t.findings.c.id))
        return [_finding(r) for r in rows]

    def would_act_counts(self, *, org_path: str, since: datetime) -> list[WouldActCount]:
        """Counted by type, device type, severity, mode and whether a device is named."""
        f = t.findings.c
        deviceless = case((f.device_id.is_(None), 1), else_=0).label("deviceless")
        rows = self._c.execute(select(
            f.type, f.device_type, f.severity, f.mode, deviceless,
            func.count().label("findings"), func.sum(f.repeats).label("repeats"),
        ).where(under_path(f.org_path, org_path), f.raised_at >= since).group_by(
            f.type, f.device_type, f.severity, f.mode, deviceless))
        return [WouldActCount(FindingType(r.type), r.device_type, Severity(r.severity),
                              DetectionMode(r.mode), bool(r.deviceless), int(r.findings),
                              int(r.repeats or 0)) for r in rows]

    def get(self, finding_id: str, *, for_update: bool = False) -> StoredFinding | None:
        """One finding."""
        query = select(t.findings).where(t.findings.c.id == finding_id)
        if for_update:
            query = query.with_for_update()
        row = self._c.execute(query).first()
        return _finding(row) if row else None

    def set_state(self, finding_id: str, state: FindingState, at: datetime, by: str,
                  note: str | None) -> None:
        """Move along the lifecycle."""
        values: dict[str, Any] = {"state": str(state), "updated_at": at, "updated_by": by}
        if note:
            values["note"] = note
        self._c.execute(update(t.findings).where(t.findings.c.id == finding_id).values(**values))

    def add_actions(self, finding_id: str, actions: Sequence[str]) -> None:
        """Append to the finding's list of actions taken."""
        row = self._c.execute(select(t.findings.c.actions).where(
            t.findings.c.id == finding_id)).first()
        if row is None:
            return
        merged = list(dict.fromkeys([*load_json(row.actions), *actions]))
        self._c.execute(update(t.findings).where(t.findings.c.id == finding_id)
                        .values(actions=dump_json(merged)))

    def page(self, *, org_path: str, state: FindingState | None, device_id: str | None,
             finding_type: FindingType | None, before_id: str | None,
             limit: int) -> list[StoredFinding]:
        """Newest first (ids sort by time)."""
        query = select(t.findings).where(under_path(t.findings.c.org_path, org_path))
        if state is not None:
            query = query.where(t.findings.c.state == str(state))
        if device_id is not None:
            query = query.where(t.findings.c.device_id == device_id)
        if finding_type is not None:
            query = query.where(t.findings.c.type == str(finding_type))
        if before_id is not None:
            query = query.where(t.findings.c.id < before_id)
        rows = self._c.execute(query.order_by(t.findings.c.id.desc()).limit(limit))
        return [_finding(r) for r in rows]

    def live_for_devices(self, device_ids: Sequence[str]) -> dict[str, list[StoredFinding]]:
        """Open and acknowledged findings of each device."""
        result: dict[str, list[StoredFinding]] = {}
        if not device_ids:
            return result
        rows = self._c.execute(select(t.findings).where(
            one_of(self._c, t.findings.c.device_id, device_ids),
            t.findings.c.state.in_(_LIVE)))
        for row in rows:
            result.setdefault(row.device_id, []).append(_finding(row))
        return result


def _finding(row: Any) -> StoredFinding:
    finding = Finding(
        type=FindingType(row.type), severity=Severity(row.severity),
        at=row.event_at.timestamp(), device_id=row.device_id, summary=row.summary,
        detector=row.detector, evidence=load_json(row.evidence), device_type=row.device_type)
    return StoredFinding(
        id=row.id, finding=finding, org_path=row.org_path, state=FindingState(row.state),
        mode=DetectionMode(row.mode), raised_at=row.raised_at, updated_at=row.updated_at,
        repeats=row.repeats, last_seen_at=row.last_seen_at,
        last_event_at=row.last_event_at.timestamp() if row.last_event_at else None,
        actions=tuple(load_json(row.actions)), note=row.note, updated_by=row.updated_by)


class SqlMitigationStore:
    """Mitigations in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, mitigation: Mitigation) -> None:
        """Record an applied action."""
        self._c.execute(insert(t.mitigations).values(
            id=mitigation.id, finding_id=mitigation.finding_id, device_id=mitigation.device_id,
            action=str(mitigation.action),
            previous_state=str(mitigation.previous_state) if mitigation.previous_state else None,
            applied_at=mitigation.applied_at, lifted_at=mitigation.lifted_at,
            lifted_by=mitigation.lifted_by))

    def active_for(self, device_id: str) -> list[Mitigation]:
        """Not lifted, oldest first."""
        rows = self._c.execute(select(t.mitigations).where(
            t.mitigations.c.device_id == device_id, t.mitigations.c.lifted_at.is_(None))
            .order_by(t.mitigations.c.applied_at, t.mitigations.c.id))
        return [Mitigation(
            id=r.id, finding_id=r.finding_id, device_id=r.device_id, action=Action(r.action),
            previous_state=DeviceState(r.previous_state) if r.previous_state else None,
            applied_at=r.applied_at, lifted_at=r.lifted_at, lifted_by=r.lifted_by)
            for r in rows]

    def lift(self, mitigation_id: str, at: datetime, by: str) -> None:
        """Mark lifted."""
        self._c.execute(update(t.mitigations).where(t.mitigations.c.id == mitigation_id)
                        .values(lifted_at=at, lifted_by=by))

    def lifted_since(self, finding_id: str, at: datetime) -> bool:
        """Whether one of the finding's mitigations was lifted at or after ``at``."""
        m = t.mitigations.c
        return self._c.execute(select(m.id).where(
            m.finding_id == finding_id, m.lifted_at >= at).limit(1)).first() is not None


class SqlDetectionSettingsStore:
    """Modes per device type and named documents."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def modes(self) -> dict[str, DetectionMode]:
        """Every device type with a mode set."""
        return {r.device_type: DetectionMode(r.mode)
                for r in self._c.execute(select(t.detection_modes))}

    def set_mode(self, device_type: str, mode: DetectionMode, at: datetime, by: str) -> None:
        """Set (replace) one type's mode."""
        _replace(self._c, t.detection_modes, {"device_type": device_type},
                 {"mode": str(mode), "updated_at": at, "updated_by": by})

    def get_document(self, name: str) -> str | None:
        """A named document."""
        row = self._c.execute(select(t.detection_documents.c.value).where(
            t.detection_documents.c.name == name)).first()
        return str(row.value) if row else None

    def put_document(self, name: str, value: str, at: datetime) -> None:
        """Replace a named document."""
        _replace(self._c, t.detection_documents, {"name": name},
                 {"value": value, "updated_at": at})


def _replace(conn: Connection, table: Table, key: dict[str, Any], values: dict[str, Any]
             ) -> None:
    """Insert the row of ``key`` or replace its ``values``: one upsert, so two writers of
    the same row at the same moment both succeed (the later one wins) instead of one
    failing on the primary key."""
    upsert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(upsert(table).values(**key, **values)
                 .on_conflict_do_update(index_elements=list(key), set_=values))


class SqlTrustStore:
    """Trust scores in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, TrustScore]:
        """Stored scores of these devices."""
        result: dict[str, TrustScore] = {}
        if not device_ids:
            return result
        #: a batch's devices mostly share their factors (a new device's are all alike):
        #: each stored text is parsed once
        parsed: dict[str, tuple[TrustFactor, ...]] = {}
        # straight from the driver's rows: the risk register reads a batch's scores
        for device_id, score, compliant, factors, computed_at in _TRUST_OF.rows(
                RawSql(self._c), device_ids):
            if (found := parsed.get(factors)) is None:
                found = parsed[factors] = tuple(
                    TrustFactor(f["factor"], f["delta"], f["detail"]) for f in load_json(factors))
            result[device_id] = TrustScore(
                device_id=device_id, score=score, factors=found,
                firmware_compliant=None if compliant is None else bool(compliant),
                computed_at=utc_required(computed_at))
        return result

    def put(self, score: TrustScore) -> None:
        """Store (replace) a device's score; one upsert, so two writers of the same
        device's score (the refresher and an API request) never conflict."""
        self.put_many([score])

    def put_many(self, scores: Sequence[TrustScore]) -> None:
        """Store (replace) these devices' scores: the upsert of ``put``, executed once
        for the batch (a rescore after an import names thousands of devices)."""
        if not scores:
            return
        raw = RawSql(self._c)
        when = functools.cache(raw.when)
        #: one row per device, the last score given for it (as one upsert after another)
        rows: dict[str, tuple[Any, ...]] = {}
        #: each distinct list of factors encoded once (a batch's are mostly alike)
        encoded: dict[tuple[TrustFactor, ...], str] = {}
        for score in scores:
            assert score.computed_at is not None
            key = tuple(score.factors)
            if (factors := encoded.get(key)) is None:
                factors = encoded[key] = dump_json([f.to_json() for f in key])
            rows[score.device_id] = (score.device_id, score.score, score.firmware_compliant,
                                     factors, when(score.computed_at))
        _PUT_TRUST.run(self._c, list(rows.values()))

    def touch_devices(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move the devices' ``updated_at``."""
        if device_ids:
            self._c.execute(update(inventory.devices).where(
                one_of(self._c, inventory.devices.c.id, device_ids)).values(updated_at=at))


class SqlDeviceLookup:
    """Each device's type and org path, for attributing events (one query per batch)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def types_and_paths(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(type name, org path) of each known device."""
        result: dict[str, tuple[str, str]] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(device_ids), CHUNK):
                rows = conn.execute(select(inventory.devices.c.id, inventory.devices.c.type_name,
                                           inventory.devices.c.org_path).where(
                    inventory.devices.c.id.in_(device_ids[start:start + CHUNK])))
                for row in rows:
                    result[row.id] = (row.type_name, row.org_path)
        return result
