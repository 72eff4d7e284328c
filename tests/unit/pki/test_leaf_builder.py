from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from iotiam.errors import InvalidInput, SetupError
from iotiam.pki.csr import LeafIdentity, parse_csr, validate_csr
from iotiam.pki.issuing import pem_certificate
from iotiam.pki.leaf_builder import LeafBuilder, build_leaf_certificate
from iotiam.pki.models import CertificateProfile
from iotiam.pki.profiles import BROKER_SERVER, DEVICE, GATEWAY, PROFILES, get_profile


def _ext(cert: x509.Certificate, kind):
    return cert.extensions.get_extension_for_class(kind)


def test_get_profile_ok() -> None:
    assert get_profile("device") is DEVICE
    assert DEVICE.lifetime == timedelta(hours=24)
    assert (DEVICE.client_auth, DEVICE.server_auth) == (True, False)
    assert (GATEWAY.lifetime, GATEWAY.client_auth, GATEWAY.server_auth) == (
        timedelta(days=7),
        True,
        True,
    )
    assert (BROKER_SERVER.lifetime, BROKER_SERVER.server_auth) == (timedelta(days=90), True)
    assert set(PROFILES) == {"device", "gateway", "broker-server"}


def test_get_profile_fail_unknown() -> None:
    with pytest.raises(
        InvalidInput, match="unknown certificate profile 'toaster'; use one of: broker-server, "
    ):
        get_profile("toaster")


def test_issue_ok_device_profile(hierarchy, leaf_builder, device_identity, ec_key, now, urls):
    cert = leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 0x1234ABCD, now)
    issuing = hierarchy.issuing.certificate

    assert cert.serial_number == 0x1234ABCD
    assert cert.subject == device_identity.subject
    assert cert.issuer == issuing.subject
    assert cert.not_valid_before_utc == now
    assert cert.not_valid_after_utc == now + timedelta(hours=24)
    cert.verify_directly_issued_by(issuing)

    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and usage.value.key_agreement
    assert not usage.value.key_encipherment and not usage.value.key_cert_sign
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _ext(cert, x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(ec_key.public_key())
    )
    issuer_ski = _ext(issuing, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == issuer_ski
    san = _ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["dev-0001.devices.iotiam.test"]
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://iotiam.test/device/dev-0001"
    ]
    aia = {
        d.access_method: d.access_location.value
        for d in _ext(cert, x509.AuthorityInformationAccess).value
    }
    assert aia == {
        AuthorityInformationAccessOID.OCSP: urls.ocsp_url,
        AuthorityInformationAccessOID.CA_ISSUERS: urls.ca_issuers_url,
    }
    (point,) = _ext(cert, x509.CRLDistributionPoints).value
    assert [n.value for n in point.full_name] == [urls.crl_url]


def test_issue_ok_key_usage_per_key_type(leaf_builder, device_identity, rsa_key, ed_key, now):
    rsa_cert = leaf_builder.issue(rsa_key.public_key(), device_identity, DEVICE, 1, now)
    rsa_usage = _ext(rsa_cert, x509.KeyUsage).value
    assert rsa_usage.digital_signature and rsa_usage.key_encipherment
    assert not rsa_usage.key_agreement

    ed_cert = leaf_builder.issue(ed_key.public_key(), device_identity, DEVICE, 2, now)
    ed_usage = _ext(ed_cert, x509.KeyUsage).value
    assert ed_usage.digital_signature
    assert not ed_usage.key_encipherment and not ed_usage.key_agreement


def test_issue_ok_gateway_has_both_ekus(leaf_builder, device_identity, ec_key, now):
    cert = leaf_builder.issue(ec_key.public_key(), device_identity, GATEWAY, 3, now)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.SERVER_AUTH,
    ]
    assert cert.not_valid_after_utc == now + timedelta(days=7)


def test_issue_ok_empty_subject_makes_san_critical(leaf_builder, ec_key, now):
    identity = LeafIdentity(subject=x509.Name([]), ips=(ipaddress.ip_address("10.1.2.3"),))
    cert = leaf_builder.issue(ec_key.public_key(), identity, GATEWAY, 4, now)
    assert len(cert.subject) == 0
    san = _ext(cert, x509.SubjectAlternativeName)
    assert san.critical  # RFC 5280 §4.2.1.6
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]


def test_issue_ok_no_san_when_identity_has_no_names(leaf_builder, ec_key, now):
    identity = LeafIdentity(subject=x509.Name.from_rfc4514_string("CN=dev-0002"))
    cert = leaf_builder.issue(ec_key.public_key(), identity, DEVICE, 5, now)
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)


def test_issue_ok_capped_at_issuer_not_after(hierarchy, leaf_builder, device_identity, ec_key):
    issuer_end = hierarchy.issuing.certificate.not_valid_after_utc
    not_before = issuer_end - timedelta(hours=2)
    cert = leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 6, not_before)
    assert cert.not_valid_after_utc == issuer_end


def test_issue_fail_issuer_expired(hierarchy, leaf_builder, device_identity, ec_key):
    after_end = hierarchy.issuing.certificate.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(SetupError, match="expired"):
        leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 7, after_end)


