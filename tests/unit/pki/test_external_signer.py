"""ExternalKeySigner: cryptography's builders signed through ``sign_bytes`` alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from iotiam.fast.leaf_encoding import DirectLeafSigner
from iotiam.pki.crl import build_crl
from iotiam.pki.external_signer import ExternalKeySigner
from iotiam.pki.keys import PublicKey
from iotiam.pki.models import Revocation, RevocationReason
from iotiam.pki.ocsp import GOOD, OcspResponder
from iotiam.pki.profiles import DEVICE
from iotiam.pki.signer import Signer

from .conftest import URLS

DER = serialization.Encoding.DER


class OutsideKey(ExternalKeySigner):
    """An "external" key that is in fact here, to compare with the built-in signer."""

    def __init__(self, key: ec.EllipticCurvePrivateKey,
                 signs_with: ec.EllipticCurvePrivateKey | None = None) -> None:
        super().__init__()
        self._key = key
        self._signs_with = signs_with or key
        self.signed: list[bytes] = []

    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign_bytes(self, data: bytes) -> bytes:
        self.signed.append(data)
        return self._signs_with.sign(data, ec.ECDSA(hashes.SHA256()))


@dataclass(frozen=True)
class OutsideCa:
    certificate: x509.Certificate
    signer: Signer


@pytest.fixture
def issuing(hierarchy):
    return OutsideKey(hierarchy.issuing.key)


def test_sign_certificate_ok_same_tbs_as_builtin(hierarchy, issuing, leaf_builder,
                                                  device_identity, ec_key, now):
    builtin = leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 7, now)
    outside = DirectLeafSigner(issuing, hierarchy.issuing.certificate, URLS)
    cert = outside.issue(ec_key.public_key(), device_identity, DEVICE, 7, now)
    assert cert.tbs_certificate_bytes == builtin.tbs_certificate_bytes
    assert cert.signature != builtin.signature
    cert.verify_directly_issued_by(hierarchy.issuing.certificate)
    assert issuing.signed[-1] == cert.tbs_certificate_bytes
    # the start-up probe accepts the outside signer: the hot path joins DER directly
    assert outside.encodes_directly
    der = outside.issue_der(ec_key.public_key(), device_identity, DEVICE, 8, now)
    x509.load_der_x509_certificate(der).verify_directly_issued_by(hierarchy.issuing.certificate)


def test_sign_certificate_fail_module_signing_wrongly_is_noticed(hierarchy, leaf_builder,
                                                         device_identity, ec_key, now):
    # a module that answers with another key than the one it claims
    wrong = OutsideKey(hierarchy.issuing.key, signs_with=ec.generate_private_key(ec.SECP256R1()))
    outside = DirectLeafSigner(wrong, hierarchy.issuing.certificate, URLS)
    assert not outside.encodes_directly  # the probe noticed
    cert = outside.issue(ec_key.public_key(), device_identity, DEVICE, 7, now)
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(hierarchy.issuing.certificate)


def test_sign_crl_ok(hierarchy, issuing, now):
    revoked = [Revocation(serial=9, revoked_at=now, reason=RevocationReason.KEY_COMPROMISE)]
    crl = build_crl(signer=issuing, issuer_cert=hierarchy.issuing.certificate,
                    revocations=revoked, crl_number=3, this_update=now,
                    next_update=now + timedelta(hours=1))
    assert crl.get_revoked_certificate_by_serial_number(9) is not None
    assert crl.is_signature_valid(hierarchy.issuing.certificate.public_key())
    assert issuing.signed[-1] == crl.tbs_certlist_bytes


@pytest.mark.parametrize("encoding", [ocsp.OCSPResponderEncoding.HASH,
                                      ocsp.OCSPResponderEncoding.NAME])
def test_sign_ocsp_ok_names_the_real_responder(hierarchy, encoding, now):
    responder_cert = hierarchy.responder.certificate
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(b"\x01" * 20, b"\x02" * 20, 5, hashes.SHA1(),
                                     ocsp.OCSPCertStatus.GOOD, now, now, None, None)
               .responder_id(encoding, responder_cert)
               .certificates([responder_cert]))
    response = OutsideKey(hierarchy.responder.key).sign_ocsp(builder)
    responder_cert.public_key().verify(response.signature, response.tbs_response_bytes,
                                       ec.ECDSA(hashes.SHA256()))
    if encoding is ocsp.OCSPResponderEncoding.HASH:
        assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
            responder_cert.public_key()).digest
    else:
        assert response.responder_name == responder_cert.subject
    assert response.certificates == [responder_cert]


def test_ocsp_responder_ok_with_outside_key(hierarchy, leaf_builder, device_identity,
                                            ec_key, openssl, tmp_path, now):
    leaf = leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 11, now)
    responder = OcspResponder.from_material(
        hierarchy.issuing.certificate,
        OutsideCa(hierarchy.responder.certificate, OutsideKey(hierarchy.responder.key)))
    request = ocsp.OCSPRequestBuilder().add_certificate(
        leaf, hierarchy.issuing.certificate, hashes.SHA1()).build().public_bytes(DER)
    der = responder.respond(request, lambda serial: GOOD, now)
    response = ocsp.load_der_ocsp_response(der)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    hierarchy.responder.certificate.public_key().verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))


def test_sign_csr_ok_names_and_is_signed_by_the_outside_key():
    key = ec.generate_private_key(ec.SECP256R1())
    outside = OutsideKey(key)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "dev-1")]))
    csr = outside.sign_csr(builder)
    assert csr.public_key() == key.public_key()  # the stand-in's key is gone
    assert csr.is_signature_valid
    assert csr.subject == builder.sign(key, hashes.SHA256()).subject
    assert outside.signed == [csr.tbs_certrequest_bytes]


def test_sign_csr_fail_other_key_signature_invalid():
    outside = OutsideKey(ec.generate_private_key(ec.SECP256R1()),
                         signs_with=ec.generate_private_key(ec.SECP256R1()))
    csr = outside.sign_csr(x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "dev-1")])))
    assert not csr.is_signature_valid
