from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from iotiam.errors import InvalidInput, SetupError
from iotiam.pki.keys import (
    check_leaf_public_key,
    describe_public_key,
    encrypt_private_key,
    generate_private_key,
    load_private_key,
    require_leaf_public_key,
)
from iotiam.pki.models import KeyAlgorithm


@pytest.mark.parametrize("alg", list(KeyAlgorithm), ids=lambda a: a.value)
def test_generate_private_key_ok(alg: KeyAlgorithm) -> None:
    key = generate_private_key(alg)
    assert describe_public_key(key.public_key()) == alg.value


def test_load_private_key_ok_round_trip() -> None:
    key = generate_private_key(KeyAlgorithm.EC_P256)
    pem = encrypt_private_key(key, b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    loaded = load_private_key(pem, b"correct horse")
    assert loaded.public_key() == key.public_key()


def test_load_private_key_fail_wrong_passphrase() -> None:
    pem = encrypt_private_key(generate_private_key(KeyAlgorithm.ED25519), b"right")
    with pytest.raises(SetupError, match="wrong CA passphrase"):
        load_private_key(pem, b"wrong")


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"garbage",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    ],
    ids=["empty", "garbage", "truncated"],
)
def test_load_private_key_fail_garbage(pem: bytes) -> None:
    with pytest.raises(SetupError, match="wrong CA passphrase"):
        load_private_key(pem, b"whatever")


def test_encrypt_private_key_fail_empty_passphrase() -> None:
    with pytest.raises(InvalidInput):
        encrypt_private_key(generate_private_key(KeyAlgorithm.ED25519), b"")


def test_describe_public_key_ok() -> None:
    assert describe_public_key(ec.generate_private_key(ec.SECP384R1()).public_key()) == "ec-p384"
    assert describe_public_key(ed25519.Ed25519PrivateKey.generate().public_key()) == "ed25519"
    assert describe_public_key(ed448.Ed448PrivateKey.generate().public_key()) == "ed448"


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate,
    ],
    ids=["ec-p256", "ec-p384", "ed25519"],
)
def test_check_leaf_public_key_ok(make_key) -> None:
    check_leaf_public_key(make_key().public_key())


def test_check_leaf_public_key_ok_rsa_2048(rsa_key: rsa.RSAPrivateKey) -> None:
    assert require_leaf_public_key(rsa_key.public_key()) == rsa_key.public_key()


def test_check_leaf_public_key_fail_rsa_1024() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(InvalidInput, match=r"RSA-1024 keys are too weak; use RSA ≥ 2048"):
        check_leaf_public_key(weak)


def test_check_leaf_public_key_fail_rsa_exponent_3(rsa_key: rsa.RSAPrivateKey) -> None:
    modulus = rsa_key.public_key().public_numbers().n
    small_e = rsa.RSAPublicNumbers(3, modulus).public_key()
    with pytest.raises(InvalidInput, match="exponent 3"):
        check_leaf_public_key(small_e)


def test_check_leaf_public_key_fail_rsa_too_large() -> None:
    modulus = (1 << 9000) + 0x1234567  # odd, 9001 bits: only the size is checked
    huge = rsa.RSAPublicNumbers(65537, modulus).public_key()
    with pytest.raises(InvalidInput, match="RSA-9001 keys are larger than 8192 bits"):
        check_leaf_public_key(huge)


@pytest.mark.parametrize(
    ("make_key", "label"),
    [
        (lambda: ec.generate_private_key(ec.SECP521R1()), "ec-p521"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "ec-secp256k1"),
        (ed448.Ed448PrivateKey.generate, "ed448"),
    ],
    ids=["ec-p521", "ec-secp256k1", "ed448"],
)
def test_check_leaf_public_key_fail_other_types(make_key, label: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{label} keys are not accepted; use RSA"):
        check_leaf_public_key(make_key().public_key())
