"""The requirement → evidence mapping: for each clause iotiam can speak to, the facts it
reads and the rule that turns them into a status. docs/compliance.md states the same
table in prose; each clause id is the document's own (ETSI EN 303 645 V2.1.1 provision
numbers, NIST IR 8259A capability names, CRA Annex I part and point).

A rule never says ``met`` on no data: a fleet with no credentialed device, or a register
never built, gets ``no-evidence``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from iotiam.compliance.models import (
    Evidence,
    FleetEvidence,
    Framework,
    Judgement,
    Requirement,
    Status,
    View,
)

ETSI, NIST, CRA = Framework.ETSI_EN_303_645, Framework.NIST_IR_8259A, Framework.EU_CRA_ANNEX_I
#: a signed audit checkpoint older than this no longer anchors the chain's recent records
CHECKPOINT_FRESH = timedelta(days=1)

Rule = Callable[[FleetEvidence, datetime], tuple[Status, str, tuple[Evidence, ...]]]


@dataclass(frozen=True, slots=True)
class Mapped:
    """A requirement and the rule that judges it."""

    requirement: Requirement
    rule: Rule


def _factors(fleet: FleetEvidence, *names: str) -> tuple[Evidence, ...]:
    return tuple(Evidence(f"identities with {name}", fleet.factor(name), View.RISK,
                          {"factor": name}) for name in names)


def _credentialed(fleet: FleetEvidence) -> int:
    """Devices holding a credential of any kind the inventory's credential status judges:
    a certificate, a PSK (a scheduled rotation's next key not yet promoted aside) or an
    OAuth client, live or not (every device but the status ``none``)."""
    return fleet.devices - fleet.by_credential.get("none", 0)


def _unbuilt(fleet: FleetEvidence) -> str | None:
    """Why the register's factors cannot be relied on, if they cannot."""
    if fleet.register_built_at is None:
        return "the risk register has never been built (iotiam risk refresh)"
    return None


# -- identities and credentials --------------------------------------------------------


def unique_credentials(fleet: FleetEvidence, now: datetime
                       ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """No default or shared credential on any identity."""
    evidence = (Evidence("devices holding a certificate, PSK or OAuth client",
                         _credentialed(fleet), View.DEVICES),
                *_factors(fleet, "default-credential", "shared-credential",
                          "conflicting-client-id"))
    if (why := _unbuilt(fleet)) is not None:
        return Status.NO_EVIDENCE, why, evidence
    bad = sum(fleet.factor(f) for f in ("default-credential", "shared-credential",
                                        "conflicting-client-id"))
    if bad:
        return Status.NOT_MET, f"{bad} identities use a default or shared credential", evidence
    if _credentialed(fleet) == 0:
        return (Status.NO_EVIDENCE, "no device holds a credential (certificate, PSK or "
                "OAuth client) yet", evidence)
    return Status.MET, "every credential is unique to its device", evidence


def identification(fleet: FleetEvidence, now: datetime
                   ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """Every device has its own identity: registered, credentialed, not shared."""
    without = fleet.by_credential.get("none", 0)
    evidence = (Evidence("devices registered", fleet.devices, View.DEVICES),
                Evidence("devices without a credential", without, View.DEVICES),
                *_factors(fleet, "unmanaged", "shared-credential"))
    if fleet.devices == 0:
        return Status.NO_EVIDENCE, "no device is registered", evidence
    status, summary, _ = unique_credentials(fleet, now)
    if status is Status.NOT_MET:
        return status, summary, evidence
    if status is Status.NO_EVIDENCE:
        return status, summary, evidence
    gaps = without + fleet.factor("unmanaged")
    if gaps:
        return (Status.PARTLY, f"{without} devices hold no credential and "
                f"{fleet.factor('unmanaged')} seen identities are unmanaged", evidence)
    return Status.MET, "every device has a unique identity and credential", evidence


def key_management(fleet: FleetEvidence, now: datetime
                   ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """Keys rotate before they age out, and revoked or expired ones are not in use."""
    expired = fleet.by_credential.get("expired", 0)
    evidence = (Evidence("devices whose key is older than their type allows",
                         fleet.never_rotated, View.DEVICES),
                Evidence("devices whose current certificate or PSK expired unreplaced", expired,
                         View.DEVICES),
                *_factors(fleet, "never-rotated", "expired-in-use", "expiring-no-renewal",
                          "revoked-in-use", "active-under-revoked-ca", "weak-key"))
    if _credentialed(fleet) == 0:
        return Status.NO_EVIDENCE, "no device holds a credential yet", evidence
    if (why := _unbuilt(fleet)) is not None:
        return Status.NO_EVIDENCE, why, evidence
    broken = sum(fleet.factor(f) for f in ("expired-in-use", "revoked-in-use",
                                           "active-under-revoked-ca"))
    if broken:
        return (Status.NOT_MET, f"{broken} identities use an expired or revoked credential",
                evidence)
    late = fleet.never_rotated + expired + sum(fleet.factor(f) for f in (
        "expiring-no-renewal", "weak-key"))
    if late:
        return Status.PARTLY, f"{late} credentials are overdue for rotation or weak", evidence
    return Status.MET, "credentials rotate on time; none revoked or expired is in use", evidence


def revocation(fleet: FleetEvidence, now: datetime
               ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """A revoked credential is refused everywhere (no revoked identity is still in use)."""
    evidence = (Evidence("devices whose credential is revoked",
                         fleet.by_credential.get("revoked", 0), View.DEVICES),
                *_factors(fleet, "revoked-in-use", "active-under-revoked-ca",
                          "revoked-ca-trusted"))
    if _credentialed(fleet) == 0:
        return Status.NO_EVIDENCE, "no device holds a credential yet", evidence
    if (why := _unbuilt(fleet)) is not None:
        return Status.NO_EVIDENCE, why, evidence
    seen = sum(fleet.factor(f) for f in ("revoked-in-use", "active-under-revoked-ca",
                                         "revoked-ca-trusted"))
    if seen:
        return Status.NOT_MET, f"{seen} revoked identities or CAs are still in use", evidence
    return Status.MET, "no revoked credential or CA is in use", evidence


# -- firmware ---------------------------------------------------------------------------


def signed_firmware(fleet: FleetEvidence, now: datetime
                    ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """Firmware is checked against registered signers."""
    evidence = (Evidence("firmware signers", fleet.firmware_signers, View.FIRMWARE),
                Evidence("signed images registered", fleet.firmware_images, View.FIRMWARE),
                *_factors(fleet, "firmware-noncompliant"))
    if fleet.firmware_signers == 0 or fleet.firmware_images == 0:
        return Status.NO_EVIDENCE, "no firmware signer or signed image is registered", evidence
    if fleet.factor("firmware-noncompliant"):
        return (Status.PARTLY, f"{fleet.factor('firmware-noncompliant')} devices run "
                "firmware that is unsigned, unknown or below the minimum", evidence)
    return Status.MET, "devices report signed, registered firmware", evidence


def minimum_versions(fleet: FleetEvidence, now: datetime
                     ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """Minimum-firmware rules exist and the fleet meets them."""
    evidence = (Evidence("minimum-firmware rules", fleet.firmware_rules, View.FIRMWARE),
                *_factors(fleet, "firmware-noncompliant"))
    if fleet.firmware_rules == 0:
        return Status.NO_EVIDENCE, "no minimum-firmware rule is set", evidence
    behind = fleet.factor("firmware-noncompliant")
    if behind:
        return Status.PARTLY, f"{behind} devices are below their minimum firmware", evidence
    return Status.MET, "every attested device meets its type's minimum firmware", evidence


# -- watching, audit, handling -----------------------------------------------------------


def monitoring(fleet: FleetEvidence, now: datetime
               ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """Device behaviour is examined for anomalies (detection in monitor or enforce)."""
    modes = fleet.detection_modes
    evidence = tuple(Evidence(f"device types in {mode}", modes.get(mode, 0), View.FINDINGS)
                     for mode in ("learn", "monitor", "enforce"))
    watching = modes.get("monitor", 0) + modes.get("enforce", 0)
    if not sum(modes.values()):
        return Status.NO_EVIDENCE, "no device type has a detection mode", evidence
    if modes.get("learn", 0):
        return (Status.PARTLY if watching else Status.NOT_MET,
                f"{modes.get('learn', 0)} device types are still learning (no findings)",
                evidence)
    return Status.MET, "every device type is monitored or enforced", evidence


def audit_trail(fleet: FleetEvidence, now: datetime
                ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """Every decision is recorded in the hash chain, anchored by recent checkpoints."""
    age = "none" if fleet.checkpoint_at is None else fleet.checkpoint_at.isoformat()
    evidence: tuple[Evidence, ...] = (Evidence("last signed checkpoint", age, View.AUDIT),)
    if fleet.checkpoint_size is not None:
        evidence += (Evidence("records it covers", fleet.checkpoint_size, View.AUDIT),)
    evidence += _factors(fleet, "audit-export-disabled")
    if fleet.checkpoint_at is None:
        return Status.NOT_MET, "the audit chain has no signed checkpoint", evidence
    stale = now - fleet.checkpoint_at > CHECKPOINT_FRESH
    if stale or fleet.factor("audit-export-disabled"):
        return (Status.PARTLY, "the last checkpoint is over a day old" if stale
                else "audit records are not exported to a SIEM", evidence)
    return Status.MET, "the chain is checkpointed within a day and exported", evidence


def finding_handling(fleet: FleetEvidence, now: datetime
                     ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """Findings are acted on: no critical or high one stays open past the grace period."""
    evidence = (Evidence("open findings", fleet.open_findings, View.FINDINGS,
                         {"state": "open"}),
                Evidence("critical or high findings open past the grace period",
                         fleet.overdue_findings, View.FINDINGS, {"state": "open"}),
                Evidence("findings closed", fleet.closed_findings, View.FINDINGS,
                         {"state": "resolved"}),
                *_factors(fleet, "alert-channels-disabled"))
    watching = fleet.detection_modes.get("monitor", 0) + fleet.detection_modes.get("enforce", 0)
    if fleet.open_findings + fleet.closed_findings == 0 and not watching:
        return (Status.NO_EVIDENCE, "no device type is monitored, so nothing has been "
                "detected or handled", evidence)
    if fleet.overdue_findings:
        return (Status.NOT_MET, f"{fleet.overdue_findings} critical or high findings are "
                "open past the grace period", evidence)
    if fleet.factor("alert-channels-disabled"):
        return Status.PARTLY, "no alert channel delivers findings", evidence
    return Status.MET, "no serious finding is left open past the grace period", evidence


def access_control(fleet: FleetEvidence, now: datetime
                   ) -> tuple[Status, str, tuple[Evidence, ...]]:
    """Devices authenticate with unique credentials and act only as policies allow."""
    evidence = (Evidence("policies", fleet.policies, View.POLICIES),
                Evidence("guardrails", fleet.guardrails, View.POLICIES, {"kind": "guardrail"}),
                *_factors(fleet, "over-permissive-policy", "default-credential",
                          "revoked-in-use"))
    status, summary, _ = unique_credentials(fleet, now)
    if status is not Status.MET:
        return status, summary, evidence
    if fleet.policies == 0:
        return Status.NOT_MET, "no policy grants or limits what devices may do", evidence
    loose = fleet.factor("over-permissive-policy") + fleet.factor("revoked-in-use")
    if loose:
        return (Status.PARTLY, f"{loose} identities hold over-permissive rights or a "
                "revoked credential", evidence)
    return Status.MET, "unique credentials, least-privilege policies", evidence


# -- the table ---------------------------------------------------------------------------


def _r(framework: Framework, clause: str, title: str, checks: str, rule: Rule) -> Mapped:
    return Mapped(Requirement(framework, clause, title, checks), rule)


MAPPING: tuple[Mapped, ...] = (
    _r(ETSI, "5.1-1", "No universal default passwords: passwords unique per device or "
       "defined by the user", "default, shared and conflicting credentials in the risk "
       "register", unique_credentials),
    _r(ETSI, "5.2-3", "Continually monitor for, identify and rectify security "
       "vulnerabilities", "open critical/high findings past the grace period; alert "
       "channels", finding_handling),
    _r(ETSI, "5.3-8", "Keep software updated: security updates shall be timely",
       "minimum-firmware rules and devices below them", minimum_versions),
    _r(ETSI, "5.3-10", "Keep software updated: verify the authenticity and integrity of "
       "each update via a trust relationship", "registered firmware signers and signed "
       "images; devices with non-compliant firmware", signed_firmware),
    _r(ETSI, "5.4-4", "Critical security parameters for communication unique per device",
       "shared and default credentials; devices without one", identification),
    _r(ETSI, "5.5-8", "Secure management processes for critical security parameters",
       "rotation (key age, renewal), expired, revoked and weak keys in use", key_management),
    _r(ETSI, "5.10-1", "Examine system telemetry data for security anomalies",
       "detection mode per device type", monitoring),
    _r(NIST, "Device Identification", "The device can be uniquely identified logically",
       "registered devices, their credentials, unmanaged identities", identification),
    _r(NIST, "Logical Access to Interfaces", "Access to the device's interfaces is "
       "limited to authorized entities", "unique credentials, policies, guardrails, "
       "over-permissive rights", access_control),
    _r(NIST, "Software Update", "The device's software can be updated by authorized "
       "entities using a secure and configurable mechanism", "signed images and signers; "
       "non-compliant firmware", signed_firmware),
    _r(NIST, "Cybersecurity State Awareness", "The device can report on its cybersecurity "
       "state to authorized entities", "detection mode per device type", monitoring),
    _r(CRA, "Part I (2)(b)", "Secure by default configuration", "default and shared "
       "credentials", unique_credentials),
    _r(CRA, "Part I (2)(c)", "Vulnerabilities can be addressed through security updates",
       "minimum-firmware rules and devices below them", minimum_versions),
    _r(CRA, "Part I (2)(d)", "Protection from unauthorised access by authentication, "
       "identity or access management; report possible unauthorised access",
       "unique credentials, policies, revoked credentials in use", access_control),
    _r(CRA, "Part I (2)(d)", "Protection from unauthorised access: a revoked identity "
       "loses access", "revoked credentials or CAs still in use", revocation),
    _r(CRA, "Part I (2)(f)", "Protect the integrity of programs and configuration",
       "signed firmware", signed_firmware),
    _r(CRA, "Part I (2)(l)", "Record and monitor relevant internal activity",
       "the audit chain's checkpoints and export", audit_trail),
    _r(CRA, "Part II (2)", "Address and remediate vulnerabilities without delay",
       "open critical/high findings past the grace period", finding_handling),
)


def judge(fleet: FleetEvidence, now: datetime) -> tuple[Judgement, ...]:
    """Every mapped requirement judged against the fleet's evidence."""
    judged = []
    for mapped in MAPPING:
        status, summary, evidence = mapped.rule(fleet, now)
        judged.append(Judgement(mapped.requirement, status, summary, evidence))
    return tuple(judged)
