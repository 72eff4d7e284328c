"""The response stores in memory (``iotiam.response.ports``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from iotiam.detection.models import DetectionMode, Finding, FindingState, FindingType
from iotiam.errors import Conflict
from iotiam.response.models import (
    EventBatch,
    Mitigation,
    StoredFinding,
    TrustScore,
    WouldActCount,
)
from iotiam.testing.fakes.inventory import MemoryDeviceStore
from iotiam.testing.fakes.memory import MemoryStore, under

_LIVE = (FindingState.OPEN, FindingState.ACKNOWLEDGED)


@dataclass
class MemoryFindingStore(MemoryStore):
    """``FindingStore``: findings by id (ids sort by time)."""

    findings: dict[str, StoredFinding] = field(default_factory=dict)
    batches: dict[str, EventBatch] = field(default_factory=dict)
    batch_links: dict[str, list[str]] = field(default_factory=dict)

    def add(self, stored: StoredFinding) -> None:
        """Store a new finding (Conflict if the id exists)."""
        if stored.id in self.findings:
            raise Conflict(f"finding {stored.id} exists")
        self.findings[stored.id] = stored

    def live_for(self, subject: str, finding_type: FindingType) -> StoredFinding | None:
        """The latest open or acknowledged finding of this subject and type."""
        live = [f for f in self.findings.values()
                if f.finding.subject == subject and f.finding.type is finding_type
                and f.state in _LIVE]
        return max(live, key=lambda f: (f.episode_end, f.id), default=None)

    def _change(self, finding_id: str, **values: object) -> None:
        if finding_id in self.findings:
            self.findings[finding_id] = replace(self.findings[finding_id], **values)  # type: ignore[arg-type]

    def repeat(self, finding_id: str, at: datetime, event_at: float) -> None:
        """Count a repeat, move last_seen_at (and last_event_at forward)."""
        stored = self.findings.get(finding_id)
        if stored is not None:
            self._change(finding_id, repeats=stored.repeats + 1, last_seen_at=at,
                         last_event_at=max(stored.episode_end, event_at))

    def escalate(self, finding_id: str, worse: Finding, at: datetime) -> None:
        """Take the worse severity, summary and evidence."""
        stored = self.findings.get(finding_id)
        if stored is None:
            return
        finding = replace(stored.finding, severity=worse.severity, summary=worse.summary,
                          evidence=dict(worse.evidence))
        self._change(finding_id, finding=finding, updated_at=at, last_seen_at=at,
                     repeats=stored.repeats + 1,
                     last_event_at=max(stored.episode_end, worse.at))

    def add_batch(self, batch: EventBatch) -> None:
        """Record an upload."""
        self.batches[batch.id] = batch

    def get_batch(self, batch_id: str) -> EventBatch | None:
        """One upload."""
        return self.batches.get(batch_id)

    def remove_batch(self, batch_id: str) -> None:
        """Forget an upload and its links."""
        self.batches.pop(batch_id, None)
        self.batch_links.pop(batch_id, None)

    def prune_batches(self, before: datetime) -> int:
        """Forget old uploads and their links."""
        old = [b.id for b in self.batches.values() if b.created_at < before]
        for batch_id in old:
            self.remove_batch(batch_id)
        return len(old)

    def link_batch(self, batch_id: str, finding_ids: Sequence[str]) -> None:
        """Link findings to an upload (each once)."""
        linked = self.batch_links.setdefault(batch_id, [])
        linked.extend(f for f in dict.fromkeys(finding_ids) if f not in linked)

    def batch_findings(self, batch_id: str) -> list[StoredFinding]:
        """The upload's findings, oldest first."""
        return sorted((self.findings[f] for f in self.batch_links.get(batch_id, [])
                       if f in self.findings), key=lambda f: f.id)

    def would_act_counts(self, *, org_path: str, since: datetime) -> list[WouldActCount]:
        """Counted by type, device type, severity, mode and whether a device is named."""
        groups: dict[WouldActCount, list[int]] = {}
        for f in self.findings.values():
            if under(f.org_path, org_path) and f.raised_at >= since:
                key = WouldActCount(f.finding.type, f.finding.device_type, f.finding.severity,
                                    f.mode, f.finding.device_id is None, 0, 0)
                group = groups.setdefault(key, [0, 0])
                group[0] += 1
                group[1] += f.repeats
        return [replace(key, findings=n, repeats=r) for key, (n, r) in groups.items()]

    def get(self, finding_id: str, *, for_update: bool = False) -> StoredFinding | None:
        """One finding."""
        return self.findings.get(finding_id)

    def set_state(self, finding_id: str, state: FindingState, at: datetime, by: str,
                  note: str | None) -> None:
        """Move a finding along its lifecycle (an empty note keeps the old one)."""
        if note:
            self._change(finding_id, state=state, updated_at=at, updated_by=by, note=note)
        else:
            self._change(finding_id, state=state, updated_at=at, updated_by=by)

    def add_actions(self, finding_id: str, actions: Sequence[str]) -> None:
        """Append to the finding's actions, each once."""
        stored = self.findings.get(finding_id)
        if stored is not None:
            self._change(finding_id, actions=tuple(dict.fromkeys([*stored.actions, *actions])))

    def page(self, *, org_path: str, state: FindingState | None, device_id: str | None,
             finding_type: FindingType | None, before_id: str | None,
             limit: int) -> list[StoredFinding]:
        """Newest first, under ``org_path``."""
        found = [f for _, f in sorted(self.findings.items(), reverse=True)
                 if under(f.org_path, org_path) and (state is None or f.state is state)
                 and (device_id is None or f.finding.device_id == device_id)
                 and (finding_type is None or f.finding.type is finding_type)
                 and (before_id is None or f.id < before_id)]
        return found[:limit]

    def live_for_devices(self, device_ids: Sequence[str]) -> dict[str, list[StoredFinding]]:
        """Open and acknowledged findings of each device."""
        wanted = set(device_ids)
        result: dict[str, list[StoredFinding]] = {}
        for f in self.findings.values():
            if f.finding.device_id in wanted and f.state in _LIVE:
                result.setdefault(f.finding.device_id, []).append(f)
        return result


