"""The PKCS#11 signer against a real SoftHSM2 token of each test's own."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from iotiam.config import Pkcs11Config
from iotiam.errors import SetupError
from iotiam.hsm.pkcs11_signer import close_sessions, open_signer
from iotiam.hsm.uri import parse_pkcs11_uri
from iotiam.pki.authority import HeldCa, issuing_certificate, root_certificate
from iotiam.testing.softhsm import SoftHsmToken, create_token

URI = parse_pkcs11_uri("pkcs11:token=iotiam;object=issuing-ca")


@pytest.fixture
def token(tmp_path, monkeypatch) -> SoftHsmToken:
    token = create_token(tmp_path)
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    close_sessions()
    yield token
    close_sessions()


def _config(token: SoftHsmToken, pin: str | None = None) -> Pkcs11Config:
    return Pkcs11Config(module_path=token.module, pin=pin or token.pin)


def test_open_signer_ok_generates_key_and_signs(token):
    signer = open_signer(URI, _config(token), create=True)
    public_key = signer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    public_key.verify(signer.sign_bytes(b"tbs"), b"tbs", ec.ECDSA(hashes.SHA256()))
    # the same key found again, not a second one made
    close_sessions()
    again = open_signer(URI, _config(token))
    assert again.public_key() == public_key


def test_open_signer_ok_ca_hierarchy_signed_in_token(token):
    """root and issuing CA keys both in the token: each certificate is signed there."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    root_key = open_signer(URI.for_object("root-ca"), _config(token), create=True)
    root = HeldCa(root_certificate(root_key, common_name="Root", organization="t", now=now,
                                   serial=1), root_key)
    issuing_key = open_signer(URI, _config(token), create=True)
    issuing = HeldCa(issuing_certificate(issuing_key.public_key(), root=root,
                                         common_name="Issuing", organization="t", now=now,
                                         serial=2), issuing_key)
    root.certificate.verify_directly_issued_by(root.certificate)
    issuing.certificate.verify_directly_issued_by(root.certificate)
    assert issuing.certificate.public_key() == issuing_key.public_key() != root_key.public_key()


def test_open_signer_ok_threads_share_one_session(token):
    signer = open_signer(URI, _config(token), create=True)
    errors: list[BaseException] = []

    def sign_many() -> None:
        try:
            for i in range(50):
                data = f"tbs {i}".encode()
                signer.public_key().verify(signer.sign_bytes(data), data,
                                           ec.ECDSA(hashes.SHA256()))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=sign_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_open_signer_fail_wrong_pin(token):
    with pytest.raises(SetupError, match=r"PIN .* is wrong"):
        open_signer(URI, _config(token, pin="0000-wrong"), create=True)


def test_open_signer_fail_no_such_token(token):
    uri = parse_pkcs11_uri("pkcs11:token=elsewhere;object=issuing-ca")
    with pytest.raises(SetupError, match="no PKCS#11 token 'elsewhere'"):
        open_signer(uri, _config(token))


def test_open_signer_fail_no_such_key(token):
    with pytest.raises(SetupError, match="no EC key 'issuing-ca' on the PKCS#11 token"):
        open_signer(URI, _config(token))


def test_open_signer_fail_key_not_the_certificates(token):
    open_signer(URI, _config(token), create=True)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(SetupError, match="not the one its CA certificate names"):
        open_signer(URI, _config(token), expected=other)


def test_open_signer_fail_no_pin(token):
    with pytest.raises(SetupError, match="no PKCS#11 PIN"):
        open_signer(URI, Pkcs11Config(module_path=token.module, pin=None))


def test_open_signer_fail_no_module(token, tmp_path):
    with pytest.raises(SetupError, match="no PKCS#11 module at"):
        open_signer(URI, Pkcs11Config(module_path=str(tmp_path / "nope.so"), pin="1"))


def test_sign_ok_after_module_dropped_the_session(token):
    signer = open_signer(URI, _config(token), create=True)
    # as if the module had restarted: the session this process held is gone
    signer._token._session.close()
    signature = signer.sign_bytes(b"tbs")
    signer.public_key().verify(signature, b"tbs", ec.ECDSA(hashes.SHA256()))


def test_open_signer_fail_private_key_of_another_pair(token):
    """Public 'issuing-ca' from one pair, the private 'issuing-ca' from another: refused
    at start, not found out by relying parties."""
    from pkcs11 import Attribute, ObjectClass

    first = open_signer(URI, _config(token), create=True)
    open_signer(URI.for_object("other"), _config(token), create=True)
    session = first._token._session
    (mine,) = session.get_objects({Attribute.LABEL: "issuing-ca",
                                   Attribute.CLASS: ObjectClass.PRIVATE_KEY})
    (theirs,) = session.get_objects({Attribute.LABEL: "other",
                                     Attribute.CLASS: ObjectClass.PRIVATE_KEY})
    mine.destroy()
    theirs[Attribute.LABEL] = "issuing-ca"
    close_sessions()
    with pytest.raises(SetupError, match="does not match its public key"):
        open_signer(URI, _config(token))
