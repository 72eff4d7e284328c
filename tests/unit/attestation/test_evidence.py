"""EAT evidence: signature by the certificate's key, claims, freshness, algorithms."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey

from iotiam.attestation.evidence import sign_evidence, verify_evidence
from iotiam.attestation.models import InvalidEvidence, Measurement
from iotiam.pki.keys import PrivateKey
from iotiam.testing import make_key

from .forge import forge, forge_hs256, header_of, payload_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FW = hashlib.sha256(b"image").hexdigest()
NONCE = "n" * 43
BOOT = (Measurement("bootloader", "ab" * 32), Measurement("kernel", "cd" * 32))


def evidence(key: PrivateKey, **overrides: Any) -> str:
    token = sign_evidence(key, nonce=NONCE, device_id="dev-1", firmware_version="1.4.0",
                          firmware_hash=FW, measurements=BOOT, now=NOW)
    if not overrides:
        return token
    claims = {**payload_of(token), **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    assert isinstance(key, type(make_key()))
    return jwt.encode(header_of(token), claims, ECKey.import_key(key), algorithms=["ES256"])


@pytest.mark.parametrize(("kind", "alg"), [("ec-p256", "ES256"), ("ed25519", "EdDSA"),
                                           ("ec-p384", "ES384"), ("rsa-2048", "PS256")],
                         ids=lambda v: v)
def test_verify_ok(kind: str, alg: str) -> None:
    key = make_key(kind)
    token = sign_evidence(key, nonce=NONCE, device_id="dev-1", firmware_version="1.4.0",
                          firmware_hash=FW.upper(), measurements=BOOT, now=NOW)
    assert header_of(token) == {"alg": alg, "typ": "eat+jwt"}
    verified = verify_evidence(token, key.public_key(), "dev-1", NOW + timedelta(seconds=3))
    assert verified.nonce == NONCE
    assert str(verified.firmware_version) == "1.4.0"
    assert verified.firmware_hash == FW
    assert verified.measurements == BOOT
    assert verified.issued_at == NOW


def test_verify_fail_wrong_key() -> None:
    with pytest.raises(InvalidEvidence, match="not signed by the key of the certificate"):
        verify_evidence(evidence(make_key()), make_key().public_key(), "dev-1", NOW)


def test_verify_fail_other_key_type() -> None:
    token = evidence(make_key())
    with pytest.raises(InvalidEvidence, match="not signed by the key"):
        verify_evidence(token, make_key("ed25519").public_key(), "dev-1", NOW)


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "RS256"], ids=lambda a: f"fail/{a}")
def test_verify_fail_algorithm(alg: str) -> None:
    key = make_key()
    token = forge({"alg": alg, "typ": "eat+jwt"}, payload_of(evidence(key)))
    with pytest.raises(InvalidEvidence, match="not accepted"):
        verify_evidence(token, key.public_key(), "dev-1", NOW)


def test_verify_fail_hmac_with_the_public_key() -> None:
    key = make_key()
    secret = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    token = forge_hs256({"alg": "HS256", "typ": "eat+jwt"}, payload_of(evidence(key)), secret)
    with pytest.raises(InvalidEvidence, match="not accepted"):
        verify_evidence(token, key.public_key(), "dev-1", NOW)


@pytest.mark.parametrize("typ", [None, "JWT", "client-authentication+jwt"],
                         ids=lambda t: f"fail/typ-{t}")
def test_verify_fail_typ(typ: str | None) -> None:
    key = make_key()
    header = {"alg": "ES256"} if typ is None else {"alg": "ES256", "typ": typ}
    token = jwt.encode(header, payload_of(evidence(key)), ECKey.import_key(key),
                       algorithms=["ES256"])
    if typ is None:  # joserfc adds typ JWT by itself
        assert header_of(token).get("typ") in (None, "JWT")
    with pytest.raises(InvalidEvidence, match="eat\\+jwt"):
        verify_evidence(token, key.public_key(), "dev-1", NOW)


@pytest.mark.parametrize(("claims", "message"), [
    ({"sub": "dev-2"}, "certificate is device"),
    ({"sub": None}, "certificate is device"),
    ({"eat_nonce": None}, "eat_nonce"),
    ({"eat_nonce": "short"}, "eat_nonce"),
    ({"eat_nonce": ["a" * 43]}, "eat_nonce"),
    ({"iat": None}, "iat"),
    ({"iat": "now"}, "iat"),
    ({"iat": int((NOW - timedelta(minutes=6)).timestamp())}, "not fresh"),
    ({"iat": int((NOW + timedelta(minutes=6)).timestamp())}, "not fresh"),
    ({"iat": 10**20}, "iat"),
    ({"exp": int(NOW.timestamp()) - 1}, "expired"),
    ({"fw_version": "latest"}, "fw_version"),
    ({"fw_version": None}, "fw_version"),
    ({"fw_hash": "abc"}, "fw_hash"),
    ({"fw_hash": None}, "fw_hash"),
    ({"measurements": "boot"}, "measurements"),
    ({"measurements": [{"name": "x"}]}, "name' and 'digest"),
    ({"measurements": [{"name": "x", "digest": "a b"}]}, "digest"),
    ({"measurements": [{"name": "x", "digest": "ab"}] * 2}, "twice"),
    ({"measurements": [{"name": f"m{i}", "digest": "ab"} for i in range(65)]}, "at most"),
], ids=lambda v: None if isinstance(v, str) else "fail/" + "-".join(f"{k}" for k in v))
def test_verify_fail_claims(claims: dict[str, Any], message: str) -> None:
    key = make_key()
    with pytest.raises(InvalidEvidence, match=message):
        verify_evidence(evidence(key, **claims), key.public_key(), "dev-1", NOW)


@pytest.mark.parametrize("token", [None, 42, "", "a.b", "x" * 9000, {"eat_nonce": NONCE}],
                         ids=["fail/none", "fail/number", "fail/empty", "fail/two-parts",
                              "fail/huge", "fail/object"])
def test_verify_fail_not_a_jwt(token: object) -> None:
    with pytest.raises(InvalidEvidence):
        verify_evidence(token, make_key().public_key(), "dev-1", NOW)
