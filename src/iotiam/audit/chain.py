"""The hash chain: how records are sealed and how the chain is verified (G7).

Each record's hash covers its own fields and the previous record's hash, so an
edited, removed or reordered record breaks the chain. A removed *tail* leaves a
valid shorter chain; it is caught by the head (last seq + hash) that is updated
in the same transaction and MAC'd with a key stored outside the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from iotiam.audit.models import AuditDraft, AuditRecord, ChainHead, VerifyReport

GENESIS_HASH = "0" * 64
# size of the subject column; subjects often carry ids straight from a URL
SUBJECT_MAX_CHARS = 1024


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _canonical(fields: dict[str, Any]) -> bytes:
    return _CANONICAL.encode(fields).encode()


_JSON_SCALARS = frozenset({str, int, bool, type(None)})


def _flat_json(details: dict[str, Any]) -> bool:
    """Whether JSON gives ``details`` back equal: str keys, str/int/bool/None values.

    Exact types only: a StrEnum or a float (``1.0`` vs ``1``?) takes the round trip.
    """
    return all(type(k) is str and type(v) in _JSON_SCALARS for k, v in details.items())


def record_hash(
    *,
    seq: int,
    at: datetime,
    tag: str,
    actor: str,
    org_path: str,
    subject: str,
    outcome: str,
    reason: str | None,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 over the canonical JSON of a record's fields and its predecessor's hash."""
    body = {
        "seq": seq,
        "at": at.isoformat(),
        "tag": tag,
        "actor": actor,
        "org_path": org_path,
        "subject": subject,
        "outcome": outcome,
        "reason": reason,
        "details": details,
        "prev": prev_hash,
    }
    return hashlib.sha256(_canonical(body)).hexdigest()


def seal(draft: AuditDraft, *, seq: int, at: datetime, prev_hash: str) -> AuditRecord:
    """Turn a draft into the next link of the chain."""
    # round-trip details through JSON so what is hashed is exactly what is stored; flat
    # details of plain JSON scalars come back unchanged, so they skip the trip (hot:
    # every issuance is audited)
    details = dict(draft.details) if _flat_json(draft.details) else json.loads(
        _canonical(draft.details))
    # a refusal of a hostile id (NUL bytes, megabytes long) must still be storable
    subject = draft.subject.replace("\x00", "\\x00")[:SUBJECT_MAX_CHARS]
    digest = record_hash(
        seq=seq,
        at=at,
        tag=str(draft.tag),
        actor=draft.actor,
        org_path=draft.org_path,
        subject=subject,
        outcome=str(draft.outcome),
        reason=draft.reason,
        details=details,
        prev_hash=prev_hash,
    )
    return AuditRecord(
        seq=seq,
        at=at,
        tag=str(draft.tag),
        actor=draft.actor,
        org_path=draft.org_path,
        subject=subject,
        outcome=str(draft.outcome),
        reason=draft.reason,
        details=details,
        prev_hash=prev_hash,
        hash=digest,
    )


def head_mac(seq: int, digest: str, key: bytes) -> str:
    """HMAC-SHA256 binding the head to the installation's audit key."""
    return hmac.new(key, f"{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def make_head(record: AuditRecord, key: bytes, frontier: str | None = None) -> ChainHead:
    """The head that points at ``record`` (and the Merkle compact range up to it)."""
    return ChainHead(seq=record.seq, hash=record.hash, mac=head_mac(record.seq, record.hash, key),
                     frontier=frontier)


def verify_chain(
    records: Iterable[AuditRecord], head: ChainHead | None, key: bytes
) -> VerifyReport:
    """Walk the chain in storage order and check every link, then the head."""
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    for rec in records:
        count += 1
        broken = _broken_link(rec, expected_seq, prev)
        if broken is not None:
            problem, first_bad_seq = broken
            return VerifyReport(
                ok=False,
                records=count,
                head_seq=head.seq if head else 0,
                problem=problem,
                first_bad_seq=first_bad_seq,
            )
        prev = rec.hash
        expected_seq += 1
    return _verify_head(head, key, records=count, last_seq=expected_seq - 1, last_hash=prev)


def _broken_link(rec: AuditRecord, expected_seq: int, prev: str) -> tuple[str, int] | None:
    """What is wrong with ``rec`` as the link after hash ``prev``: the problem and the
    first bad record number, or None when the link holds."""
    if rec.seq != expected_seq:
        what = "removed" if rec.seq > expected_seq else "reordered or duplicated"
        return (f"expected record {expected_seq}, found {rec.seq}: a record was {what}",
                expected_seq)
    if rec.prev_hash != prev:
        return f"record {rec.seq} does not link to its predecessor", rec.seq
    digest = record_hash(
        seq=rec.seq,
        at=rec.at,
        tag=rec.tag,
        actor=rec.actor,
        org_path=rec.org_path,
        subject=rec.subject,
        outcome=rec.outcome,
        reason=rec.reason,
        details=rec.details,
        prev_hash=rec.prev_hash,
    )
    if digest != rec.hash:
        return f"record {rec.seq} was altered (hash mismatch)", rec.seq
    return None


def _verify_head(head: ChainHead | None, key: bytes, *, records: int, last_seq: int,
                 last_hash: str) -> VerifyReport:
    """Check the MAC'd head against the intact chain's last record (a removed tail)."""
    if head is None:
        if last_seq == 0:
            return VerifyReport(ok=True, records=0, head_seq=0)
        return VerifyReport(
            ok=False, records=records, head_seq=0, problem="the chain head is missing"
        )
    if not hmac.compare_digest(head.mac, head_mac(head.seq, head.hash, key)):
        return VerifyReport(
            ok=False,
            records=records,
            head_seq=head.seq,
            problem="the chain head was altered (MAC mismatch)",
        )
    if head.seq != last_seq or head.hash != last_hash:
        return VerifyReport(
            ok=False,
            records=records,
            head_seq=head.seq,
            problem=(
                f"the chain ends at record {last_seq} but the head says {head.seq}: "
                "the tail was truncated or rewritten"
            ),
            first_bad_seq=min(last_seq, head.seq) + 1,
        )
    return VerifyReport(ok=True, records=records, head_seq=head.seq)
