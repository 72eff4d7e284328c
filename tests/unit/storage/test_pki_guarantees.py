"""The PKI guarantees that rest on storage: G1 (no serial twice), G5 (reserved before
signed), G2 (CRL numbers only go up, across restarts) and G6 (expired revoked
certificates stay on the CRL for the safety buffer)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from expect import assert_problem, audit_records, row_counts
from fastapi.testclient import TestClient
from fleet import add_device, issue, revoke
from sqlalchemy import delete, select

from conftest import Installation
from iotiam.api.app import create_public_app
from iotiam.bootstrap import Services
from iotiam.errors import Conflict, InternalError
from iotiam.kernel import SYSTEM
from iotiam.pki.models import IssueRequest, SerialInUse, serial_hex
from iotiam.storage.tables.pki import certificates, crls
from iotiam.testing import SequenceSerials, make_csr

# ≥ 64 bits, as every real serial has (G1)
FIRST = 0x5EED_0000_0000_0000_0001
SECOND = 0x5EED_0000_0000_0000_0002
THIRD = 0x5EED_0000_0000_0000_0003
FOURTH = 0x5EED_0000_0000_0000_0004


def certificate_rows(installation: Installation) -> list[dict[str, Any]]:
    with installation.services.database.engine.connect() as conn:
        rows = conn.execute(select(certificates).order_by(certificates.c.id))
        return [dict(r._mapping) for r in rows]


def issue_with(services: Services, device_id: str) -> Any:
    return services.pki.issue_certificate(SYSTEM, device_id=device_id,
                                          csr_data=make_csr(device_id))


# -- G1 --------------------------------------------------------------------------------


def test_serial_collision_draws_again(installation: Installation,
                                      replica: Callable[..., Services]) -> None:
    services = replica(SequenceSerials(FIRST, FIRST, SECOND))
    for device_id in ("dev-1", "dev-2"):
        add_device(installation.api(), device_id)
    first = issue_with(services, "dev-1")
    second = issue_with(services, "dev-2")
    assert (first.serial, second.serial) == (FIRST, SECOND)
    assert x509.load_pem_x509_certificate(second.pem.encode()).serial_number == SECOND
    rows = certificate_rows(installation)
    assert [(r["serial"], r["device_id"], r["status"]) for r in rows] == [
        (serial_hex(FIRST), "dev-1", "issued"), (serial_hex(SECOND), "dev-2", "issued")]
    api = installation.api()
    assert api.get(f"/v1/certificates/{serial_hex(FIRST)}").json()["device"] == "dev-1"


def test_serial_collision_fail_after_retries(installation: Installation,
                                             replica: Callable[..., Services]) -> None:
    services = replica(SequenceSerials(*[FIRST] * 4))
    for device_id in ("dev-1", "dev-2"):
        add_device(installation.api(), device_id)
    issue_with(services, "dev-1")
    before = row_counts(installation)
    with pytest.raises(Conflict):
        issue_with(services, "dev-2")
    assert row_counts(installation) == before
    assert installation.api().get("/v1/devices/dev-2").json()["state"] == "pending"
    refusal = audit_records(installation.api())[-1]
    assert (refusal["tag"], refusal["outcome"]) == ("device:certificate:refused", "failure")


def test_serial_collision_in_batch_draws_again(installation: Installation,
                                               replica: Callable[..., Services]) -> None:
    # dev-1 takes FIRST; the batch then draws FIRST (stored), SECOND, SECOND (each other)
    services = replica(SequenceSerials(FIRST, FIRST, SECOND, SECOND, THIRD, FOURTH))
    ids = ["dev-1", "dev-2", "dev-3", "dev-4"]
    for device_id in ids:
        add_device(installation.api(), device_id)
    issue_with(services, "dev-1")
    results = services.pki.issue_certificates(
        SYSTEM, [IssueRequest(device_id, make_csr(device_id)) for device_id in ids[1:]])
    assert [r.serial for r in results] == [THIRD, SECOND, FOURTH]
    rows = certificate_rows(installation)
    assert sorted((r["serial"], r["device_id"], r["status"]) for r in rows) == sorted([
        (serial_hex(FIRST), "dev-1", "issued"), (serial_hex(THIRD), "dev-2", "issued"),
        (serial_hex(SECOND), "dev-3", "issued"), (serial_hex(FOURTH), "dev-4", "issued")])


def test_serial_collision_in_batch_fail_refuses_whole_batch(
    installation: Installation, replica: Callable[..., Services],
) -> None:
    # a serial source stuck on a used value is broken: nothing of the batch is kept
    services = replica(SequenceSerials(FIRST, SECOND, FIRST, FIRST, FIRST))
    for device_id in ("dev-1", "dev-2", "dev-3"):
        add_device(installation.api(), device_id)
    issue_with(services, "dev-1")
    before = row_counts(installation)
    results = services.pki.issue_certificates(
        SYSTEM, [IssueRequest(d, make_csr(d)) for d in ("dev-2", "dev-3")])
    assert [type(r) for r in results] == [SerialInUse, SerialInUse]
    assert row_counts(installation) == before
    refusals = audit_records(installation.api())[-2:]
    assert [(r["tag"], r["subject"]) for r in refusals] == [
        ("device:certificate:refused", "device:dev-2"),
        ("device:certificate:refused", "device:dev-3")]


def test_serials_are_random_and_long(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    serials = [int(issue(api, "dev-1")["serial"], 16) for _ in range(8)]
    assert len(set(serials)) == len(serials)
    assert all(64 < s.bit_length() <= 159 for s in serials)


# -- G5 --------------------------------------------------------------------------------


def test_reserved_before_signing(installation: Installation, replica: Callable[..., Services],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    services = replica(SequenceSerials(FIRST))
    add_device(installation.api(), "dev-1")
    signer = services.pki._issuance._leaf
    seen: list[list[dict[str, Any]]] = []
    real_issue = signer.issue_der

    def spy(*args: Any, **kwargs: Any) -> bytes:
        seen.append(certificate_rows(installation))  # what the database holds right now
        return real_issue(*args, **kwargs)

    monkeypatch.setattr(signer, "issue_der", spy)
    record = issue_with(services, "dev-1")
    [[reserved]] = seen
    assert (reserved["serial"], reserved["status"], reserved["pem"]) == (
        serial_hex(FIRST), "reserved", None)
    certificate = x509.load_pem_x509_certificate(record.pem.encode())
    assert reserved["not_before"] == certificate.not_valid_before_utc
    assert reserved["not_after"] == certificate.not_valid_after_utc
    assert reserved["subject"] == "CN=dev-1"


def test_reserved_times_are_the_signed_times(installation: Installation,
                                             replica: Callable[..., Services]) -> None:
    # X.509 times have no fractions: the row must not keep any either (G5: recorded
    # is what was signed), nor the record returned, nor the audit record
    installation.clock.advance(timedelta(microseconds=654_321))
    services = replica()
    add_device(installation.api(), "dev-1")
    record = issue_with(services, "dev-1")
    certificate = x509.load_pem_x509_certificate(record.pem.encode())
    [row] = certificate_rows(installation)
    assert row["not_before"] == record.not_before == certificate.not_valid_before_utc
    assert row["not_after"] == record.not_after == certificate.not_valid_after_utc
    issued = audit_records(installation.api())[-1]
    assert issued["details"]["not_after"] == certificate.not_valid_after_utc.isoformat()


def test_failed_signing_leaves_reservation_never_reused(
    installation: Installation, replica: Callable[..., Services],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = replica(SequenceSerials(FIRST, FIRST, SECOND))
    add_device(installation.api(), "dev-1")

    def offline(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("HSM offline")

    monkeypatch.setattr(services.pki._issuance._leaf, "issue_der", offline)
    # the signer's failure fails this request alone (G12), logged, as an InternalError
    with pytest.raises(InternalError, match="the error was logged"):
        issue_with(services, "dev-1")
    [left] = certificate_rows(installation)
    assert (left["serial"], left["status"], left["pem"], left["device_id"]) == (
        serial_hex(FIRST), "reserved", None, "dev-1")
    # the device did not become active on a certificate it never got
    assert installation.api().get("/v1/devices/dev-1").json()["state"] == "pending"
    monkeypatch.undo()
    retried = issue_with(services, "dev-1")
    assert retried.serial == SECOND
    assert [(r["serial"], r["status"]) for r in certificate_rows(installation)] == [
        (serial_hex(FIRST), "reserved"), (serial_hex(SECOND), "issued")]
    assert installation.api().get("/v1/devices/dev-1").json()["state"] == "active"


def test_reserved_serial_is_unknown_to_the_report(installation: Installation,
                                                  replica: Callable[..., Services],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    services = replica(SequenceSerials(FIRST))
    add_device(installation.api(), "dev-1")

    def offline(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("HSM offline")

    monkeypatch.setattr(services.pki._issuance._leaf, "issue_der", offline)
    with pytest.raises(InternalError):
        issue_with(services, "dev-1")
    report = installation.api().get("/v1/inventory").json()
    assert report["by_credential_status"]["none"] == 1


# -- G2 --------------------------------------------------------------------------------


def crl_of(client: TestClient, issuer: str) -> x509.CertificateRevocationList:
    answer = client.get(f"/crl/{issuer}.crl")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(answer.content)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_crl_numbers_increase(installation: Installation) -> None:
    api, public = installation.api(), installation.public()
    issuer = installation.services.pki.cas.issuing_id
    add_device(api, "dev-1")
    numbers = [crl_number(crl_of(public, issuer))]
    # unchanged and fresh: served again, not rebuilt
    assert crl_number(crl_of(public, issuer)) == numbers[0]
    revoke(api, issue(api, "dev-1")["serial"])
    numbers.append(crl_number(crl_of(public, issuer)))
    installation.clock.advance(timedelta(hours=13))  # inside the refresh margin
    numbers.append(crl_number(crl_of(public, issuer)))
    assert numbers == sorted(set(numbers))
    assert numbers[0] >= 1


def test_crl_numbers_increase_across_restart(installation: Installation,
                                             replica: Callable[..., Services]) -> None:
    api = installation.api()
    issuer = installation.services.pki.cas.issuing_id
    add_device(api, "dev-1")
    before = crl_number(crl_of(installation.public(), issuer))
    installation.services.close()
    restarted = TestClient(create_public_app(replica()))
    revoke(api, issue(api, "dev-1")["serial"])
    after = crl_number(crl_of(restarted, issuer))
    assert after > before
    # and a second replica next to it never hands out a number already used
    other = TestClient(create_public_app(replica()))
    revoke(api, issue(api, "dev-1")["serial"])
    assert crl_number(crl_of(other, issuer)) > after
    restarted.close()
    other.close()


def test_crl_numbers_survive_lost_crl_rows(installation: Installation) -> None:
    """Numbers come from a counter, not from the newest stored CRL: losing stored CRLs
    (a partial restore, a clean-up job) never makes a number come round again."""
    api, public = installation.api(), installation.public()
    issuer = installation.services.pki.cas.issuing_id
    add_device(api, "dev-1")
    revoke(api, issue(api, "dev-1")["serial"])
    before = crl_number(crl_of(public, issuer))
    with installation.services.database.engine.begin() as conn:
        conn.execute(delete(crls))
    assert crl_number(crl_of(public, issuer)) > before


def test_crl_numbers_per_issuer(installation: Installation) -> None:
    public = installation.public()
    cas = installation.services.pki.cas
    issuing = crl_number(crl_of(public, cas.issuing_id))
    root = crl_of(public, cas.root_id)
    assert (issuing, crl_number(root)) == (1, 1)
    assert root.issuer == cas.root.certificate.subject


def test_crl_fail_unknown_issuer(installation: Installation) -> None:
    assert_problem(installation.public().get("/crl/nosuch.crl"), 404, "no CRL for 'nosuch'")


# -- G6 --------------------------------------------------------------------------------


def listed(installation: Installation) -> set[int]:
    crl = crl_of(installation.public(), installation.services.pki.cas.issuing_id)
    assert crl.is_signature_valid(installation.services.pki.cas.issuing.certificate
                                  .public_key())  # type: ignore[arg-type]
    return {entry.serial_number for entry in crl}


def test_expired_revoked_certificate_stays_for_buffer(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    add_device(api, "spare")
    doomed = issue(api, "dev-1")
    revoke(api, doomed["serial"])
    doomed_serial = int(doomed["serial"], 16)
    assert listed(installation) == {doomed_serial}
    not_after = x509.load_pem_x509_certificate(doomed["pem"].encode()).not_valid_after_utc
    buffer = timedelta(days=7)

    # one second before the buffer ends: still listed (a revocation forces a rebuild)
    installation.clock.set(not_after + buffer - timedelta(seconds=1))
    fresh = revoke(api, issue(api, "spare")["serial"])
    assert listed(installation) == {doomed_serial, int(fresh["serial"], 16)}

    # at the end of the buffer it drops off the next CRL
    installation.clock.advance(timedelta(seconds=1))
    later = revoke(api, issue(api, "spare")["serial"])
    assert listed(installation) == {int(fresh["serial"], 16), int(later["serial"], 16)}


def test_expired_unrevoked_certificate_never_listed(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    issue(api, "dev-1")
    installation.clock.advance(timedelta(days=2))
    assert listed(installation) == set()


def test_revocation_reason_on_crl(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    compromised = int(revoke(api, issue(api, "dev-1")["serial"], "keyCompromise")["serial"], 16)
    plain = int(revoke(api, issue(api, "dev-1")["serial"], "unspecified")["serial"], 16)
    crl = crl_of(installation.public(), installation.services.pki.cas.issuing_id)
    entry = crl.get_revoked_certificate_by_serial_number(compromised)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    unspecified = crl.get_revoked_certificate_by_serial_number(plain)
    assert unspecified is not None
    # RFC 5280 §5.3.1: unspecified is expressed by leaving the reason out
    assert len(unspecified.extensions) == 0
