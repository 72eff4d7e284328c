"""Signed checkpoints of the audit tree: C2SP ``tlog-checkpoint`` bodies in C2SP
``signed-note`` envelopes, signed with Ed25519.

A checkpoint body is three lines: the origin (the log's name), the tree size in
decimal, and the base64 root hash. The note appends a blank line and one line per
signature: an em dash, the key name, and base64(4-byte key id || signature). Any
tool that speaks signed notes (Go ``golang.org/x/mod/sumdb/note``, sigsum, the
transparency-dev witnesses) can verify these with the verifier key printed by
``verifier_key``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from iotiam.audit.merkle import HASH_BYTES
from iotiam.errors import InvalidInput

#: signed-note signature type of Ed25519
_ED25519 = b"\x01"
_SIGNATURE_PREFIX = "\u2014 "
# signed-note: a key name is non-empty UTF-8 without spaces or "+"
_KEY_NAME = re.compile(r"[^\s+]+")
#: notes larger than this are not ours (a checkpoint is ~200 bytes)
MAX_NOTE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint commits to: the log, how many records, and their Merkle root."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        """The tlog-checkpoint text the signature covers (newline-terminated)."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    """signed-note key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + _raw(public)).digest()[:4]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def verifier_key(name: str, public: Ed25519PublicKey) -> str:
    """The text an auditor keeps: ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
    return f"{name}+{key_id(name, public).hex()}+" + base64.b64encode(
        _ED25519 + _raw(public)).decode()


@dataclass(frozen=True)
class Verifier:
    """A parsed verifier key."""

    name: str
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Parse ``<name>+<hex key id>+<base64 key>``; InvalidInput if it is not one."""
        name, _, rest = text.strip().partition("+")
        hex_id, _, b64 = rest.partition("+")
        try:
            raw = base64.b64decode(b64, validate=True)
            given_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as e:
            raise InvalidInput("not a verifier key (name+keyid+base64 key)") from e
        if not _KEY_NAME.fullmatch(name) or len(raw) != 33 or raw[:1] != _ED25519:
            raise InvalidInput("not an Ed25519 verifier key (name+keyid+base64 key)")
        public = Ed25519PublicKey.from_public_bytes(raw[1:])
        if key_id(name, public) != given_id:
            raise InvalidInput("the verifier key's id does not match its key")
        return cls(name=name, public=public)


def sign(checkpoint: Checkpoint, name: str, key: Ed25519PrivateKey) -> str:
    """The signed note of ``checkpoint``."""
    if not _KEY_NAME.fullmatch(name):
        raise InvalidInput(f"bad key name {name!r}")
    body = checkpoint.body()
    signature = key_id(name, key.public_key()) + key.sign(body.encode())
    return f"{body}\n{_SIGNATURE_PREFIX}{name} {base64.b64encode(signature).decode()}\n"


def open_note(note: str, verifier: Verifier) -> Checkpoint:
    """Verify ``note``'s signature by ``verifier`` and parse its checkpoint.

    Raises InvalidInput when the note is malformed, unsigned by this key, or forged.
    """
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise InvalidInput("the checkpoint note is too large")
    # signed-note: the signatures follow the last blank line; the text keeps its newline
    body, sep, signatures = note.rpartition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise InvalidInput("not a signed note (no blank line before the signatures)")
    text = body + "\n"
    wanted = key_id(verifier.name, verifier.public)
    for line in signatures[:-1].split("\n"):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise InvalidInput("malformed signature line in the checkpoint note")
        name, _, b64 = line[len(_SIGNATURE_PREFIX):].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except binascii.Error as e:
            raise InvalidInput("malformed signature in the checkpoint note") from e
        if name != verifier.name or blob[:4] != wanted:
            continue  # signed-note: signatures by unknown keys are ignored
        try:
            verifier.public.verify(blob[4:], text.encode())
        except InvalidSignature as e:
            raise InvalidInput("the checkpoint signature does not verify") from e
        return parse_body(text)
    raise InvalidInput(f"the checkpoint note carries no signature by {verifier.name}")


def parse_body(text: str) -> Checkpoint:
    """Parse a tlog-checkpoint body (origin, size, base64 root, optional extensions)."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise InvalidInput("a checkpoint has an origin, a size and a root hash line")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    # tlog-checkpoint: decimal, no leading zeros
    if not origin or not re.fullmatch(r"0|[1-9][0-9]{0,18}", size_text):
        raise InvalidInput("malformed checkpoint origin or tree size")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as e:
        raise InvalidInput("malformed checkpoint root hash") from e
    if len(root) != HASH_BYTES:
        raise InvalidInput("the checkpoint root hash is not 32 bytes")
    return Checkpoint(origin=origin, size=int(size_text), root=root)


@dataclass(frozen=True)
class CheckpointKey:
    """The log's dedicated Ed25519 key and its name (the checkpoint origin)."""

    name: str
    key: Ed25519PrivateKey

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note of ``checkpoint``."""
        return sign(checkpoint, self.name, self.key)

    def verifier(self) -> Verifier:
        """The public half, as an auditor holds it."""
        return Verifier(name=self.name, public=self.key.public_key())

    def verifier_key(self) -> str:
        """The verifier key text to hand to auditors."""
        return verifier_key(self.name, self.key.public_key())
