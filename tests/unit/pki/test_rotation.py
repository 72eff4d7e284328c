"""Issuing-CA rotation and compromise on the in-memory installation (docs/ca-rotation.md)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from iotiam.audit.models import AuditTag
from iotiam.errors import Conflict, Forbidden, InvalidInput, NotFound
from iotiam.inventory.models import DeviceDraft
from iotiam.kernel import SYSTEM, Principal, Role
from iotiam.pki.ca_set import CaState
from iotiam.pki.models import CertificateStatus, RevocationReason
from iotiam.testing.builders import make_csr, make_key
from iotiam.testing.fakes.services import MemoryServices, memory_services

OPERATOR = Principal(name="op", role=Role.OPERATOR, org_unit_id="root", org_path="/root/")
TENANT_ADMIN = Principal(name="t", role=Role.ADMIN, org_unit_id="t", org_path="/root/t/")


@pytest.fixture
def services() -> MemoryServices:
    services = memory_services()
    for device_id in ("d1", "d2"):
        services.inventory.add_device(SYSTEM, DeviceDraft(id=device_id, type_name="sensor"))
    return services


def _issue(services: MemoryServices, device_id: str) -> x509.Certificate:
    record = services.pki.issue_certificate(SYSTEM, device_id=device_id,
                                            csr_data=make_csr(device_id, make_key()))
    assert record.pem is not None
    return x509.load_pem_x509_certificate(record.pem.encode())


def _ocsp_status(services: MemoryServices, cert: x509.Certificate,
                 issuer: x509.Certificate) -> ocsp.OCSPCertStatus:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(services.pki.ocsp_response(
        request.public_bytes(serialization.Encoding.DER)))
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return answer.certificate_status


def _tags(services: MemoryServices) -> list[str]:
    with services.database.reading() as uow:
        return [str(r.tag) for r in uow.audit.iter_records()]


def test_ok_rotation_issues_under_the_new_ca_and_keeps_the_old_trusted(
        services: MemoryServices) -> None:
    old = services.pki.cas.issuing.certificate
    old_id = services.pki.issuing_id
    before = _issue(services, "d1")
    report = services.ca_rotation.rotate(SYSTEM)
    assert report.previous == old_id and report.new == services.pki.issuing_id != old_id
    assert report.moving == 1
    new = services.pki.cas.issuing.certificate
    assert new.issuer == old.issuer and new.subject != old.subject
    new.verify_directly_issued_by(services.pki.cas.root.certificate)
    after = _issue(services, "d2")
    assert after.issuer == new.subject
    # both generations accepted during the overlap: chains, OCSP, CRLs
    chain = services.pki.cas.chain_pem()
    assert chain.count("BEGIN CERTIFICATE") == 3
    assert services.pki.cas.trusted_issuer_of(before) == old_id
    assert services.pki.cas.trusted_issuer_of(after) == services.pki.issuing_id
    assert _ocsp_status(services, before, old) is ocsp.OCSPCertStatus.GOOD
    assert _ocsp_status(services, after, new) is ocsp.OCSPCertStatus.GOOD
    assert old_id in services.pki.cas.issuer_ids
    services.pki.refresh_crls()
    crl = x509.load_der_x509_crl(services.pki.current_crl(old_id).der)
    assert crl.is_signature_valid(old.public_key())  # type: ignore[arg-type]
    states = {c.id: (c.state, c.live_certificates)
              for c in services.ca_rotation.list_cas(OPERATOR) if c.role == "issuing"}
    assert states == {old_id: ("retiring", 1), services.pki.issuing_id: ("active", 1)}
    assert str(AuditTag.CA_ROTATED) in _tags(services)
    # the new CA's certificate is on record under the root (G1, G5)
    with services.database.reading() as uow:
        record = uow.certificates.get(services.pki.cas.root_id, new.serial_number)
    assert record is not None and record.status is CertificateStatus.ISSUED


def test_ok_rotation_dry_run_changes_nothing(services: MemoryServices) -> None:
    old_id = services.pki.issuing_id
    report = services.ca_rotation.rotate(OPERATOR, dry_run=True)
    assert report.dry_run and report.new is None and "Issuing CA 2" in report.subject
    assert services.pki.issuing_id == old_id


def test_fail_rotation_refused_to_operator_and_tenant_admin(services: MemoryServices) -> None:
    with pytest.raises(Forbidden):
        services.ca_rotation.rotate(OPERATOR)
    with pytest.raises(Forbidden):
        services.ca_rotation.rotate(TENANT_ADMIN)
    assert _tags(services).count(str(AuditTag.CA_CHANGE_REFUSED)) == 2


def test_ok_compromise_revokes_the_ca_and_everything_it_signed(
        services: MemoryServices) -> None:
    old = services.pki.cas.issuing.certificate
    old_id = services.pki.issuing_id
    first, second = _issue(services, "d1"), _issue(services, "d2")
    dry = services.ca_rotation.revoke(OPERATOR, old_id, "keyCompromise", dry_run=True)
    assert (dry.certificates, dry.devices, dry.successor) == (2, 2, None)
    assert services.pki.issuing_id == old_id
    report = services.ca_rotation.revoke(SYSTEM, old_id, "keyCompromise")
    assert report.certificates == 2 and report.successor == services.pki.issuing_id
    assert services.pki.cas.state_of(old_id) is CaState.REVOKED
    assert services.pki.cas.trusted_issuer_of(first) is None
    assert "BEGIN CERTIFICATE" in services.pki.cas.chain_pem()
    assert services.pki.cas.chain_pem().count("BEGIN CERTIFICATE") == 2  # new + root
    for cert in (first, second):
        assert _ocsp_status(services, cert, old) is ocsp.OCSPCertStatus.REVOKED
    # the root's CRL lists the issuing CA
    root_id = services.pki.cas.root_id
    root_crl = x509.load_der_x509_crl(services.pki.current_crl(root_id).der)
    entry = root_crl.get_revoked_certificate_by_serial_number(old.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason \
        is RevocationReason.KEY_COMPROMISE.flag
    # the old CA's own CRL names every certificate it signed
    old_crl = x509.load_der_x509_crl(services.pki.current_crl(old_id).der)
    assert {r.serial_number for r in old_crl} == {first.serial_number, second.serial_number}
    tags = _tags(services)
    assert str(AuditTag.CA_REVOKED) in tags and str(AuditTag.CA_CERTIFICATES_REVOKED) in tags
    # new issuance goes on under the successor
    assert _issue(services, "d1").issuer == services.pki.cas.issuing.certificate.subject


def test_ok_compromise_of_a_retiring_ca_keeps_the_active_one(
        services: MemoryServices) -> None:
    old_id = services.pki.issuing_id
    _issue(services, "d1")
    services.ca_rotation.rotate(SYSTEM)
    active = services.pki.issuing_id
    report = services.ca_rotation.revoke(SYSTEM, old_id, "cACompromise")
    assert report.successor is None and services.pki.issuing_id == active


def test_ok_drill_rolls_back(services: MemoryServices) -> None:
    old_id = services.pki.issuing_id
    cert = _issue(services, "d1")
    report = services.ca_rotation.drill(SYSTEM, old_id)
    assert report.drill and report.certificates == 1 and report.left_live == 0
    assert services.pki.cas.state_of(old_id) is CaState.ACTIVE
    with services.database.reading() as uow:
        record = uow.certificates.get(old_id, cert.serial_number)
        assert uow.certificates.get(services.pki.cas.root_id,
                                    services.pki.cas.issuing.certificate.serial_number) is None
    assert record is not None and record.status is CertificateStatus.ISSUED
    assert str(AuditTag.CA_COMPROMISE_DRILLED) in _tags(services)


@pytest.mark.parametrize(("ca", "reason", "error"), [
    ("root", "keyCompromise", InvalidInput),
    ("issuing-000000000000", "keyCompromise", NotFound),
    ("issuing", "no-such-reason", InvalidInput),
], ids=["fail/root", "fail/unknown-ca", "fail/bad-reason"])
def test_fail_revoke_bad_input(services: MemoryServices, ca: str, reason: str,
                               error: type[Exception]) -> None:
    ca_id = {"root": services.pki.cas.root_id,
             "issuing": services.pki.issuing_id}.get(ca, ca)
    with pytest.raises(error):
        services.ca_rotation.revoke(SYSTEM, ca_id, reason)
    assert services.pki.cas.state_of(services.pki.issuing_id) is CaState.ACTIVE


def test_fail_revoke_twice(services: MemoryServices) -> None:
    old_id = services.pki.issuing_id
    services.ca_rotation.revoke(SYSTEM, old_id)
    with pytest.raises(Conflict):
        services.ca_rotation.revoke(SYSTEM, old_id)
