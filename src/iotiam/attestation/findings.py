"""The findings attestation raises, and the sink used until a real one is wired."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from iotiam.attestation.models import FirmwareStatus, NonCompliant
from iotiam.detection.models import Finding, FindingType, Severity
from iotiam.detection.ports import FindingSink
from iotiam.errors import IamError
from iotiam.inventory.models import Device

log = logging.getLogger("iotiam.attestation")
DETECTOR = "attestation"


class DiscardingFindingSink:
    """Drops every finding: nothing stores, alerts or acts on them. Only for tests and
    installations whose response layer is not wired; the audit log still has each one."""

    def report(self, findings: Sequence[Finding]) -> None:
        """Do nothing."""


def report(sink: FindingSink, findings: Sequence[Finding]) -> None:
    """Hand findings over; a failing sink is logged, never turned into a refusal (the
    attestation itself was decided and audited)."""
    if not findings:
        return
    try:
        sink.report(findings)
    except IamError as e:
        log.warning("could not report %d attestation finding(s): %s", len(findings),
                    e.diagnostics())


def noncompliant(device: Device, status: FirmwareStatus, verdict: NonCompliant,
                 minimum: str | None) -> Finding:
    """FIRMWARE_NONCOMPLIANT: high when the image is unknown (maybe tampered), else medium."""
    return Finding(
        type=FindingType.FIRMWARE_NONCOMPLIANT,
        severity=Severity.HIGH if verdict.unknown_image else Severity.MEDIUM,
        at=status.attested_at.timestamp(), device_id=device.id, device_type=device.type_name,
        summary=f"device {device.id} runs non-compliant firmware: {verdict.reason}",
        detector=DETECTOR,
        evidence={"firmware_version": status.firmware_version,
                  "firmware_hash": status.firmware_hash, "reason": verdict.reason,
                  "image": verdict.image_id, "min_version": minimum},
    )


def attestation_failed(device: Device, reason: str, kind: str, at: datetime) -> Finding:
    """ATTESTATION_FAILED: evidence from an authenticated device that did not verify."""
    # a bad signature or a claim about another device is worse than a late nonce
    severity = Severity.MEDIUM if kind == "nonce-refused" else Severity.HIGH
    return Finding(
        type=FindingType.ATTESTATION_FAILED, severity=severity, at=at.timestamp(),
        device_id=device.id, device_type=device.type_name,
        summary=f"attestation of device {device.id} failed: {reason}", detector=DETECTOR,
        evidence={"reason": reason, "problem": kind},
    )
