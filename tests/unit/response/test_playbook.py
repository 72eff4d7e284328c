"""Playbook documents: rules per finding type and severity."""

from __future__ import annotations

import pytest

from iotiam.detection.models import Finding, FindingType, Severity
from iotiam.errors import InvalidInput
from iotiam.response.models import DEFAULT_PLAYBOOK, Action, Playbook


def finding(kind: FindingType, severity: Severity) -> Finding:
    return Finding(type=kind, severity=severity, at=0.0, device_id="d", summary="s",
                   detector="t")


def test_ok_default_alerts_everything_and_quarantines_high() -> None:
    assert DEFAULT_PLAYBOOK.actions_for(finding(FindingType.RATE_CHANGE, Severity.LOW)) == \
        {Action.ALERT}
    assert DEFAULT_PLAYBOOK.actions_for(finding(FindingType.RATE_CHANGE, Severity.HIGH)) == \
        {Action.ALERT, Action.QUARANTINE}
    assert Action.QUARANTINE in DEFAULT_PLAYBOOK.actions_for(
        finding(FindingType.FIRMWARE_NONCOMPLIANT, Severity.MEDIUM))
    assert not any(Action.REVOKE in DEFAULT_PLAYBOOK.actions_for(finding(t, Severity.CRITICAL))
                   for t in FindingType)


def test_ok_round_trip() -> None:
    document = {"rules": [
        {"finding_type": "lateral_movement", "min_severity": "medium",
         "actions": ["alert", "revoke"]},
        {"finding_type": "*", "min_severity": "critical", "actions": ["quarantine"]}]}
    playbook = Playbook.from_json(document)
    assert playbook.to_json() == document
    assert playbook.actions_for(finding(FindingType.LATERAL_MOVEMENT, Severity.HIGH)) == \
        {Action.ALERT, Action.REVOKE}
    assert playbook.actions_for(finding(FindingType.RATE_CHANGE, Severity.HIGH)) == set()


@pytest.mark.parametrize(("document", "message"), [
    ([], "a playbook is"),
    ({"rules": [{"finding_type": "nope", "actions": ["alert"]}]}, "unknown finding_type"),
    ({"rules": [{"actions": ["explode"]}]}, "unknown action"),
    ({"rules": [{"actions": []}]}, "non-empty list"),
    ({"rules": [{"min_severity": "huge", "actions": ["alert"]}]}, "unknown severity"),
    ({"rules": [{"actions": ["alert"], "extra": 1}]}, "unknown field"),
], ids=["fail/not-object", "fail/type", "fail/action", "fail/no-actions", "fail/severity",
        "fail/extra-field"])
def test_fail_bad_documents(document: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Playbook.from_json(document)
