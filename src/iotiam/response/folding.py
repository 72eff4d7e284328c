"""Where a reported finding goes: into the live finding of its episode, or a new one.

A finding folds into the latest live finding of its subject (``Finding.subject``: the
device; with none, the source address; else the fleet) and type only if it belongs to
that finding's episode (``StoredFinding.same_episode``: its event came within the
episode gap, scaled by the engine to the device's own rhythm, of the episode's events).
Otherwise it is a new finding with its own time, even while the older one is still open:
a second attack must not hide as a repeat of the first (``docs/events.md``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.detection.models import DetectionMode, Finding, FindingState
from iotiam.inventory.models import Device
from iotiam.kernel import ROOT_PATH
from iotiam.response.models import StoredFinding
from iotiam.response.ports import ResponseUnitOfWork

#: a fleet-wide finding (no device) lives at the root: only global admins see it
FLEET_PATH = ROOT_PATH


def new_finding_id(at: float) -> str:
    """Sortable by time: milliseconds then randomness."""
    return f"fnd-{int(at * 1000):012x}{secrets.token_hex(5)}"


def finding_subject(finding: Finding) -> str:
    """The audit subject of a finding."""
    return f"device:{finding.device_id}" if finding.device_id else "fleet"


@dataclass(frozen=True)
class Folded:
    """What became of one finding: the stored finding it is now part of, and, when it is
    new or escalated one (the playbook is asked), the audit record that says so."""

    stored: StoredFinding
    audit: AuditDraft | None = None


def fold(uow: ResponseUnitOfWork, finding: Finding, now: datetime,
         devices: Mapping[str, Device], mode_of: Callable[[str | None], DetectionMode]
         ) -> Folded:
    """Store ``finding``: repeat, escalate or add (inside the caller's transaction)."""
    live = uow.findings.live_for(finding.subject, finding.type)
    if live is not None and not live.same_episode(finding):
        live = None
    if live is not None and finding.severity > live.finding.severity:
        # the same behaviour got worse: the finding escalates and the playbook is asked
        # again (it may now quarantine); the escalating evidence keeps its own time (a
        # quarantine lifted after it was seen is not put back, ``_mitigate``)
        uow.findings.escalate(live.id, finding, now)
        escalated = replace(live, finding=replace(finding, device_type=live.finding.device_type),
                            updated_at=now, last_event_at=max(live.episode_end, finding.at))
        return Folded(escalated, AuditDraft(
            tag=AuditTag.FINDING_ESCALATED, actor=finding.detector, org_path=live.org_path,
            subject=finding_subject(finding),
            details={"finding": live.id, "from": live.finding.severity.label,
                     "to": finding.severity.label, "summary": finding.summary[:300]}))
    if live is not None:
        uow.findings.repeat(live.id, now, finding.at)
        return Folded(live)
    org_path, device_type = FLEET_PATH, finding.device_type
    device = devices.get(finding.device_id) if finding.device_id else None
    if device is not None:
        org_path, device_type = device.org_path, device.type_name
    stored = StoredFinding(
        id=new_finding_id(finding.at), org_path=org_path,
        finding=replace(finding, device_type=device_type), state=FindingState.OPEN,
        mode=mode_of(device_type), raised_at=now, updated_at=now, last_seen_at=now)
    uow.findings.add(stored)
    return Folded(stored, AuditDraft(
        tag=AuditTag.FINDING_RAISED, actor=finding.detector, org_path=org_path,
        subject=finding_subject(finding),
        details={"finding": stored.id, "type": str(finding.type),
                 "severity": finding.severity.label, "mode": str(stored.mode),
                 "summary": finding.summary[:300]}))
