from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.errors import InvalidInput
from iotiam.pki.crl import build_crl, verify_crl
from iotiam.pki.models import KeyAlgorithm, Revocation, RevocationReason
from iotiam.pki.profiles import DEVICE


def _crl(material, revocations, now, *, number=7, issuer_cert=None, next_update=None):
    return build_crl(
        signer=material.signer,
        issuer_cert=issuer_cert or material.certificate,
        revocations=revocations,
        crl_number=number,
        this_update=now,
        next_update=next_update or now + timedelta(days=1),
    )


def _revocation(serial, now, reason=RevocationReason.KEY_COMPROMISE):
    return Revocation(
        serial=serial,
        revoked_at=now - timedelta(minutes=5),
        reason=reason,
        not_after=now + timedelta(hours=20),
    )


def test_build_crl_ok(hierarchy, now):
    revocations = [
        _revocation(0x1001, now, RevocationReason.KEY_COMPROMISE),
        _revocation(0x1002, now, RevocationReason.UNSPECIFIED),
        _revocation(0x1003, now, RevocationReason.AA_COMPROMISE),
    ]
    crl = _crl(hierarchy.issuing, revocations, now)
    issuing = hierarchy.issuing.certificate

    assert crl.is_signature_valid(issuing.public_key())
    assert crl.issuer == issuing.subject
    assert crl.last_update_utc == now
    assert crl.next_update_utc == now + timedelta(days=1)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert len(crl) == 3

    compromised = crl.get_revoked_certificate_by_serial_number(0x1001)
    assert compromised is not None
    assert compromised.revocation_date_utc == now - timedelta(minutes=5)
    reason = compromised.extensions.get_extension_for_class(x509.CRLReason)
    assert reason.value.reason is x509.ReasonFlags.key_compromise
    assert not reason.critical

    # RFC 5280 §5.3.1: no reasonCode rather than "unspecified".
    unspecified = crl.get_revoked_certificate_by_serial_number(0x1002)
    assert unspecified is not None
    assert len(unspecified.extensions) == 0

    aa = crl.get_revoked_certificate_by_serial_number(0x1003)
    assert aa is not None
    assert aa.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.aa_compromise
    )


def test_build_crl_ok_empty(hierarchy, now):
    crl = _crl(hierarchy.issuing, [], now)
    assert len(crl) == 0
    assert crl.is_signature_valid(hierarchy.issuing.certificate.public_key())


@pytest.mark.parametrize(
    ("number", "next_delta", "message"),
    [(-1, timedelta(days=1), "non-negative"), (1, timedelta(0), "later than thisUpdate")],
)
def test_build_crl_fail_bad_arguments(hierarchy, now, number, next_delta, message):
    with pytest.raises(ValueError, match=message):
        _crl(hierarchy.issuing, [], now, number=number, next_update=now + next_delta)


def test_build_crl_ok_openssl_reports_revoked_cert_as_error_23(
    hierarchy, leaf_builder, device_identity, ec_key, openssl_verify, write, now
):
    revoked = leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 0xDEAD01, now)
    healthy = leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 0xDEAD02, now)
    crl = _crl(hierarchy.issuing, [_revocation(revoked.serial_number, now)], now)
    crl_pem = write("issuing.crl.pem", crl)

    result = openssl_verify(
        hierarchy, write("revoked.pem", revoked), "-crl_check", "-CRLfile", crl_pem
    )
    assert result.returncode != 0
    assert "error 23 at 0 depth lookup: certificate revoked" in result.stderr

    result = openssl_verify(
        hierarchy, write("healthy.pem", healthy), "-crl_check", "-CRLfile", crl_pem
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_crl_ok_pkilint_clean(hierarchy, now, write, pkilint):
    revocations = [
        _revocation(0x2000 + i, now, reason) for i, reason in enumerate(RevocationReason)
    ]
    der = _crl(hierarchy.issuing, revocations, now).public_bytes(serialization.Encoding.DER)
    code, findings = pkilint("lint_crl", write("issuing.crl", der))
    assert (code, findings) == (0, "")


def test_build_crl_ok_large_list_keeps_every_entry(hierarchy, now):
    revocations = [_revocation(10_000 + i, now) for i in range(5_000)]
    crl = _crl(hierarchy.issuing, revocations, now)
    assert len(crl) == 5_000
    assert {entry.serial_number for entry in crl} == {r.serial for r in revocations}


def test_verify_crl_ok(hierarchy, now):
    crl = _crl(hierarchy.issuing, [_revocation(5, now)], now)
    verify_crl(crl, hierarchy.issuing.certificate, now + timedelta(hours=23))


def test_verify_crl_fail_bad_signature(hierarchy, now):
    # Claims to be the issuing CA's CRL, but the root key signed it.
    forged = _crl(hierarchy.root, [], now, issuer_cert=hierarchy.issuing.certificate)
    with pytest.raises(InvalidInput, match="signature does not verify"):
        verify_crl(forged, hierarchy.issuing.certificate, now)


def test_verify_crl_fail_tampered(hierarchy, now):
    der = bytearray(
        _crl(hierarchy.issuing, [_revocation(0x0ABCDE, now)], now).public_bytes(
            serialization.Encoding.DER
        )
    )
    position = der.find(bytes.fromhex("0abcde"))
    der[position + 2] ^= 0x01  # drop the revoked serial 0x0abcde for 0x0abcdf
    tampered = x509.load_der_x509_crl(bytes(der))
    with pytest.raises(InvalidInput, match="signature does not verify"):
        verify_crl(tampered, hierarchy.issuing.certificate, now)


def test_verify_crl_fail_other_issuer(hierarchy, now):
    root_crl = _crl(hierarchy.root, [], now)
    with pytest.raises(InvalidInput, match="CRL issuer 'CN=iotiam Test Root CA,O=iotiam tests'"):
        verify_crl(root_crl, hierarchy.issuing.certificate, now)


def test_verify_crl_fail_expired(hierarchy, now):
    crl = _crl(hierarchy.issuing, [], now)
    with pytest.raises(InvalidInput, match="nextUpdate has passed"):
        verify_crl(crl, hierarchy.issuing.certificate, now + timedelta(days=1))


def test_verify_crl_fail_not_yet_valid(hierarchy, now):
    crl = _crl(hierarchy.issuing, [], now)
    with pytest.raises(InvalidInput, match="in the future"):
        verify_crl(crl, hierarchy.issuing.certificate, now - timedelta(seconds=1))


@pytest.mark.parametrize("alg", list(KeyAlgorithm), ids=lambda a: a.value)
def test_build_crl_ok_every_key_algorithm(build_chain, write, pkilint, now, alg):
    chain = build_chain(alg)
    crl = _crl(chain.issuing, [_revocation(0x77, now)], now)
    verify_crl(crl, chain.issuing.certificate, now)
    der = crl.public_bytes(serialization.Encoding.DER)
    assert pkilint("lint_crl", write("issuing.crl", der)) == (0, "")
