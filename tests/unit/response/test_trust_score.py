"""The trust score: explained penalties from 100."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from iotiam.detection.models import (
    DetectionMode,
    Finding,
    FindingState,
    FindingType,
    Severity,
)
from iotiam.inventory.models import CredentialStatus, DeviceState
from iotiam.response.models import StoredFinding
from iotiam.response.trust import MAX_FINDINGS_PENALTY, score_device

AT = datetime(2026, 3, 1, tzinfo=UTC)


def stored(severity: Severity, state: FindingState = FindingState.OPEN,
           n: int = 0, mode: DetectionMode = DetectionMode.ENFORCE) -> StoredFinding:
    finding = Finding(type=FindingType.RATE_CHANGE, severity=severity, at=AT.timestamp(),
                      device_id="d1", summary="rate up", detector="rate")
    return StoredFinding(id=f"fnd-{n}", finding=finding, org_path="/root/", state=state,
                         mode=mode, raised_at=AT, updated_at=AT)


def score(**kw: object) -> int:
    args: dict[str, object] = {
        "state": DeviceState.ACTIVE, "credential": CredentialStatus.ACTIVE,
        "never_rotated": False, "firmware_compliant": True, "firmware_reason": None,
        "findings": [], "at": AT}
    args.update(kw)
    return score_device("d1", **args).score  # type: ignore[arg-type]


def test_ok_clean_device_has_full_trust() -> None:
    result = score_device("d1", state=DeviceState.ACTIVE, credential=CredentialStatus.ACTIVE,
                          never_rotated=False, firmware_compliant=True, firmware_reason=None,
                          findings=[], at=AT)
    assert result.score == 100
    assert result.factors == ()


@pytest.mark.parametrize(("kw", "expected"), [
    ({"credential": CredentialStatus.EXPIRED}, 70),
    ({"credential": CredentialStatus.OVERDUE_ROTATION}, 85),
    ({"credential": CredentialStatus.NONE}, 80),
    ({"never_rotated": True}, 90),
    ({"firmware_compliant": False}, 60),
    ({"state": DeviceState.QUARANTINED}, 80),
], ids=["fail/expired", "fail/overdue-rotation", "fail/no-credential", "fail/old-key",
        "fail/non-compliant-firmware", "fail/quarantined"])
def test_fail_each_factor_costs_its_weight(kw: dict[str, object], expected: int) -> None:
    assert score(**kw) == expected


def test_fail_one_open_high_finding_and_a_missed_rotation_drop_below_60() -> None:
    assert score(findings=[stored(Severity.HIGH)],
                 credential=CredentialStatus.OVERDUE_ROTATION) == 55


def test_ok_closed_findings_no_longer_count() -> None:
    findings = [stored(Severity.CRITICAL, FindingState.RESOLVED, 1),
                stored(Severity.HIGH, FindingState.FALSE_POSITIVE, 2)]
    assert score(findings=findings) == 100


def test_ok_findings_are_capped_and_explained() -> None:
    findings = [stored(Severity.CRITICAL, n=i) for i in range(5)]
    result = score_device("d1", state=DeviceState.ACTIVE, credential=CredentialStatus.ACTIVE,
                          never_rotated=False, firmware_compliant=None, firmware_reason=None,
                          findings=findings, at=AT)
    assert result.score == 100 - MAX_FINDINGS_PENALTY
    assert sum(f.delta for f in result.factors) == -MAX_FINDINGS_PENALTY
    assert all(f.name == "finding" and "rate up" in f.detail for f in result.factors)


def test_ok_score_never_below_zero() -> None:
    assert score(findings=[stored(Severity.CRITICAL, n=i) for i in range(3)],
                 credential=CredentialStatus.REVOKED, firmware_compliant=False,
                 state=DeviceState.QUARANTINED) == 0


def test_ok_monitor_mode_findings_are_shown_but_not_counted() -> None:
    result = score_device("d1", state=DeviceState.ACTIVE, credential=CredentialStatus.ACTIVE,
                          never_rotated=False, firmware_compliant=True, firmware_reason=None,
                          findings=[stored(Severity.CRITICAL, mode=DetectionMode.MONITOR)],
                          at=AT)
    assert result.score == 100
    (factor,) = result.factors
    assert factor.delta == 0 and "monitor mode: not counted" in factor.detail
