"""Child keys sealed to a gateway's public key (ECIES over P-256)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from iotiam.errors import InvalidInput
from iotiam.gateways.sealed_keys import context_of, open_sealed, seal_to

SECRET = bytes(range(32))
CONTEXT = context_of("gw-1", "tag-1", "abcd")


def test_seal_ok() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sealed = seal_to(key.public_key(), SECRET, CONTEXT)
    assert sealed[0] == 1 and len(sealed) == 1 + 65 + 12 + 32 + 16
    assert SECRET not in sealed
    assert open_sealed(key, sealed, CONTEXT) == SECRET
    # a fresh ephemeral key each time
    assert seal_to(key.public_key(), SECRET, CONTEXT) != sealed


def test_open_fail_other_key() -> None:
    sealed = seal_to(ec.generate_private_key(ec.SECP256R1()).public_key(), SECRET, CONTEXT)
    with pytest.raises(InvalidInput, match="does not open"):
        open_sealed(ec.generate_private_key(ec.SECP256R1()), sealed, CONTEXT)


@pytest.mark.parametrize("context", [context_of("gw-2", "tag-1", "abcd"),
                                     context_of("gw-1", "tag-2", "abcd"),
                                     context_of("gw-1", "tag-1", "abce")],
                         ids=["fail/other-gateway", "fail/other-child", "fail/other-psk"])
def test_open_fail_other_context(context: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sealed = seal_to(key.public_key(), SECRET, CONTEXT)
    with pytest.raises(InvalidInput, match="does not open"):
        open_sealed(key, sealed, context)


def test_open_fail_tampered() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sealed = bytearray(seal_to(key.public_key(), SECRET, CONTEXT))
    sealed[-1] ^= 1
    with pytest.raises(InvalidInput, match="does not open"):
        open_sealed(key, bytes(sealed), CONTEXT)


def test_open_fail_not_sealed() -> None:
    with pytest.raises(InvalidInput, match="not a version 1"):
        open_sealed(ec.generate_private_key(ec.SECP256R1()), b"\x02" + bytes(120), CONTEXT)


def test_seal_fail_other_curve() -> None:
    with pytest.raises(InvalidInput, match="P-256"):
        seal_to(ec.generate_private_key(ec.SECP384R1()).public_key(), SECRET, CONTEXT)