def test_issue_fail_no_name_at_all(leaf_builder, ec_key, now):
    with pytest.raises(InvalidInput, match="needs a subject name or a subjectAltName"):
        leaf_builder.issue(ec_key.public_key(), LeafIdentity(x509.Name([])), DEVICE, 8, now)


@pytest.mark.parametrize("serial", [0, -1, 1 << 159])
def test_issue_fail_bad_serial(leaf_builder, device_identity, ec_key, now, serial):
    with pytest.raises(ValueError, match="RFC 5280"):
        leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, serial, now)


def test_issue_fail_naive_datetime(leaf_builder, device_identity, ec_key, now):
    with pytest.raises(ValueError, match="timezone-aware"):
        leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 9,
                           now.replace(tzinfo=None))


def test_leaf_issuer_fail_signer_does_not_match(hierarchy, urls):
    with pytest.raises(SetupError, match="does not match"):
        LeafBuilder(hierarchy.root.signer, hierarchy.issuing.certificate, urls)


def test_issue_ok_profile_without_eku(leaf_builder, device_identity, ec_key, now):
    bare = CertificateProfile("bare", timedelta(hours=1), client_auth=False, server_auth=False)
    cert = leaf_builder.issue(ec_key.public_key(), device_identity, bare, 10, now)
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.ExtendedKeyUsage)


def test_build_leaf_certificate_ok(hierarchy, device_identity, ec_key, now, urls):
    cert = build_leaf_certificate(
        signer=hierarchy.issuing.signer,
        issuer_cert=hierarchy.issuing.certificate,
        public_key=ec_key.public_key(),
        identity=device_identity,
        profile=DEVICE,
        serial=11,
        not_before=now,
        urls=urls,
    )
    assert cert.serial_number == 11
    cert.verify_directly_issued_by(hierarchy.issuing.certificate)


@pytest.mark.parametrize("key_fixture", ["ec_key", "rsa_key", "ed_key"])
def test_issue_ok_openssl_verifies_chain(
    hierarchy,
    leaf_builder,
    device_identity,
    csr_for,
    openssl_verify,
    write,
    now,
    key_fixture,
    request,
):
    key = request.getfixturevalue(key_fixture)
    csr = parse_csr(csr_for(key).public_bytes(serialization.Encoding.DER))
    public_key = validate_csr(csr, device_identity)
    serial = x509.random_serial_number()
    cert = leaf_builder.issue(public_key, device_identity, DEVICE, serial, now)
    leaf = write("leaf.pem", cert)
    result = openssl_verify(hierarchy, leaf, "-purpose", "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{leaf}: OK"


def test_issue_ok_device_leaf_refused_as_tls_server(
    hierarchy, leaf_builder, device_identity, ec_key, openssl_verify, write, now
):
    """The device profile's EKU is clientAuth only: openssl refuses it as a TLS server."""
    cert = leaf_builder.issue(ec_key.public_key(), device_identity, DEVICE, 12, now)
    result = openssl_verify(hierarchy, write("leaf.pem", cert), "-purpose", "sslserver")
    assert result.returncode != 0
    assert "error 26 at 0 depth lookup: unsuitable certificate purpose" in result.stderr


@pytest.mark.parametrize("profile", [DEVICE, GATEWAY, BROKER_SERVER], ids=lambda p: p.name)
@pytest.mark.parametrize("key_fixture", ["ec_key", "rsa_key", "ed_key"])
def test_issue_ok_pkilint_clean(leaf_builder, lint_cert, now, profile, key_fixture, request):
    # No URI SAN here: pkilint checks URIs with validators.url, which only knows
    # http(s)/ftp-like schemes and flags spiffe:// or urn: names that RFC 5280 allows.
    identity = LeafIdentity(
        subject=x509.Name.from_rfc4514_string("CN=dev-0001"),
        dns_names=("dev-0001.devices.iotiam.test",),
        ips=(ipaddress.ip_address("2001:db8::7"),),
    )
    key = request.getfixturevalue(key_fixture)
    serial = x509.random_serial_number()
    cert = leaf_builder.issue(key.public_key(), identity, profile, serial, now)
    assert lint_cert(cert) == ""


def test_issue_ok_pkilint_clean_empty_subject(leaf_builder, lint_cert, now):
    identity = LeafIdentity(subject=x509.Name([]), dns_names=("gw-7.sites.iotiam.test",))
    key = ec.generate_private_key(ec.SECP384R1())
    cert = leaf_builder.issue(key.public_key(), identity, GATEWAY, x509.random_serial_number(), now)
    assert lint_cert(cert) == ""


@pytest.mark.parametrize("key_fixture", ["ec_key", "rsa_key", "ed_key"])
@pytest.mark.parametrize("cn", ["d", "dev-0001", "x" * 64], ids=["cn1", "cn8", "cn64"])
def test_pem_certificate_ok_same_bytes_as_cryptography(leaf_builder, now, key_fixture, cn,
                                                       request):
    # the hot path writes PEM itself; relying parties get exactly what pyca would write
    key = request.getfixturevalue(key_fixture)
    identity = LeafIdentity(subject=x509.Name.from_rfc4514_string(f"CN={cn}"))
    cert = leaf_builder.issue(key.public_key(), identity, DEVICE, x509.random_serial_number(),
                             now)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert pem_certificate(der) == cert.public_bytes(serialization.Encoding.PEM).decode()
