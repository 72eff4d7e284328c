"""Checkpoints as C2SP signed notes, checked against the spec's wire format directly."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from iotiam.audit.checkpoint import Checkpoint, CheckpointKey, Verifier, open_note
from iotiam.errors import InvalidInput

NAME = "iotiam/audit/test"
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture
def key() -> CheckpointKey:
    return CheckpointKey(name=NAME, key=Ed25519PrivateKey.generate())


def raw_public(key: CheckpointKey) -> bytes:
    return key.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_note_ok_wire_format(key: CheckpointKey) -> None:
    note = key.sign(Checkpoint(NAME, 1234, ROOT))
    body = f"{NAME}\n1234\n{base64.b64encode(ROOT).decode()}\n"
    # signed-note: text, a blank line, then "— <name> <base64(key id || signature)>"
    match = re.fullmatch(re.escape(body) + "\n\u2014 " + re.escape(NAME) + r" (\S+)\n", note)
    assert match, note
    blob = base64.b64decode(match[1])
    # key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]
    expected_id = hashlib.sha256(NAME.encode() + b"\n\x01" + raw_public(key)).digest()[:4]
    assert blob[:4] == expected_id
    key.key.public_key().verify(blob[4:], body.encode())  # raises if not the body's signature
    assert key.verifier_key() == (f"{NAME}+{expected_id.hex()}+"
                                  + base64.b64encode(b"\x01" + raw_public(key)).decode())


def test_note_ok_round_trip_through_verifier_key(key: CheckpointKey) -> None:
    note = key.sign(Checkpoint(NAME, 7, ROOT))
    assert open_note(note, Verifier.parse(key.verifier_key())) == Checkpoint(NAME, 7, ROOT)


def test_note_ok_ignores_other_signers(key: CheckpointKey) -> None:
    other = CheckpointKey(name="witness.example", key=Ed25519PrivateKey.generate())
    note = key.sign(Checkpoint(NAME, 7, ROOT))
    cosigned = note + other.sign(Checkpoint(NAME, 7, ROOT)).rsplit("\n\n", 1)[1]
    assert open_note(cosigned, key.verifier()).size == 7


@pytest.mark.parametrize("edit", ["size", "root", "signature", "name"])
def test_note_fail_tampered(key: CheckpointKey, edit: str) -> None:
    note = key.sign(Checkpoint(NAME, 1234, ROOT))
    if edit == "size":
        note = note.replace("\n1234\n", "\n1100\n")
    elif edit == "root":
        note = note.replace(base64.b64encode(ROOT).decode(),
                            base64.b64encode(hashlib.sha256(b"x").digest()).decode())
    elif edit == "signature":
        sig = note.rsplit(" ", 1)[1]
        blob = bytearray(base64.b64decode(sig))
        blob[-1] ^= 1
        note = note.replace(sig, base64.b64encode(bytes(blob)).decode() + "\n")
    else:
        note = note.replace(f"\u2014 {NAME} ", "\u2014 someone-else ")
    with pytest.raises(InvalidInput):
        open_note(note, key.verifier())


def test_note_fail_other_key(key: CheckpointKey) -> None:
    impostor = CheckpointKey(name=NAME, key=Ed25519PrivateKey.generate())
    with pytest.raises(InvalidInput, match="no signature by"):
        open_note(impostor.sign(Checkpoint(NAME, 7, ROOT)), key.verifier())


@pytest.mark.parametrize("text", ["", "name", "name+00000000+AAAA", "a b+00+AQ=="])
def test_verifier_key_fail_malformed(text: str) -> None:
    with pytest.raises(InvalidInput):
        Verifier.parse(text)


def test_verifier_key_fail_wrong_id(key: CheckpointKey) -> None:
    name, _, rest = key.verifier_key().split("+", 2)
    with pytest.raises(InvalidInput, match="id does not match"):
        Verifier.parse(f"{name}+00000000+{rest}")
