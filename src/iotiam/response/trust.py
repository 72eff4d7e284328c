"""The trust score: 0-100 per device, from credential hygiene, compliance and findings.

The score is a sum of explained penalties from 100, so an admin can always answer "why
is it 55?". The weights are deliberately coarse: a policy condition says
``min_trust_score: 60`` and must flip on a real problem, not on noise. One open high
finding (-30) plus a missed rotation (-15) takes a device below 60; one low finding
never does. Resolved findings and false positives no longer count, and neither do
findings raised in ``monitor`` mode: monitor means "tell me, change nothing", and a
lower score takes rights away wherever a policy asks for a minimum. They are listed
with a delta of 0 so the explanation still shows them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from iotiam.detection.models import DetectionMode, FindingState, Severity
from iotiam.inventory.models import CredentialStatus, DeviceState
from iotiam.response.models import StoredFinding, TrustFactor, TrustScore

FULL_TRUST = 100
#: open or acknowledged findings, by severity
FINDING_PENALTY = {Severity.LOW: 5, Severity.MEDIUM: 15, Severity.HIGH: 30,
                   Severity.CRITICAL: 50}
#: the findings together never take more than this (credentials and firmware still can)
MAX_FINDINGS_PENALTY = 70
CREDENTIAL_PENALTY = {
    CredentialStatus.NONE: 20,
    CredentialStatus.ACTIVE: 0,
    CredentialStatus.EXPIRING: 5,
    CredentialStatus.OVERDUE_ROTATION: 15,
    CredentialStatus.EXPIRED: 30,
    CredentialStatus.REVOKED: 30,
}
NEVER_ROTATED_PENALTY = 10
NON_COMPLIANT_PENALTY = 40
QUARANTINED_PENALTY = 20
LIVE_STATES = frozenset({FindingState.OPEN, FindingState.ACKNOWLEDGED})


def score_device(
    device_id: str,
    *,
    state: DeviceState,
    credential: CredentialStatus,
    never_rotated: bool,
    firmware_compliant: bool | None,
    firmware_reason: str | None,
    findings: Iterable[StoredFinding],
    at: datetime,
) -> TrustScore:
    """The device's score with every factor that moved it."""
    factors: list[TrustFactor] = []
    penalty = CREDENTIAL_PENALTY[credential]
    if penalty:
        factors.append(TrustFactor("credential", -penalty, f"credential status: {credential}"))
    if never_rotated:
        factors.append(TrustFactor("key-age", -NEVER_ROTATED_PENALTY,
                                   "the device's key is older than its type's maximum "
                                   "credential age"))
    if firmware_compliant is False:
        factors.append(TrustFactor("firmware", -NON_COMPLIANT_PENALTY,
                                   f"firmware not compliant: {firmware_reason or 'unknown'}"))
    if state is DeviceState.QUARANTINED:
        factors.append(TrustFactor("state", -QUARANTINED_PENALTY, "device is quarantined"))
    finding_total = 0
    for stored in sorted(findings, key=lambda f: -f.finding.severity):
        if stored.state not in LIVE_STATES:
            continue
        if stored.mode is not DetectionMode.ENFORCE:
            factors.append(TrustFactor(
                "finding", 0, f"{stored.state} {stored.finding.type} finding {stored.id} "
                              f"raised in {stored.mode} mode: not counted"))
            continue
        cost = min(FINDING_PENALTY[stored.finding.severity],
                   MAX_FINDINGS_PENALTY - finding_total)
        if cost <= 0:
            break
        finding_total += cost
        factors.append(TrustFactor(
            "finding", -cost,
            f"{stored.state} {stored.finding.severity.label} {stored.finding.type} "
            f"finding {stored.id}: {stored.finding.summary}"))
    score = max(0, FULL_TRUST + sum(f.delta for f in factors))
    return TrustScore(device_id=device_id, score=score, factors=tuple(factors),
                      firmware_compliant=firmware_compliant, computed_at=at)
