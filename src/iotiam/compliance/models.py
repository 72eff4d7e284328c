"""A compliance report: requirements, the evidence iotiam holds for them, and the status
each gets. Values only; ``requirements.py`` judges, ``service.py`` gathers."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Status(enum.StrEnum):
    """How far the evidence shows a requirement is met."""

    MET = "met"
    PARTLY = "partly"
    NOT_MET = "not-met"
    #: iotiam holds nothing that shows it either way (not a failure, not a pass)
    NO_EVIDENCE = "no-evidence"


class Framework(enum.StrEnum):
    """The documents the report measures against (versions in docs/compliance.md)."""

    ETSI_EN_303_645 = "ETSI EN 303 645"
    NIST_IR_8259A = "NIST IR 8259A"
    EU_CRA_ANNEX_I = "EU CRA Annex I"


class View(enum.StrEnum):
    """Where the rows behind a count can be listed; a front end turns it into a link
    (the console to its page, the API to its route)."""

    DEVICES = "devices"
    RISK = "risk"
    FINDINGS = "findings"
    POLICIES = "policies"
    AUDIT = "audit"
    FIRMWARE = "firmware"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of one framework, as far as iotiam can speak to it."""

    framework: Framework
    #: the clause as the document numbers it: ``5.1-1``, ``Device Identification``,
    #: ``Part I (2)(d)``
    clause: str
    title: str
    #: what iotiam looks at to judge it
    checks: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact behind a status: a label, a value, and where its rows are listed."""

    label: str
    value: int | str
    view: View | None = None
    #: the filter of that view that lists the rows (``{"factor": "shared-credential"}``)
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Judgement:
    """A requirement's status, why, and the evidence."""

    requirement: Requirement
    status: Status
    summary: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class FleetEvidence:
    """What iotiam knows of one subtree of the fleet, gathered once per report."""

    org_path: str
    devices: int
    by_state: Mapping[str, int]
    #: devices by credential status (``valid``, ``expiring``, ``expired``, ``revoked``,
    #: ``none``)
    by_credential: Mapping[str, int]
    never_rotated: int
    #: identities in the risk register per factor (``RiskFactor`` values)
    risk_factors: Mapping[str, int]
    #: when the register was last rebuilt (seconds since the epoch), None: never
    register_built_at: float | None
    policies: int
    guardrails: int
    firmware_signers: int
    firmware_images: int
    firmware_rules: int
    #: device types per detection mode (``learn``, ``monitor``, ``enforce``)
    detection_modes: Mapping[str, int]
    open_findings: int
    #: open critical or high findings raised longer ago than the report's grace period
    overdue_findings: int
    closed_findings: int
    #: the newest signed audit checkpoint, None when there is none
    checkpoint_at: datetime | None
    #: the records it covers; None when the caller may not know (it counts every tenant)
    checkpoint_size: int | None = None

    def factor(self, name: str) -> int:
        """Identities the register holds with this factor."""
        return self.risk_factors.get(name, 0)


@dataclass(frozen=True, slots=True)
class ComplianceReport:
    """Every requirement judged against one subtree's evidence, at one instant."""

    generated_at: datetime
    generated_by: str
    fleet: FleetEvidence
    judgements: tuple[Judgement, ...]

    def of(self, framework: Framework) -> list[Judgement]:
        """The judgements of one framework, in the document's order."""
        return [j for j in self.judgements if j.requirement.framework is framework]

    def counts(self) -> dict[str, int]:
        """How many requirements have each status."""
        return {str(s): sum(1 for j in self.judgements if j.status is s) for s in Status}

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``GET /v1/compliance/report``)."""
        return {"generated_at": self.generated_at.isoformat(),
                "generated_by": self.generated_by, "org_path": self.fleet.org_path,
                "devices": self.fleet.devices, "counts": self.counts(),
                "requirements": [_judgement_json(j) for j in self.judgements]}


def _judgement_json(judged: Judgement) -> dict[str, Any]:
    need = judged.requirement
    return {"framework": str(need.framework), "clause": need.clause, "title": need.title,
            "checks": need.checks, "status": str(judged.status), "summary": judged.summary,
            "evidence": [{"label": e.label, "value": e.value,
                          "view": None if e.view is None else str(e.view),
                          "query": dict(e.query)} for e in judged.evidence]}
