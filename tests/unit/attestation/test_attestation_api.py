"""Device attestation end to end in-process (SQLite and PostgreSQL): challenge, evidence,
verdict, stored status, findings, refusals (G10) and single use of nonces (G8-like)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from expect import assert_problem, audit_records, last_seq
from sqlalchemy import func, select

from conftest import Installation
from iotiam.attestation.evidence import sign_evidence
from iotiam.detection.models import FindingType, Severity
from iotiam.errors import IamError
from iotiam.storage.tables.attestation import attestation_nonces, device_firmware
from iotiam.testing import make_key

from .kit import BOOT, FirmwareKit, image_hash


@pytest.fixture
def kit(installation: Installation) -> Iterator[FirmwareKit]:
    """A signer with images 1.2.0 and 1.4.0 of ``sensor``; minimum 1.3.0."""
    k = FirmwareKit(installation)
    key = k.signer()
    k.image(key, "1.2.0")
    k.image(key, "1.4.0")
    assert k.rule("1.3.0").status_code == 200
    yield k


def stored_statuses(inst: Installation) -> int:
    with inst.services.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(
            device_firmware)).scalar_one())


def tags_since(inst: Installation, seq: int) -> list[tuple[str, str]]:
    return [(r["tag"], r["outcome"]) for r in audit_records(inst.api(), after=seq)]


def test_attest_ok_compliant(kit: FirmwareKit) -> None:
    device = kit.device("dev-ok")
    challenge = kit.challenge(device)
    assert challenge.status_code == 200, challenge.text
    body = challenge.json()
    assert len(body["nonce"]) == 43 and "=" not in body["nonce"]
    verdict = kit.attest(device, "1.4.0", nonce=body["nonce"])
    assert verdict["compliant"] is True, verdict
    assert verdict["firmware_version"] == "1.4.0"
    assert verdict["firmware_hash"] == image_hash("1.4.0")
    assert verdict["measurements"] == [{"name": "bootloader", "digest": "ab" * 32}]
    status = kit.api.get("/v1/devices/dev-ok/firmware").json()
    assert status["compliant"] is True and status["attested"] is True
    assert kit.sink.findings == []
    # only the hash of a nonce is stored
    with kit.inst.services.database.engine.connect() as conn:
        hashes = conn.execute(select(attestation_nonces.c.nonce_hash)).scalars().all()
    assert body["nonce"] not in hashes
    compliance = kit.inst.services.attestation.compliance_of(["dev-ok", "never", "dev-ok"])
    assert set(compliance) == {"dev-ok"} and compliance["dev-ok"].compliant


def test_attest_ok_ed25519_device(kit: FirmwareKit) -> None:
    device = kit.device("dev-ed", kind="ed25519")
    assert kit.attest(device, "1.4.0")["compliant"] is True


def test_attest_ok_older_firmware_noncompliant_with_finding(kit: FirmwareKit) -> None:
    device = kit.device("dev-old")
    seq = last_seq(kit.inst)
    verdict = kit.attest(device, "1.2.0")
    assert verdict["compliant"] is False
    assert "below the minimum 1.3.0" in verdict["reason"]
    (finding,) = kit.sink.findings
    assert finding.type is FindingType.FIRMWARE_NONCOMPLIANT
    assert finding.severity is Severity.MEDIUM
    assert finding.device_id == "dev-old" and finding.device_type == "sensor"
    assert finding.evidence["min_version"] == "1.3.0"
    assert tags_since(kit.inst, seq) == [("device:attestation:challenged", "success"),
                                         ("device:attestation:verified", "success")]


@pytest.mark.parametrize(("version", "fw_hash", "reason"), [
    ("1.4.0", image_hash("evil"), "does not match the registered image"),
    ("9.9.9", image_hash("9.9.9"), "no registered firmware image of sensor version 9.9.9"),
], ids=["ok/hash-mismatch", "ok/unknown-version"])
def test_attest_ok_unregistered_image_noncompliant_high(kit: FirmwareKit, version: str,
                                                        fw_hash: str, reason: str) -> None:
    device = kit.device("dev-x")
    verdict = kit.attest(device, version, fw_hash=fw_hash)
    assert verdict["compliant"] is False and reason in verdict["reason"]
    assert verdict["image"] is None
    (finding,) = kit.sink.findings
    assert finding.severity is Severity.HIGH


def refused(kit: FirmwareKit, answer: Any, status: int, detail: str, seq: int,
            kind: str | None = None) -> None:
    body = assert_problem(answer, status, detail)
    if kind:
        assert body["type"] == f"urn:iotiam:problem:{kind}"
    assert stored_statuses(kit.inst) == 0
    assert tags_since(kit.inst, seq) == [("device:attestation:refused", "failure")]


def test_evidence_fail_stale_nonce(kit: FirmwareKit) -> None:
    device = kit.device("dev-stale")
    nonce = kit.nonce(device)
    kit.inst.clock.advance(timedelta(seconds=121))
    seq = last_seq(kit.inst)
    answer = kit.evidence(device, "1.4.0", nonce=nonce)
    refused(kit, answer, 400, "nonce expired", seq, "nonce-refused")
    (finding,) = kit.sink.findings
    assert finding.type is FindingType.ATTESTATION_FAILED


def test_evidence_fail_replay(kit: FirmwareKit) -> None:
    device = kit.device("dev-replay")
    token = sign_evidence(device.key, nonce=kit.nonce(device), device_id=device.id,
                          firmware_version="1.4.0", firmware_hash=image_hash("1.4.0"),
                          measurements=BOOT, now=kit.inst.clock.now())
    assert kit.evidence(device, "", token=token).status_code == 200
    before = kit.api.get("/v1/devices/dev-replay/firmware").json()
    seq = last_seq(kit.inst)
    answer = kit.evidence(device, "", token=token)
    body = assert_problem(answer, 400, "already used")
    assert body["type"] == "urn:iotiam:problem:nonce-refused"
    assert kit.api.get("/v1/devices/dev-replay/firmware").json() == before
    assert tags_since(kit.inst, seq) == [("device:attestation:refused", "failure")]


def test_evidence_fail_wrong_key(kit: FirmwareKit) -> None:
    device = kit.device("dev-key")
    nonce = kit.nonce(device)
    seq = last_seq(kit.inst)
    answer = kit.evidence(device, "1.4.0", nonce=nonce, key=make_key())
    refused(kit, answer, 400, "not signed by the key of the certificate", seq,
            "invalid-evidence")
    assert kit.sink.findings[0].severity is Severity.HIGH
    # the nonce was not spent by the refused attempt: the real device can still use it
    assert kit.attest(device, "1.4.0", nonce=nonce)["compliant"] is True


def test_evidence_fail_unknown_nonce(kit: FirmwareKit) -> None:
    device = kit.device("dev-unknown")
    seq = last_seq(kit.inst)
    refused(kit, kit.evidence(device, "1.4.0", nonce="A" * 43), 400, "unknown nonce", seq)


def test_evidence_fail_nonce_of_another_device(kit: FirmwareKit) -> None:
    one, two = kit.device("dev-one"), kit.device("dev-two")
    nonce = kit.nonce(two)
    seq = last_seq(kit.inst)
    refused(kit, kit.evidence(one, "1.4.0", nonce=nonce), 400, "another device", seq)


def test_evidence_fail_about_another_device(kit: FirmwareKit) -> None:
    one, two = kit.device("dev-a"), kit.device("dev-b")
    # two signs evidence naming itself, but sends it over one's connection
    nonce = kit.nonce(one)
    seq = last_seq(kit.inst)
    answer = kit.evidence(two, "1.4.0", nonce=nonce, as_device=one)
    refused(kit, answer, 400, "not signed by the key of the certificate", seq)


@pytest.mark.parametrize("token", [None, "", "not.a.jwt", {"eat_nonce": "x"}],
                         ids=["fail/missing", "fail/empty", "fail/garbage", "fail/object"])
def test_evidence_fail_malformed(kit: FirmwareKit, token: Any) -> None:
    device = kit.device("dev-bad")
    seq = last_seq(kit.inst)
    answer = kit.http.post("/v1/attestation/evidence", json={"evidence": token},
                           headers=device.header)
    refused(kit, answer, 400, "", seq)


def test_challenge_fail_without_certificate(kit: FirmwareKit) -> None:
    seq = last_seq(kit.inst)
    answer = kit.challenge(None)
    assert_problem(answer, 401, "mTLS")
    assert tags_since(kit.inst, seq) == [("device:attestation:refused", "denied")]
    answer = kit.http.post("/v1/attestation/evidence", json={"evidence": "a.b.c"})
    assert_problem(answer, 401, "mTLS")


def test_challenge_fail_revoked_certificate(kit: FirmwareKit) -> None:
    device = kit.device("dev-revoked")
    serial = f"{device.cert.serial_number:x}"
    answer = kit.api.post(f"/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise"})
    assert answer.status_code == 200, answer.text
    assert_problem(kit.challenge(device), 401, "revoked")


def test_challenge_fail_too_many_open(kit: FirmwareKit) -> None:
    device = kit.device("dev-greedy")
    for _ in range(8):
        kit.nonce(device)
    assert_problem(kit.challenge(device), 429, "unused challenges")
    kit.inst.clock.advance(timedelta(seconds=121))  # they expire and are purged
    kit.nonce(device)


def test_nonce_ok_single_use_under_concurrency(kit: FirmwareKit) -> None:
    device = kit.device("dev-race")
    token = sign_evidence(device.key, nonce=kit.nonce(device), device_id=device.id,
                          firmware_version="1.4.0", firmware_hash=image_hash("1.4.0"),
                          measurements=BOOT, now=kit.inst.clock.now())
    attestation = kit.inst.services.attestation

    def submit(_: int) -> str:
        try:
            attestation.submit_evidence(device.cert, token)
        except IamError as e:
            return e.kind
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(submit, range(8)))
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) == {"ok", "nonce-refused"}


def test_rule_change_ok_rejudges_and_moves_updated_at(kit: FirmwareKit) -> None:
    device = kit.device("dev-rule")
    assert kit.attest(device, "1.4.0")["compliant"] is True
    before = kit.api.get("/v1/devices/dev-rule").json()["updated_at"]
    kit.inst.clock.advance(timedelta(minutes=5))
    answer = kit.rule("1.5.0")
    assert answer.status_code == 200, answer.text
    status = kit.api.get("/v1/devices/dev-rule/firmware").json()
    assert status["compliant"] is False and "below the minimum 1.5.0" in status["reason"]
    after = kit.api.get("/v1/devices/dev-rule").json()["updated_at"]
    assert after != before
    (finding,) = kit.sink.findings
    assert finding.type is FindingType.FIRMWARE_NONCOMPLIANT
    # same compliance again: updated_at stays
    kit.inst.clock.advance(timedelta(minutes=5))
    assert kit.attest(device, "1.4.0")["compliant"] is False
    assert kit.api.get("/v1/devices/dev-rule").json()["updated_at"] == after
    records = audit_records(kit.inst.api())
    rule_set = [r for r in records if r["tag"] == "admin:firmware-rule:set"][-1]
    assert rule_set["details"]["devices_changed"] == 1
    assert rule_set["details"]["previous"] == "1.3.0"


def _segment(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("part", ["header", "payload"])
def test_evidence_fail_deep_jws(kit: FirmwareKit, part: str) -> None:
    """A JWS whose header or payload is ``[[[…]]]`` 1,000 deep: a 400, never a 500."""
    device = kit.device("dev-deep")
    deep = "[" * 1000 + "]" * 1000
    header = deep if part == "header" else '{"alg": "ES256", "typ": "JWT"}'
    payload = deep if part == "payload" else '{"eat_nonce": "x"}'
    seq = last_seq(kit.inst)
    answer = kit.evidence(device, "", token=f"{_segment(header)}.{_segment(payload)}.AAAA")
    refused(kit, answer, 400, "nested more than", seq)


def test_evidence_fail_duplicate_claim(kit: FirmwareKit) -> None:
    """Two ``eat_nonce`` claims in correctly signed evidence: the last must not win."""
    device = kit.device("dev-dup")
    token = sign_evidence(device.key, nonce=kit.nonce(device), device_id=device.id,
                          firmware_version="1.4.0", firmware_hash=image_hash("1.4.0"),
                          measurements=BOOT, now=kit.inst.clock.now())
    header, payload, _ = token.split(".")
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    doubled = claims.replace('"eat_nonce":', '"eat_nonce": "stale", "eat_nonce":', 1)
    assert doubled != claims
    signing_input = f"{header}.{_segment(doubled)}"
    assert isinstance(device.key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(device.key.sign(signing_input.encode(),
                                                ec.ECDSA(hashes.SHA256())))
    signature = base64.urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    seq = last_seq(kit.inst)
    answer = kit.evidence(device, "", token=f"{signing_input}.{signature.rstrip(b'=').decode()}")
    refused(kit, answer, 400, "the key 'eat_nonce' twice", seq)
