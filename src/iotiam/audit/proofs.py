"""Inclusion and consistency proofs as self-contained JSON bundles, and their check.

A bundle carries the signed checkpoint note(s) and the RFC 9162 proof; checking it needs
only the log's verifier key (``check_bundle``), nothing from the server that made it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from iotiam.audit.chain import record_hash
from iotiam.audit.checkpoint import Verifier, open_note
from iotiam.audit.merkle import (
    HASH_BYTES,
    record_leaf,
    verify_consistency,
    verify_inclusion,
)
from iotiam.audit.models import AuditRecord
from iotiam.errors import InvalidInput

#: a proof has at most ~2·log2(size) hashes; 128 covers any size a log can reach
MAX_PROOF_HASHES = 128


@dataclass(frozen=True)
class InclusionProof:
    """Record ``record.seq`` is leaf ``seq - 1`` of the tree the checkpoint signed."""

    checkpoint: str
    record: AuditRecord
    path: list[bytes]

    def bundle(self) -> dict[str, Any]:
        """The JSON an auditor checks."""
        r = self.record
        return {
            "type": "inclusion",
            "checkpoint": self.checkpoint,
            "leaf_index": r.seq - 1,
            "record": {"seq": r.seq, "at": r.at.isoformat(), "tag": r.tag, "actor": r.actor,
                       "org_path": r.org_path, "subject": r.subject, "outcome": r.outcome,
                       "reason": r.reason, "details": r.details, "prev_hash": r.prev_hash,
                       "hash": r.hash},
            "proof": [base64.b64encode(h).decode() for h in self.path],
        }


@dataclass(frozen=True)
class ConsistencyProof:
    """The tree of ``old_checkpoint`` is a prefix of the tree of ``new_checkpoint``."""

    old_checkpoint: str
    new_checkpoint: str
    path: list[bytes]

    def bundle(self) -> dict[str, Any]:
        """The JSON an auditor checks."""
        return {"type": "consistency", "old_checkpoint": self.old_checkpoint,
                "new_checkpoint": self.new_checkpoint,
                "proof": [base64.b64encode(h).decode() for h in self.path]}


def _hashes(value: Any) -> list[bytes]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise InvalidInput("proof: a list of base64 hashes expected")
    try:
        hashes = [base64.b64decode(v, validate=True) for v in value if isinstance(v, str)]
    except binascii.Error as e:
        raise InvalidInput("proof: a hash is not base64") from e
    if len(hashes) != len(value) or any(len(h) != HASH_BYTES for h in hashes):
        raise InvalidInput("proof: every hash must be 32 bytes of base64")
    return hashes


def _text(bundle: dict[str, Any], name: str) -> str:
    value = bundle.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"proof: {name} missing")
    return value


def check_bundle(bundle: Any, verifier: Verifier) -> str:
    """Check a proof bundle with the log's public key; a one-line verdict or InvalidInput."""
    if not isinstance(bundle, dict):
        raise InvalidInput("proof: a JSON object expected")
    kind = bundle.get("type")
    if kind == "inclusion":
        return _check_inclusion(bundle, verifier)
    if kind == "consistency":
        old = open_note(_text(bundle, "old_checkpoint"), verifier)
        new = open_note(_text(bundle, "new_checkpoint"), verifier)
        if old.origin != new.origin:
            raise InvalidInput("proof: the checkpoints are of different logs")
        if not verify_consistency(old.size, new.size, old.root, new.root,
                                  _hashes(bundle.get("proof"))):
            raise InvalidInput(f"consistency proof {old.size:,} → {new.size:,} does not verify")
        return (f"consistent: the {old.size:,}-record checkpoint is a prefix of the "
                f"{new.size:,}-record checkpoint of {new.origin}")
    raise InvalidInput("proof: type must be inclusion or consistency")


def _check_inclusion(bundle: dict[str, Any], verifier: Verifier) -> str:
    checkpoint = open_note(_text(bundle, "checkpoint"), verifier)
    record = bundle.get("record")
    index = bundle.get("leaf_index")
    if not isinstance(record, dict) or type(index) is not int:
        raise InvalidInput("proof: record and leaf_index missing")
    digest = record.get("hash")
    if not isinstance(digest, str) or len(digest) != 2 * HASH_BYTES:
        raise InvalidInput("proof: record hash missing")
    try:
        leaf = record_leaf(digest)
    except ValueError as e:
        raise InvalidInput("proof: record hash is not hex") from e
    if _recomputed(record) != digest or record.get("seq") != index + 1:
        raise InvalidInput("proof: the record's fields do not produce its hash")
    if not verify_inclusion(leaf, index, checkpoint.size, _hashes(bundle.get("proof")),
                            checkpoint.root):
        raise InvalidInput(f"inclusion proof of record {index + 1:,} in the "
                           f"{checkpoint.size:,}-record checkpoint does not verify")
    return (f"included: record {index + 1:,} is in the {checkpoint.size:,}-record "
            f"checkpoint of {checkpoint.origin}")


def _recomputed(record: dict[str, Any]) -> str | None:
    """The chain hash of a record's fields (None if they are not well formed)."""
    try:
        return record_hash(seq=record["seq"], at=datetime.fromisoformat(record["at"]),
                           tag=record["tag"], actor=record["actor"],
                           org_path=record["org_path"], subject=record["subject"],
                           outcome=record["outcome"], reason=record["reason"],
                           details=record["details"], prev_hash=record["prev_hash"])
    except (KeyError, TypeError, ValueError):
        return None
