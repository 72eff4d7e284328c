"""Signed firmware metadata: signer keys, signing, and what verification refuses."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization

from iotiam.attestation.metadata import (
    load_signer_key,
    sign_metadata,
    verify_metadata,
)
from iotiam.attestation.models import FirmwareSigner, InvalidFirmwareMetadata
from iotiam.errors import InvalidInput
from iotiam.pki.keys import PrivateKey
from iotiam.testing import make_key

from .forge import forge, forge_hs256, header_of, payload_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMAGE = hashlib.sha256(b"firmware 1.4.0").hexdigest()


def public_pem(key: PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def signer_of(key: PrivateKey, name: str = "vendor", path: str = "/root/") -> FirmwareSigner:
    checked = load_signer_key(public_pem(key))
    return FirmwareSigner(id=f"id-{name}", name=name, org_unit_id="root", org_path=path,
                          algorithm=checked.algorithm, public_key_pem=checked.public_key_pem,
                          key_id=checked.key_id, created_at=NOW, created_by="test")


@pytest.mark.parametrize(("kind", "alg"), [("ec-p256", "ES256"), ("ed25519", "EdDSA"),
                                           ("rsa-3072", "PS256")], ids=lambda v: v)
def test_sign_and_verify_ok(kind: str, alg: str) -> None:
    key = make_key(kind)
    token = sign_metadata(key, device_type="sensor", version="1.4.0", sha256=IMAGE.upper(),
                          released_at=NOW, notes="fixes CVE-2026-0001")
    assert header_of(token)["alg"] == alg
    other = signer_of(make_key(), "other")
    metadata, signer = verify_metadata(token, [other, signer_of(key)])
    assert signer.name == "vendor"
    assert (metadata.device_type, str(metadata.version), metadata.sha256) == (
        "sensor", "1.4.0", IMAGE)
    assert metadata.released_at == NOW
    assert metadata.notes == "fixes CVE-2026-0001"


def test_verify_ok_without_kid_tries_every_signer() -> None:
    key = make_key()
    token = sign_metadata(key, device_type="sensor", version="1.0", sha256=IMAGE)
    header = header_of(token)
    del header["kid"]
    from joserfc import jwt
    from joserfc.jwk import ECKey

    unnamed = jwt.encode(header, payload_of(token), ECKey.import_key(key), algorithms=["ES256"])
    _, signer = verify_metadata(unnamed, [signer_of(make_key(), "a"), signer_of(key, "b")])
    assert signer.name == "b"


@pytest.mark.parametrize("kind", ["ec-p384", "rsa-2048"], ids=lambda k: f"fail/{k}")
def test_signer_key_fail_weak_or_other_curve(kind: str) -> None:
    with pytest.raises(InvalidInput):
        load_signer_key(public_pem(make_key(kind)))


def test_signer_key_fail_private_key() -> None:
    pem = make_key().private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode()
    with pytest.raises(InvalidInput, match="PUBLIC key"):
        load_signer_key(pem)


@pytest.mark.parametrize("pem", ["", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n"
                                 "-----END PUBLIC KEY-----\n"], ids=["fail/empty",
                                                                    "fail/text", "fail/junk"])
def test_signer_key_fail_not_pem(pem: str) -> None:
    with pytest.raises(InvalidInput):
        load_signer_key(pem)


def good_payload() -> dict[str, object]:
    return {"device_type": "sensor", "version": "1.4.0", "sha256": IMAGE}


@pytest.mark.parametrize("metadata", [
    good_payload(), '{"device_type": "sensor", "version": "1.4.0"}', None, 42, "",
    "a.b", "a.b.c.d",
], ids=["fail/json-object", "fail/json-text", "fail/none", "fail/number", "fail/empty",
        "fail/two-parts", "fail/four-parts"])
def test_verify_fail_unsigned(metadata: object) -> None:
    with pytest.raises(InvalidFirmwareMetadata):
        verify_metadata(metadata, [signer_of(make_key())])


@pytest.mark.parametrize("alg", ["none", "None", "NONE"], ids=lambda a: f"fail/alg-{a}")
def test_verify_fail_alg_none(alg: str) -> None:
    token = forge({"alg": alg}, good_payload())
    with pytest.raises(InvalidFirmwareMetadata, match="not accepted"):
        verify_metadata(token, [signer_of(make_key())])


def test_verify_fail_hs256_with_public_key_as_secret() -> None:
    key = make_key()
    token = forge_hs256({"alg": "HS256"}, good_payload(), public_pem(key).encode())
    with pytest.raises(InvalidFirmwareMetadata, match="not accepted"):
        verify_metadata(token, [signer_of(key)])


def test_verify_fail_unregistered_key() -> None:
    token = sign_metadata(make_key(), device_type="sensor", version="1.0", sha256=IMAGE)
    with pytest.raises(InvalidFirmwareMetadata, match="not signed by a firmware signer"):
        verify_metadata(token, [signer_of(make_key())])
    with pytest.raises(InvalidFirmwareMetadata):
        verify_metadata(token, [])


def test_verify_fail_revoked_signer() -> None:
    key = make_key()
    token = sign_metadata(key, device_type="sensor", version="1.0", sha256=IMAGE)
    revoked = replace(signer_of(key), revoked_at=NOW, revoked_by="test")
    with pytest.raises(InvalidFirmwareMetadata, match="signer 'vendor', revoked at"):
        verify_metadata(token, [signer_of(make_key(), "other"), revoked])


def test_verify_ok_same_key_live_at_another_org_unit() -> None:
    """Revocation is per signer: the key registered at the parent still verifies there,
    whichever of the two comes first."""
    key = make_key()
    token = sign_metadata(key, device_type="sensor", version="1.0", sha256=IMAGE)
    child = replace(signer_of(key, "child", "/root/acme/"), revoked_at=NOW)
    _, signer = verify_metadata(token, [child, signer_of(key, "parent")])
    assert signer.name == "parent"


def test_verify_fail_kid_of_registered_key_but_other_signature() -> None:
    registered, attacker = make_key(), make_key()
    token = sign_metadata(attacker, device_type="sensor", version="1.0", sha256=IMAGE)
    header = header_of(token)
    header["kid"] = signer_of(registered).key_id
    from joserfc import jwt
    from joserfc.jwk import ECKey

    lying = jwt.encode(header, payload_of(token), ECKey.import_key(attacker),
                       algorithms=["ES256"])
    with pytest.raises(InvalidFirmwareMetadata, match="does not verify"):
        verify_metadata(lying, [signer_of(registered)])


def test_verify_fail_tampered_payload() -> None:
    key = make_key()
    token = sign_metadata(key, device_type="sensor", version="1.0", sha256=IMAGE)
    head, _, sig = token.split(".")
    other = forge({}, {**good_payload(), "version": "9.9.9"}).split(".")[1]
    with pytest.raises(InvalidFirmwareMetadata, match="does not verify"):
        verify_metadata(f"{head}.{other}.{sig}", [signer_of(key)])


def test_verify_fail_wrong_typ() -> None:
    key = make_key()
    from joserfc import jwt
    from joserfc.jwk import ECKey

    token = jwt.encode({"alg": "ES256", "typ": "eat+jwt"}, good_payload(),
                       ECKey.import_key(key), algorithms=["ES256"])
    with pytest.raises(InvalidFirmwareMetadata, match="typ"):
        verify_metadata(token, [signer_of(key)])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("sha256", "abc", "64 hex"),
    ("sha256", "g" * 64, "64 hex"),
    ("sha256", None, "64 hex"),
    ("version", "one", "not valid"),
    ("version", None, "required"),
    ("device_type", "../etc", "not valid"),
    ("device_type", None, "required"),
    ("released_at", "yesterday", "released_at"),
    ("released_at", "2026-01-01T00:00:00", "released_at"),
    ("notes", "x" * 2000, "notes"),
], ids=lambda v: f"fail/{v}"[:30] if isinstance(v, str) else None)
def test_verify_fail_payload(field: str, value: object, message: str) -> None:
    key = make_key()
    from joserfc import jwt
    from joserfc.jwk import ECKey

    payload = {**good_payload(), field: value}
    if value is None:
        del payload[field]
    token = jwt.encode({"alg": "ES256"}, payload, ECKey.import_key(key), algorithms=["ES256"])
    with pytest.raises(InvalidFirmwareMetadata, match=message):
        verify_metadata(token, [signer_of(key)])


def test_sign_fail_weak_key() -> None:
    with pytest.raises(InvalidInput, match="3072"):
        sign_metadata(make_key("rsa-2048"), device_type="sensor", version="1.0", sha256=IMAGE)
