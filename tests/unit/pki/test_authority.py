from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotiam.errors import InvalidInput
from iotiam.pki.authority import (
    BACKDATE,
    create_issuing_ca,
    create_ocsp_responder,
    create_root_ca,
    create_server_tls_certificate,
)
from iotiam.pki.models import KeyAlgorithm


def _ext(cert: x509.Certificate, kind):
    return cert.extensions.get_extension_for_class(kind)


def test_create_root_ca_ok(hierarchy, now):
    root = hierarchy.root.certificate
    assert root.subject == root.issuer
    assert root.subject.rfc4514_string() == "CN=iotiam Test Root CA,O=iotiam tests"
    root.verify_directly_issued_by(root)
    assert root.not_valid_before_utc == now - BACKDATE
    assert root.not_valid_after_utc == now + timedelta(days=365 * 20)
    basic = _ext(root, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length is None
    usage = _ext(root, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = _ext(root, x509.SubjectKeyIdentifier).value
    assert _ext(root, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest


def test_create_root_ca_ok_serial_is_the_one_passed_in(now):
    root = create_root_ca(
        alg=KeyAlgorithm.ED25519, common_name="r", organization="", now=now, serial=0xC0FFEE
    )
    assert root.certificate.serial_number == 0xC0FFEE
    assert root.certificate.subject.rfc4514_string() == "CN=r"


def test_create_issuing_ca_ok(hierarchy, now):
    issuing = hierarchy.issuing.certificate
    root = hierarchy.root.certificate
    issuing.verify_directly_issued_by(root)
    assert issuing.issuer == root.subject
    assert issuing.not_valid_after_utc == now + timedelta(days=365 * 5)
    basic = _ext(issuing, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = _ext(issuing, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    root_ski = _ext(root, x509.SubjectKeyIdentifier).value.digest
    assert _ext(issuing, x509.AuthorityKeyIdentifier).value.key_identifier == root_ski
    (point,) = _ext(issuing, x509.CRLDistributionPoints).value
    assert [n.value for n in point.full_name] == ["http://iotiam.test/crl/root.crl"]


def test_create_issuing_ca_ok_never_outlives_root(hierarchy, now):
    long_lived = create_issuing_ca(
        root=hierarchy.root,
        alg=KeyAlgorithm.EC_P256,
        common_name="too long",
        organization="iotiam tests",
        now=now,
        serial=x509.random_serial_number(),
        lifetime=timedelta(days=365 * 50),
    )
    assert (
        long_lived.certificate.not_valid_after_utc == hierarchy.root.certificate.not_valid_after_utc
    )
    with pytest.raises(x509.ExtensionNotFound):
        _ext(long_lived.certificate, x509.AuthorityInformationAccess)


def test_create_ocsp_responder_ok(hierarchy, now):
    responder = hierarchy.responder.certificate
    responder.verify_directly_issued_by(hierarchy.issuing.certificate)
    assert responder.subject.rfc4514_string() == "CN=iotiam Test OCSP Responder"
    assert responder.not_valid_after_utc == now + timedelta(days=365)
    basic = _ext(responder, x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = _ext(responder, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert list(_ext(responder, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert isinstance(_ext(responder, x509.OCSPNoCheck).value, x509.OCSPNoCheck)


def test_create_ocsp_responder_ok_never_outlives_issuer(hierarchy):
    late = hierarchy.issuing.certificate.not_valid_after_utc - timedelta(days=10)
    responder = create_ocsp_responder(
        issuer=hierarchy.issuing,
        alg=KeyAlgorithm.EC_P256,
        common_name="late responder",
        now=late,
        serial=x509.random_serial_number(),
    )
    assert (
        responder.certificate.not_valid_after_utc
        == hierarchy.issuing.certificate.not_valid_after_utc
    )


def test_create_server_tls_certificate_ok(hierarchy, now):
    server = hierarchy.server.certificate
    server.verify_directly_issued_by(hierarchy.issuing.certificate)
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "broker.iotiam.test"
    )
    san = _ext(server, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["broker.iotiam.test"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(_ext(server, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.not_valid_before_utc == now - BACKDATE
    assert server.not_valid_after_utc == now + timedelta(days=365)
    assert _ext(server, x509.BasicConstraints).value.ca is False


def test_create_server_tls_certificate_ok_ip_only(hierarchy, now):
    server = create_server_tls_certificate(
        issuer=hierarchy.issuing,
        alg=KeyAlgorithm.EC_P256,
        names=["10.0.0.1"],
        now=now,
        serial=x509.random_serial_number(),
        urls=None,
    ).certificate
    assert len(server.subject) == 0
    assert _ext(server, x509.SubjectAlternativeName).critical  # RFC 5280 §4.2.1.6
    with pytest.raises(x509.ExtensionNotFound):
        _ext(server, x509.AuthorityInformationAccess)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "at least one"),
        (["bad name.test"], "neither an IP address nor an ASCII DNS name"),
        (["bücher.test"], "neither an IP address"),
        (["a..test"], "neither an IP address"),
        (["-a.test"], "neither an IP address"),
        (["a.*.test"], "neither an IP address"),
    ],
    ids=["empty", "space", "non-ascii", "empty-label", "leading-hyphen", "inner-wildcard"],
)
def test_create_server_tls_certificate_fail_bad_names(hierarchy, now, names, message):
    with pytest.raises(InvalidInput, match=message):
        create_server_tls_certificate(
            issuer=hierarchy.issuing,
            alg=KeyAlgorithm.EC_P256,
            names=names,
            now=now,
            serial=1,
            urls=None,
        )


@pytest.mark.parametrize(
    ("common_name", "organization"), [("", "o"), (" ", "o"), ("x" * 65, "o"), ("ok", "o" * 65)]
)
def test_create_root_ca_fail_bad_names(now, common_name, organization):
    with pytest.raises(InvalidInput, match="must be 1 to 64 characters"):
        create_root_ca(
            alg=KeyAlgorithm.ED25519,
            common_name=common_name,
            organization=organization,
            now=now,
            serial=1,
        )


def test_ca_material_repr_hides_key(hierarchy):
    assert "key=" not in repr(hierarchy.root)


@pytest.mark.parametrize("alg", list(KeyAlgorithm), ids=lambda a: a.value)
def test_hierarchy_ok_openssl_and_pkilint(build_chain, openssl_verify, lint_cert, alg):
    """Every algorithm gives a chain openssl accepts and certificates pkilint passes."""
    h = build_chain(alg)
    server_pem = h.directory / "server.pem"
    server_pem.write_bytes(h.server.certificate.public_bytes(serialization.Encoding.PEM))
    result = openssl_verify(h, server_pem, "-purpose", "sslserver", "-verify_ip", "127.0.0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    responder_pem = h.directory / "responder.pem"
    responder_pem.write_bytes(h.responder.certificate.public_bytes(serialization.Encoding.PEM))
    result = openssl_verify(h, responder_pem, "-purpose", "ocsphelper")
    assert result.returncode == 0, result.stdout + result.stderr
    for material in (h.root, h.issuing, h.responder, h.server):
        assert lint_cert(material.certificate) == ""


def test_create_server_tls_certificate_ok_dedupes_names(hierarchy, now):
    long_name = "a" * 60 + ".iotiam.test"  # 72 characters: a fine DNS name, too long for a CN
    server = create_server_tls_certificate(
        issuer=hierarchy.issuing,
        alg=KeyAlgorithm.EC_P256,
        names=[long_name, "MQTT.iotiam.test.", "mqtt.iotiam.test", "10.0.0.1", " 10.0.0.1 "],
        now=now,
        serial=x509.random_serial_number(),
        urls=None,
    ).certificate
    san = _ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [long_name, "mqtt.iotiam.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    assert server.subject.rfc4514_string() == "CN=mqtt.iotiam.test"
