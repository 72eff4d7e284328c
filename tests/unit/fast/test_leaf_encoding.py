"""The direct leaf encoder gives exactly the bytes ``CertificateBuilder`` gives."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from iotiam.fast import leaf_encoding
from iotiam.fast.leaf_encoding import DirectLeafSigner
from iotiam.pki.authority import CaMaterial, PublicUrls, create_issuing_ca, create_root_ca
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import PrivateKey, PublicKey
from iotiam.pki.models import KeyAlgorithm
from iotiam.pki.profiles import BROKER_SERVER, DEVICE, GATEWAY
from iotiam.pki.signer import LocalKeySigner

NOW = datetime(2026, 1, 1, tzinfo=UTC)
URLS = PublicUrls("http://iotiam.test/ocsp", "http://iotiam.test/ca/issuing.der",
                  "http://iotiam.test/crl/issuing.crl")
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
def device_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)])


IDENTITIES = {
    "subject-only": LeafIdentity(subject=device_name("dev-0001")),
    "ou-and-cn": LeafIdentity(subject=x509.Name([
        x509.NameAttribute(x509.oid.NameOID.ORGANIZATIONAL_UNIT_NAME, "site-ä"),
        x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "dev-0002"),
    ])),
    "subject-and-sans": LeafIdentity(
        subject=device_name("gw-1"),
        dns_names=("gw-1.sites.iotiam.test",),
        uris=("https://iotiam.test/gw-1",),
        ips=(ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("2001:db8::7")),
    ),
    # RFC 5280 §4.2.1.6: the SAN turns critical
    "sans-only": LeafIdentity(subject=x509.Name([]), dns_names=("gw-2.sites.iotiam.test",)),
}
LEAF_KEYS = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


def issuing_ca(alg: KeyAlgorithm) -> CaMaterial:
    root = create_root_ca(alg=alg, common_name="Test Root", organization="iotiam tests",
                          now=NOW, serial=x509.random_serial_number())
    return create_issuing_ca(root=root, alg=alg, common_name="Test Issuing CA",
                             organization="iotiam tests", now=NOW,
                             serial=x509.random_serial_number())


@pytest.fixture(scope="session")
def now() -> datetime:
    """The fixed instant every test here runs at."""
    return NOW


@pytest.fixture(scope="module", params=list(KeyAlgorithm), ids=str)
def issuing(request: pytest.FixtureRequest) -> CaMaterial:
    return issuing_ca(request.param)


@pytest.fixture(scope="module")
def leaf_builder() -> DirectLeafSigner:
    ca = issuing_ca(KeyAlgorithm.EC_P256)
    return DirectLeafSigner(ca.signer, ca.certificate, URLS)


@pytest.mark.parametrize("leaf_key", list(LEAF_KEYS))
@pytest.mark.parametrize("identity", list(IDENTITIES))
@pytest.mark.parametrize("profile", [DEVICE, GATEWAY, BROKER_SERVER], ids=lambda p: p.name)
def test_issue_der_ok_same_tbs_as_builder(issuing: CaMaterial, leaf_key: str,
                                          identity: str, profile, now: datetime) -> None:
    issuer = DirectLeafSigner(issuing.signer, issuing.certificate, URLS)
    assert issuer.encodes_directly
    public_key = LEAF_KEYS[leaf_key]().public_key()
    serial = x509.random_serial_number()
    built = issuer.issue(public_key, IDENTITIES[identity], profile, serial, now)
    direct = x509.load_der_x509_certificate(
        issuer.issue_der(public_key, IDENTITIES[identity], profile, serial, now))

    assert direct.tbs_certificate_bytes == built.tbs_certificate_bytes
    assert direct.signature_algorithm_oid == built.signature_algorithm_oid
    direct.verify_directly_issued_by(issuing.certificate)


def test_issue_der_ok_given_spki_is_used(leaf_builder: DirectLeafSigner, now: datetime) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = public_key.public_bytes(*SPKI)
    identity = IDENTITIES["ou-and-cn"]
    with_spki = leaf_builder.issue_der(public_key, identity, DEVICE, 7, now, spki_der=spki)
    without = leaf_builder.issue_der(public_key, identity, DEVICE, 7, now)
    assert (x509.load_der_x509_certificate(with_spki).tbs_certificate_bytes
            == x509.load_der_x509_certificate(without).tbs_certificate_bytes)


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF, 0x100, 2**63, 2**64 - 1, 2**159 - 1])
def test_integer_ok_serials_as_builder(leaf_builder: DirectLeafSigner, now: datetime,
                                       serial: int) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    identity = IDENTITIES["subject-only"]
    built = leaf_builder.issue(public_key, identity, DEVICE, serial, now)
    direct = x509.load_der_x509_certificate(
        leaf_builder.issue_der(public_key, identity, DEVICE, serial, now))
    assert direct.serial_number == serial
    assert direct.tbs_certificate_bytes == built.tbs_certificate_bytes


@pytest.mark.parametrize(("not_before", "not_after"), [
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    # RFC 5280 §4.1.2.5: UTCTime up to 2049, GeneralizedTime from 2050 on
    (datetime(2049, 12, 31, 23, 0, tzinfo=UTC), datetime(2050, 1, 1, 1, 0, tzinfo=UTC)),
    (datetime(1950, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2050, 1, 1, tzinfo=UTC)),
], ids=["utc", "utc-then-generalized", "far-future", "boundary"])
def test_validity_ok_time_types_as_builder(not_before: datetime, not_after: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = device_name("t")
    cert = x509.CertificateBuilder(
        issuer_name=name, subject_name=name, public_key=key.public_key(), serial_number=1,
        not_valid_before=not_before, not_valid_after=not_after,
    ).sign(key, hashes.SHA256())
    _, _, _, _, validity, *_ = leaf_encoding.elements(cert.tbs_certificate_bytes)
    assert leaf_encoding.validity(not_before, not_after) == validity


@pytest.mark.parametrize("make_key", [
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: ec.generate_private_key(ec.SECP521R1()),
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
    ed25519.Ed25519PrivateKey.generate,
    ed448.Ed448PrivateKey.generate,
], ids=["p256", "p521", "rsa3072", "ed25519", "ed448"])
def test_key_identifier_ok_as_cryptography(make_key) -> None:
    public_key = make_key().public_key()
    expected = x509.SubjectKeyIdentifier.from_public_key(public_key).digest
    assert leaf_encoding.key_identifier(public_key.public_bytes(*SPKI)) == expected


def test_tlv_ok_long_lengths() -> None:
    for size in (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000):
        der = leaf_encoding.tlv(0x04, b"\x00" * size)
        [octets] = leaf_encoding.elements(leaf_encoding.tlv(0x30, der))
        assert octets == der


class _WrongSigner:
    """Signs certificates correctly but raw bytes with another key (a broken HSM)."""

    def __init__(self, key: PrivateKey) -> None:
        self._real = LocalKeySigner(key)
        self._other = LocalKeySigner(ec.generate_private_key(ec.SECP256R1()))

    def public_key(self) -> PublicKey:
        return self._real.public_key()

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return self._real.sign_certificate(builder)

    def sign_bytes(self, data: bytes) -> bytes:
        return self._other.sign_bytes(data)

    def sign_crl(self, builder):  # pragma: no cover - not used here
        return self._real.sign_crl(builder)

    def sign_ocsp(self, builder):  # pragma: no cover - not used here
        return self._real.sign_ocsp(builder)


def test_issue_der_ok_falls_back_to_builder_when_probe_fails(now: datetime) -> None:
    issuing = issuing_ca(KeyAlgorithm.EC_P256)
    issuer = DirectLeafSigner(_WrongSigner(issuing.key), issuing.certificate, URLS)
    assert not issuer.encodes_directly
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = issuer.issue_der(public_key, IDENTITIES["subject-only"], DEVICE, 99,
                           now + timedelta(minutes=1))
    x509.load_der_x509_certificate(der).verify_directly_issued_by(issuing.certificate)
