from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from iotiam.errors import InvalidInput, PayloadTooLarge
from iotiam.pki.csr import MAX_CSR_BYTES, LeafIdentity, parse_csr, validate_csr

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def test_parse_csr_ok_pem_and_der(csr_for, ec_key) -> None:
    csr = csr_for(ec_key)
    assert parse_csr(csr.public_bytes(PEM)) == csr
    assert parse_csr(csr.public_bytes(DER)) == csr
    assert parse_csr(b"\n  " + csr.public_bytes(PEM)) == csr


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n",
    ],
    ids=["empty", "text", "der-garbage", "pem-garbage"],
)
def test_parse_csr_fail_garbage(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="not a PEM or DER PKCS#10 certificate request"):
        parse_csr(data)


def test_parse_csr_fail_certificate_not_csr(hierarchy) -> None:
    with pytest.raises(InvalidInput, match="not a PEM or DER PKCS#10"):
        parse_csr(hierarchy.root.certificate.public_bytes(PEM))


def test_parse_csr_fail_oversize(csr_for, ec_key) -> None:
    data = csr_for(ec_key).public_bytes(PEM) + b"\n" * MAX_CSR_BYTES
    with pytest.raises(PayloadTooLarge, match=f"at most {MAX_CSR_BYTES}"):
        parse_csr(data)
    assert issubclass(PayloadTooLarge, InvalidInput)


@pytest.mark.parametrize("key_fixture", ["ec_key", "rsa_key", "ed_key"])
def test_validate_csr_ok(csr_for, device_identity, key_fixture, request) -> None:
    key = request.getfixturevalue(key_fixture)
    sans = [
        x509.DNSName("DEV-0001.devices.iotiam.test"),  # RFC 5280 §7.2: case-insensitive
        x509.UniformResourceIdentifier("spiffe://iotiam.test/device/dev-0001"),
    ]
    csr = parse_csr(csr_for(key, sans=sans).public_bytes(DER))
    assert validate_csr(csr, device_identity) == key.public_key()


def test_validate_csr_ok_empty_subject(csr_for, ec_key, device_identity) -> None:
    validate_csr(csr_for(ec_key, cn=None), device_identity)


def test_validate_csr_ok_ca_false(csr_for, ec_key, device_identity) -> None:
    validate_csr(csr_for(ec_key, ca=False), device_identity)


def test_validate_csr_ok_ip_san(csr_for, ec_key) -> None:
    ip = ipaddress.ip_address("10.0.0.7")
    identity = LeafIdentity(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-1")]), ips=(ip,)
    )
    validate_csr(csr_for(ec_key, cn="gw-1", sans=[x509.IPAddress(ip)]), identity)


def test_validate_csr_fail_broken_signature(csr_for, ec_key, device_identity) -> None:
    der = bytearray(csr_for(ec_key).public_bytes(DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s value
    csr = parse_csr(bytes(der))
    with pytest.raises(
        InvalidInput, match=r"^CSR signature does not verify \(no proof of possession\)$"
    ):
        validate_csr(csr, device_identity)


def test_validate_csr_fail_swapped_key(csr_for, ec_key, device_identity) -> None:
    """A CSR carrying someone else's public key under a valid-looking signature."""
    other = ec.generate_private_key(ec.SECP256R1())
    genuine = csr_for(ec_key).public_bytes(DER)
    own_spki = ec_key.public_key().public_bytes(
        DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other_spki = other.public_key().public_bytes(
        DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = parse_csr(genuine.replace(own_spki, other_spki))
    with pytest.raises(InvalidInput, match="no proof of possession"):
        validate_csr(forged, device_identity)


def test_validate_csr_fail_ca_true(csr_for, ec_key, device_identity) -> None:
    with pytest.raises(InvalidInput, match=r"CA certificate \(basicConstraints cA=TRUE\)"):
        validate_csr(csr_for(ec_key, ca=True), device_identity)


def test_validate_csr_fail_foreign_cn(csr_for, ec_key, device_identity) -> None:
    with pytest.raises(
        InvalidInput, match=r"^CSR asks for name 'admin', this device is 'dev-0001'$"
    ):
        validate_csr(csr_for(ec_key, cn="admin"), device_identity)


def test_validate_csr_fail_cn_for_unnamed_device(csr_for, ec_key) -> None:
    identity = LeafIdentity(subject=x509.Name([]), dns_names=("a.iotiam.test",))
    with pytest.raises(InvalidInput, match="this device is unnamed"):
        validate_csr(csr_for(ec_key, cn="a.iotiam.test"), identity)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        (x509.DNSName("other.iotiam.test"), "DNS:'other.iotiam.test'"),
        (x509.UniformResourceIdentifier("spiffe://iotiam.test/device/dev-0002"), "URI:"),
        (x509.IPAddress(ipaddress.ip_address("192.0.2.1")), "IP:192.0.2.1"),
        (x509.RFC822Name("ops@iotiam.test"), "email:"),
    ],
    ids=["dns", "uri", "ip", "email"],
)
def test_validate_csr_fail_foreign_san(csr_for, ec_key, device_identity, name, shown) -> None:
    sans = [x509.DNSName("dev-0001.devices.iotiam.test"), name]
    with pytest.raises(InvalidInput, match="which this device does not have") as error:
        validate_csr(csr_for(ec_key, sans=sans), device_identity)
    assert shown in str(error.value)


def test_validate_csr_fail_rsa_1024(csr_for, device_identity) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidInput, match="RSA-1024 keys are too weak"):
        validate_csr(csr_for(weak), device_identity)


def test_validate_csr_fail_p521(csr_for, device_identity) -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(InvalidInput, match="ec-p521 keys are not accepted"):
        validate_csr(csr_for(key), device_identity)


def test_validate_csr_fail_control_characters_are_escaped(csr_for, ec_key, device_identity) -> None:
    with pytest.raises(InvalidInput) as error:
        validate_csr(csr_for(ec_key, cn="evil\nlog line"), device_identity)
    assert "\n" not in str(error.value)


def test_validate_csr_ok_ed25519_csr_without_hash(ed_key, device_identity) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(device_identity.subject)
        .sign(ed_key, None)
    )
    validate_csr(csr, device_identity)
    assert isinstance(csr.public_key(), ed25519.Ed25519PublicKey)
    assert csr.signature_hash_algorithm is None
