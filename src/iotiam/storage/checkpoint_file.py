"""Signed audit checkpoints and their key in the data directory, outside the database (G7).

``audit/checkpoints.jsonl`` is the append-only history: one JSON object per checkpoint
(the signed note, when, and the compact range to extend it), appended and fsync'd.
``audit/checkpoint`` holds the latest note alone, replaced atomically, for tools that
speak signed notes (``cat`` it to a witness or compare it by hand); ``audit/checkpoint.json``
is the latest entry, replaced atomically, so the writer never has to read the history.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from iotiam.audit.checkpoint import CheckpointKey, Verifier
from iotiam.audit.models import StoredCheckpoint
from iotiam.config import write_private_file
from iotiam.errors import InvalidInput, SetupError
from iotiam.pki.keys import encrypt_private_key, load_private_key
from iotiam.untrusted import load_json

#: one history line: a ~250-byte note plus a compact range of at most 64 hashes
_MAX_LINE = 64 * 1024


class CheckpointFile:
    """The checkpoint history and the latest checkpoint, in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.history_path = directory / "checkpoints.jsonl"
        self.note_path = directory / "checkpoint"
        self.latest_path = directory / "checkpoint.json"

    def latest(self) -> StoredCheckpoint | None:
        """The latest checkpoint, or None before the first."""
        try:
            text = self.latest_path.read_text()
        except FileNotFoundError:
            return None
        return _entry(text, self.latest_path)

    def history(self) -> Iterator[StoredCheckpoint]:
        """Every checkpoint, oldest first (a line torn by a crash mid-append is skipped)."""
        try:
            handle = self.history_path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    return  # torn by a crash while appending; the latest file has it whole
                yield _entry(line, self.history_path)

    def append(self, checkpoint: StoredCheckpoint) -> None:
        """Append to the history, then replace the latest files (each step durable)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps({"at": checkpoint.at.isoformat(), "size": checkpoint.size,
                           "note": checkpoint.note, "frontier": checkpoint.frontier,
                           "last_hash": checkpoint.last_hash}, separators=(",", ":"))
        fd = os.open(self.history_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            out.write(line.encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        write_private_file(self.latest_path, line + "\n")
        write_private_file(self.note_path, checkpoint.note)


class CheckpointKeyFile:
    """The dedicated Ed25519 key that signs checkpoints, encrypted like the CA keys, and
    its verifier key (name and public key) for auditors to take away."""

    def __init__(self, key_path: Path, vkey_path: Path) -> None:
        self.key_path = key_path
        self.vkey_path = vkey_path

    def load_or_create(self, passphrase: bytes) -> CheckpointKey:
        """The key, created on first use (a key without its verifier key is refused)."""
        if self.key_path.exists():
            return self._load(passphrase)
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # the name is the checkpoint origin: unique per installation, stable for its life
        signer = CheckpointKey(name=f"iotiam/audit/{hashlib.sha256(public).hexdigest()[:16]}",
                               key=key)
        write_private_file(self.key_path, encrypt_private_key(key, passphrase))
        write_private_file(self.vkey_path, signer.verifier_key() + "\n")
        return signer

    def _load(self, passphrase: bytes) -> CheckpointKey:
        if not self.vkey_path.exists():
            raise SetupError(f"{self.vkey_path} is missing: the checkpoint key's name is lost")
        key = load_private_key(self.key_path.read_bytes(), passphrase)
        if not isinstance(key, Ed25519PrivateKey):
            raise SetupError(f"{self.key_path} is not an Ed25519 key")
        text = self.vkey_path.read_text().strip()
        try:
            signer = CheckpointKey(name=Verifier.parse(text).name, key=key)
        except InvalidInput as e:
            raise SetupError(f"{self.vkey_path}: {e.detail}") from e
        if signer.verifier_key() != text:
            raise SetupError(f"{self.vkey_path} is not the public half of {self.key_path}")
        return signer


def _entry(text: str | bytes, where: Path) -> StoredCheckpoint:
    value: Any = load_json(text, what=str(where), max_bytes=_MAX_LINE, max_depth=2)
    try:
        return StoredCheckpoint(note=str(value["note"]), at=datetime.fromisoformat(value["at"]),
                                size=int(value["size"]), frontier=str(value["frontier"]),
                                last_hash=str(value["last_hash"]))
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput(f"{where}: damaged checkpoint entry") from e
