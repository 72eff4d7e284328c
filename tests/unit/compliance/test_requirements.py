"""The requirement → evidence mapping on hand-made evidence: each rule's edges."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from iotiam.compliance.models import FleetEvidence, Framework, Status
from iotiam.compliance.requirements import MAPPING, judge

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)

#: a fleet where everything iotiam can see is in order
CLEAN = FleetEvidence(
    org_path="/root/", devices=10, by_state={"active": 10},
    by_credential={"valid": 10, "none": 0}, never_rotated=0, risk_factors={},
    register_built_at=NOW.timestamp() - 3600, policies=2, guardrails=1, firmware_signers=1,
    firmware_images=3, firmware_rules=1, detection_modes={"enforce": 2, "monitor": 1},
    open_findings=1, overdue_findings=0, closed_findings=5,
    checkpoint_at=NOW - timedelta(hours=1), checkpoint_size=500)


def status(fleet: FleetEvidence, framework: Framework, clause: str) -> Status:
    found = [j.status for j in judge(fleet, NOW)
             if j.requirement.framework is framework and j.requirement.clause == clause]
    assert found, f"{framework} {clause} is not mapped"
    return found[0]


def test_ok_a_clean_fleet_meets_every_mapped_requirement() -> None:
    judged = judge(CLEAN, NOW)
    assert len(judged) == len(MAPPING)
    assert {j.status for j in judged} == {Status.MET}, [
        (j.requirement.clause, j.summary) for j in judged if j.status is not Status.MET]


def test_ok_every_framework_is_mapped_with_its_own_clause_ids() -> None:
    clauses = {(m.requirement.framework, m.requirement.clause) for m in MAPPING}
    for expected in ((Framework.ETSI_EN_303_645, "5.1-1"), (Framework.ETSI_EN_303_645, "5.5-8"),
                     (Framework.NIST_IR_8259A, "Device Identification"),
                     (Framework.EU_CRA_ANNEX_I, "Part I (2)(d)"),
                     (Framework.EU_CRA_ANNEX_I, "Part II (2)")):
        assert expected in clauses


@pytest.mark.parametrize("factor", ["default-credential", "shared-credential"])
def test_fail_default_or_shared_credentials_break_5_1_1_and_cra_2b(factor: str) -> None:
    fleet = replace(CLEAN, risk_factors={factor: 2})
    assert status(fleet, Framework.ETSI_EN_303_645, "5.1-1") is Status.NOT_MET
    assert status(fleet, Framework.EU_CRA_ANNEX_I, "Part I (2)(b)") is Status.NOT_MET
    assert status(fleet, Framework.NIST_IR_8259A, "Device Identification") is Status.NOT_MET


def test_fail_no_credentialed_device_or_no_register_is_no_evidence_never_met() -> None:
    bare = replace(CLEAN, by_credential={"none": 10})
    assert status(bare, Framework.ETSI_EN_303_645, "5.1-1") is Status.NO_EVIDENCE
    unbuilt = replace(CLEAN, register_built_at=None)
    for clause in ("5.1-1", "5.5-8"):
        assert status(unbuilt, Framework.ETSI_EN_303_645, clause) is Status.NO_EVIDENCE
    empty = replace(CLEAN, devices=0, by_credential={})
    assert status(empty, Framework.NIST_IR_8259A, "Device Identification") is Status.NO_EVIDENCE


def test_fail_devices_without_credentials_are_partly_identified() -> None:
    fleet = replace(CLEAN, by_credential={"valid": 7, "none": 3})
    assert status(fleet, Framework.NIST_IR_8259A, "Device Identification") is Status.PARTLY
    assert status(fleet, Framework.ETSI_EN_303_645, "5.1-1") is Status.MET


def test_fail_rotation_and_revocation_in_5_5_8() -> None:
    overdue = replace(CLEAN, never_rotated=4)
    assert status(overdue, Framework.ETSI_EN_303_645, "5.5-8") is Status.PARTLY
    revoked = replace(CLEAN, risk_factors={"revoked-in-use": 1})
    assert status(revoked, Framework.ETSI_EN_303_645, "5.5-8") is Status.NOT_MET
    revocation = [j for j in judge(revoked, NOW) if j.requirement.clause == "Part I (2)(d)"]
    assert {j.status for j in revocation} == {Status.PARTLY, Status.NOT_MET}


def test_fail_firmware_rules_signers_and_noncompliance() -> None:
    none = replace(CLEAN, firmware_signers=0, firmware_images=0, firmware_rules=0)
    assert status(none, Framework.ETSI_EN_303_645, "5.3-10") is Status.NO_EVIDENCE
    assert status(none, Framework.ETSI_EN_303_645, "5.3-8") is Status.NO_EVIDENCE
    behind = replace(CLEAN, risk_factors={"firmware-noncompliant": 5})
    assert status(behind, Framework.ETSI_EN_303_645, "5.3-8") is Status.PARTLY
    assert status(behind, Framework.EU_CRA_ANNEX_I, "Part I (2)(f)") is Status.PARTLY


def test_fail_audit_without_or_with_a_stale_checkpoint() -> None:
    assert status(replace(CLEAN, checkpoint_at=None), Framework.EU_CRA_ANNEX_I,
                  "Part I (2)(l)") is Status.NOT_MET
    stale = replace(CLEAN, checkpoint_at=NOW - timedelta(days=3))
    assert status(stale, Framework.EU_CRA_ANNEX_I, "Part I (2)(l)") is Status.PARTLY


def test_fail_findings_overdue_and_detection_still_learning() -> None:
    overdue = replace(CLEAN, overdue_findings=2)
    assert status(overdue, Framework.EU_CRA_ANNEX_I, "Part II (2)") is Status.NOT_MET
    learning = replace(CLEAN, detection_modes={"learn": 3}, open_findings=0,
                       closed_findings=0)
    assert status(learning, Framework.ETSI_EN_303_645, "5.10-1") is Status.NOT_MET
    assert status(learning, Framework.EU_CRA_ANNEX_I, "Part II (2)") is Status.NO_EVIDENCE
    mixed = replace(CLEAN, detection_modes={"learn": 1, "enforce": 1})
    assert status(mixed, Framework.ETSI_EN_303_645, "5.10-1") is Status.PARTLY


def test_ok_no_policy_is_not_least_privilege() -> None:
    fleet = replace(CLEAN, policies=0, guardrails=0)
    assert status(fleet, Framework.NIST_IR_8259A, "Logical Access to Interfaces") \
        is Status.NOT_MET