@dataclass
class MemoryMitigationStore(MemoryStore):
    """``MitigationStore``: mitigations by id."""

    mitigations: dict[str, Mitigation] = field(default_factory=dict)

    def add(self, mitigation: Mitigation) -> None:
        """Record an applied action (Conflict if the id exists)."""
        if mitigation.id in self.mitigations:
            raise Conflict(f"mitigation {mitigation.id} exists")
        self.mitigations[mitigation.id] = mitigation

    def active_for(self, device_id: str) -> list[Mitigation]:
        """Mitigations of a device that were not lifted, oldest first."""
        return sorted((m for m in self.mitigations.values()
                       if m.device_id == device_id and m.lifted_at is None),
                      key=lambda m: (m.applied_at, m.id))

    def lift(self, mitigation_id: str, at: datetime, by: str) -> None:
        """Mark a mitigation lifted."""
        if mitigation_id in self.mitigations:
            self.mitigations[mitigation_id] = replace(self.mitigations[mitigation_id],
                                                      lifted_at=at, lifted_by=by)

    def lifted_since(self, finding_id: str, at: datetime) -> bool:
        """Whether one of this finding's mitigations was lifted at or after ``at``."""
        return any(m.finding_id == finding_id and m.lifted_at is not None
                   and m.lifted_at >= at for m in self.mitigations.values())


@dataclass
class MemoryDetectionSettingsStore(MemoryStore):
    """``DetectionSettingsStore``: modes per device type and named documents."""

    mode_of: dict[str, DetectionMode] = field(default_factory=dict)
    documents: dict[str, str] = field(default_factory=dict)

    def modes(self) -> dict[str, DetectionMode]:
        """Every device type with a mode set."""
        return dict(self.mode_of)

    def set_mode(self, device_type: str, mode: DetectionMode, at: datetime, by: str) -> None:
        """Set (replace) one device type's mode."""
        self.mode_of[device_type] = mode

    def get_document(self, name: str) -> str | None:
        """A named document."""
        return self.documents.get(name)

    def put_document(self, name: str, value: str, at: datetime) -> None:
        """Replace a named document."""
        self.documents[name] = value


@dataclass
class MemoryTrustStore(MemoryStore):
    """``TrustStore``: the last score of each device."""

    devices: MemoryDeviceStore
    scores: dict[str, TrustScore] = field(default_factory=dict)

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, TrustScore]:
        """Stored scores of these devices."""
        return {i: self.scores[i] for i in device_ids if i in self.scores}

    def put(self, score: TrustScore) -> None:
        """Store (replace) a device's score."""
        assert score.computed_at is not None
        self.scores[score.device_id] = replace(score, factors=tuple(score.factors))

    def put_many(self, scores: Sequence[TrustScore]) -> None:
        """Store (replace) these devices' scores."""
        for score in scores:
            self.put(score)

    def touch_devices(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move the devices' ``updated_at``."""
        self.devices.touch(device_ids, at)


class MemoryDeviceLookup:
    """``DeviceLookup`` of the event ingest over the devices in memory."""

    def __init__(self, devices: MemoryDeviceStore) -> None:
        self._devices = devices

    def types_and_paths(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(type name, org path) of each known device."""
        return {i: (d.type_name, d.org_path)
                for i, d in self._devices.get_many(device_ids).items()}
