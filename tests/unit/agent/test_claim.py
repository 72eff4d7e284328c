"""The claim enrollment's checks of what came back: this device's name, key, validity, CA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotiam.agent import AgentError
from iotiam.agent.claim import Enrolled, csr_der, issuing_first, new_key

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = new_key()
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key: ec.EllipticCurvePrivateKey, issuer: str, cn: str,
          key: ec.EllipticCurvePrivateKey, hours: float = 24) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(hours=1))
            .not_valid_after(NOW + timedelta(hours=hours))
            .sign(ca_key, hashes.SHA256()))


@pytest.fixture
def cas() -> dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]]:
    return {"issuing": _ca("Issuing"), "root": _ca("Root"), "other": _ca("Other")}


def test_ok_own_certificate_passes_whatever_the_chain_order(cas: dict) -> None:  # type: ignore[type-arg]
    key = new_key()
    cert = _leaf(cas["issuing"][0], "Issuing", "dev-1", key)
    # cacerts is a PKCS#7 SET: the issuing CA need not come first
    Enrolled(key, cert, [cas["root"][1], cas["issuing"][1]]).check("dev-1", NOW)
    assert "BEGIN CERTIFICATE" in Enrolled(key, cert, [cas["issuing"][1]]).chain_pem()


@pytest.mark.parametrize("case, message", [
    ("other-name", "names ['dev-2']"),
    ("other-key", "not for the key"),
    ("expired", "not valid now"),
    ("unknown-issuer", "no CA in the chain"),
    ("forged-signature", "not issued by the chain's CA"),
])
def test_fail_certificate_not_this_devices(cas: dict, case: str, message: str  # type: ignore[type-arg]
                                           ) -> None:
    key = new_key()
    issuing_key = cas["issuing"][0]
    cert = {
        "other-name": lambda: _leaf(issuing_key, "Issuing", "dev-2", key),
        "other-key": lambda: _leaf(issuing_key, "Issuing", "dev-1", new_key()),
        "expired": lambda: _leaf(issuing_key, "Issuing", "dev-1", key, hours=-0.5),
        "unknown-issuer": lambda: _leaf(cas["other"][0], "Other", "dev-1", key),
        # names the issuing CA but is signed by another key
        "forged-signature": lambda: _leaf(cas["other"][0], "Issuing", "dev-1", key),
    }[case]()
    with pytest.raises(AgentError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Enrolled(key, cert, [cas["issuing"][1], cas["root"][1]]).check("dev-1", NOW)


def test_ok_csr_names_the_device_and_is_signed_by_its_key() -> None:
    key = new_key()
    csr = x509.load_der_x509_csr(csr_der(key, "dev-9"))
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["dev-9"]


def test_ok_chain_is_put_issuing_first(cas: dict) -> None:  # type: ignore[type-arg]
    root_key, root = cas["root"]
    issuing_key = new_key()
    issuing = _leaf(root_key, "Root", "Issuing", issuing_key)
    cert = _leaf(issuing_key, "Issuing", "dev-1", new_key())
    other = cas["other"][1]
    assert issuing_first(cert, [root, other, issuing]) == [issuing, root, other]
    assert issuing_first(cert, [other]) == [other]
