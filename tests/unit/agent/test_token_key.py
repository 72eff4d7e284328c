"""The pieces of a device key in a token that need no token: the client assertion it
signs, the engine key id and files, and the ``--key`` URI checks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from iotiam.agent import AgentError
from iotiam.agent.oauth import _token_signed_es256
from iotiam.agent.token_key import (
    engine_key_id,
    mqtt_command,
    parse_key_uri,
    write_engine_files,
)
from iotiam.pki.external_signer import ExternalKeySigner
from iotiam.pki.keys import PublicKey


class OutsideKey(ExternalKeySigner):
    """A key "in a token" that is here (DER ECDSA over SHA-256, as the token signer)."""

    def __init__(self) -> None:
        super().__init__()
        self.key = ec.generate_private_key(ec.SECP256R1())

    def public_key(self) -> PublicKey:
        return self.key.public_key()

    def sign_bytes(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def test_ok_assertion_signed_outside_verifies_as_es256() -> None:
    signer = OutsideKey()
    claims = {"iss": "dev-1", "sub": "dev-1", "aud": "https://iam", "jti": "j1",
              "iat": 1, "exp": 2}
    token = _token_signed_es256(signer, claims)
    decoded = jwt.decode(token, ECKey.import_key(signer.key.public_key()),
                         algorithms=["ES256"])
    assert decoded.header == {"alg": "ES256", "typ": "client-authentication+jwt"}
    assert decoded.claims == claims


def test_fail_assertion_of_another_key_does_not_verify() -> None:
    token = _token_signed_es256(OutsideKey(), {"iss": "dev-1"})
    with pytest.raises(Exception):  # noqa: B017 - joserfc's BadSignatureError
        jwt.decode(token, ECKey.import_key(OutsideKey().key.public_key()),
                   algorithms=["ES256"])


def test_ok_engine_key_id_drops_the_query_and_names_the_private_key() -> None:
    uri = "pkcs11:token=dev;object=device;id=%01%02?pin-source=/run/pin"
    assert engine_key_id(uri) == "pkcs11:token=dev;object=device;id=%01%02;type=private"
    assert engine_key_id("pkcs11:token=dev;object=d;type=private") == \
        "pkcs11:token=dev;object=d;type=private"


def test_ok_engine_files_hold_no_pin_and_replace_the_old_key_id(tmp_path: Path) -> None:
    write_engine_files(tmp_path, "pkcs11:token=dev;object=d;id=%01", "/lib/p11.so",
                       durable=False)
    where = write_engine_files(tmp_path, "pkcs11:token=dev;object=d;id=%02", "/lib/p11.so",
                               durable=False)
    config = (where / "openssl.cnf").read_text()
    assert "MODULE_PATH = /lib/p11.so" in config
    assert "PIN = $ENV::IOTIAM_PKCS11_PIN" in config
    assert stat.S_IMODE((where / "openssl.cnf").stat().st_mode) == 0o600
    # mosquitto_pub opens --key as a file first: only the current key id is there
    assert sorted(p.name for p in where.glob("pkcs11:*")) == [
        "pkcs11:token=dev;object=d;id=%02;type=private"]
    command = mqtt_command(tmp_path, "pkcs11:token=dev;object=d;id=%02", "dev-1")
    assert "--keyform engine --key 'pkcs11:token=dev;object=d;id=%02;type=private'" in command


@pytest.mark.parametrize("uri, message", [
    ("file:/tmp/key.pem", "not a PKCS#11 URI"),
    ("pkcs11:object=device", "names its token"),
    ("pkcs11:token=dev;object=device?pin-value=1234", "no pin-value"),
    ("pkcs11:token=dev;object=device;colour=red", "colour"),
], ids=["fail/not-pkcs11", "fail/no-token", "fail/pin-value", "fail/unknown-attribute"])
def test_fail_key_uri(uri: str, message: str) -> None:
    with pytest.raises(AgentError, match=message):
        parse_key_uri(uri)
