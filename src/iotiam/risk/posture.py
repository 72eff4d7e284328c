"""Posture checks: firmware compliance, open findings, trust score, and the policies that
apply to a device as the policy linter judges them (``policy/lint.py``). Pure functions."""

from __future__ import annotations

from collections.abc import Sequence

from iotiam.attestation.models import FirmwareStatus
from iotiam.policy.models import Severity as LintSeverity
from iotiam.response.models import StoredFinding, TrustScore
from iotiam.risk.models import FactorHit, PolicyFacts, RiskFactor, RiskSettings, Severity, hit, when

#: lint severities that make a policy over-permissive for the register
FLAGGED_LINT = frozenset({str(LintSeverity.HIGH), str(LintSeverity.CRITICAL)})


def firmware_check(status: FirmwareStatus | None) -> FactorHit | None:
    """The device's last attested firmware is not compliant."""
    if status is None or status.compliant:
        return None
    return hit(RiskFactor.FIRMWARE_NONCOMPLIANT, status.reason, {
        "firmware_version": status.firmware_version, "firmware_hash": status.firmware_hash,
        "image_id": status.image_id, "attested_at": when(status.attested_at.timestamp())},
        since=status.attested_at.timestamp())


def findings_check(findings: Sequence[StoredFinding]) -> FactorHit | None:
    """Open or acknowledged findings; as severe as the worst of them."""
    if not findings:
        return None
    worst = max(f.finding.severity for f in findings)
    return hit(RiskFactor.OPEN_FINDINGS, f"{len(findings)} open finding(s), worst {worst.label}",
               {"findings": [{"id": f.id, "type": str(f.finding.type),
                              "severity": f.finding.severity.label} for f in findings[:20]],
                "count": len(findings)},
               severity=max(worst, Severity.MEDIUM))


def trust_check(score: TrustScore | None, settings: RiskSettings) -> FactorHit | None:
    """A trust score under the threshold."""
    if score is None or score.score >= settings.low_trust_below:
        return None
    severity = Severity.HIGH if score.score < settings.low_trust_below / 2 else Severity.MEDIUM
    return hit(RiskFactor.LOW_TRUST, f"trust score {score.score} < {settings.low_trust_below}",
               {"score": score.score, "threshold": settings.low_trust_below,
                "factors": [f.to_json() for f in score.factors][:20]}, severity=severity)


def policy_check(policies: Sequence[PolicyFacts]) -> FactorHit | None:
    """A policy that applies to the device has high or critical lint findings."""
    problems = [{"policy": p.name, "severity": sev, "code": code, "statement": stmt}
                for p in policies for sev, code, stmt in p.problems]
    if not problems:
        return None
    critical = any(p["severity"] == str(LintSeverity.CRITICAL) for p in problems)
    names = sorted({str(p["policy"]) for p in problems})
    return hit(RiskFactor.OVER_PERMISSIVE_POLICY,
               f"over-permissive policy: {', '.join(names[:5])}",
               {"problems": problems[:30]},
               severity=Severity.HIGH if critical else Severity.MEDIUM)
