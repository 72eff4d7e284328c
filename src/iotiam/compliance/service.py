"""The compliance report of the caller's subtree: evidence gathered from the services
the API already has, judged by ``requirements.MAPPING``."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from iotiam.clock import Clock
from iotiam.compliance.models import ComplianceReport, FleetEvidence
from iotiam.compliance.ports import (
    Checkpoints,
    FindingLog,
    FirmwareCatalogue,
    FleetCounts,
    PolicyCatalogue,
    RegisterCounts,
)
from iotiam.compliance.requirements import judge
from iotiam.detection.models import Severity
from iotiam.kernel import SYSTEM, Principal

#: findings read per state (the newest); the report says "at least" when it reaches it
FINDINGS_SCANNED = 1000
#: how long a critical or high finding may stay open before it counts as overdue
FINDING_GRACE = timedelta(days=7)


class ComplianceReports:
    """Builds the report for whoever asks, within their subtree (G9)."""

    def __init__(self, *, inventory: FleetCounts, risk: RegisterCounts,
                 policies: PolicyCatalogue, firmware: FirmwareCatalogue,
                 findings: FindingLog, checkpoints: Checkpoints, clock: Clock,
                 rotation_age: timedelta) -> None:
        self._inventory = inventory
        self._risk = risk
        self._policies = policies
        self._firmware = firmware
        self._findings = findings
        self._checkpoints = checkpoints
        self._clock = clock
        self._rotation_age = rotation_age

    def report(self, actor: Principal) -> ComplianceReport:
        """Every mapped requirement, judged on the caller's subtree now."""
        now = self._clock.now()
        fleet = self.evidence(actor, now)
        return ComplianceReport(generated_at=now, generated_by=actor.name, fleet=fleet,
                                judgements=judge(fleet, now))

    def evidence(self, actor: Principal, now: datetime) -> FleetEvidence:
        """What the services know of the caller's subtree."""
        summary = self._inventory.summary(actor, rotation_age=self._rotation_age)
        register = self._risk.summary(actor)
        policies = self._policies.list_policies(actor)
        open_findings = self._findings.list_findings(actor, state="open",
                                                     limit=FINDINGS_SCANNED)
        closed = self._findings.list_findings(actor, state="resolved", limit=FINDINGS_SCANNED)
        overdue = sum(1 for f in open_findings if f.finding.severity >= Severity.HIGH
                      and now - f.raised_at > FINDING_GRACE)
        # the checkpoint counts every tenant's records: its time is the chain's, its size
        # is for root admins only
        checkpoint = self._checkpoints.latest_checkpoint(SYSTEM)
        return FleetEvidence(
            org_path=actor.org_path, devices=summary.total, by_state=summary.by_state,
            by_credential=summary.by_credential_status, never_rotated=summary.never_rotated,
            risk_factors=register.by_factor, register_built_at=register.rebuilt_at,
            policies=len(policies),
            guardrails=sum(1 for p in policies if p.stored.document.guardrail),
            firmware_signers=len(self._firmware.list_signers(actor)),
            firmware_images=len(self._firmware.list_images(actor)),
            firmware_rules=len(self._firmware.list_rules(actor)),
            detection_modes=self._modes(), open_findings=len(open_findings),
            overdue_findings=overdue, closed_findings=len(closed),
            checkpoint_at=checkpoint.at if checkpoint else None,
            checkpoint_size=checkpoint.size if checkpoint and actor.is_global else None)

    def _modes(self) -> dict[str, int]:
        """Device types per detection mode (types are fleet-wide, like the modes)."""
        return dict(Counter(str(self._findings.mode_of(t.name))
                            for t in self._inventory.list_device_types()))
