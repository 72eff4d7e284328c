"""Render audit records for a SIEM: JSON lines or RFC 5424 syslog."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

from iotiam.audit.models import AuditRecord

# RFC 5424 §6.2.1: facility 10 (security/authorization), severities by outcome
_FACILITY_AUTHPRIV = 10
_SEVERITY = {"success": 6, "failure": 4, "denied": 4}
# a private enterprise number is required in SD-IDs; 32473 is the documentation PEN (RFC 5612)
_SD_ID = "iotiam@32473"


def to_jsonl(record: AuditRecord) -> str:
    """One JSON object per line."""
    return json.dumps(
        {
            "seq": record.seq,
            "at": record.at.isoformat(),
            "tag": record.tag,
            "actor": record.actor,
            "org_path": record.org_path,
            "subject": record.subject,
            "outcome": record.outcome,
            "reason": record.reason,
            "details": record.details,
            "prev_hash": record.prev_hash,
            "hash": record.hash,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def _sd_escape(value: str) -> str:
    # RFC 5424 §6.3.3: escape '"', '\' and ']' in PARAM-VALUE
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printable(value: str, limit: int) -> str:
    # header fields are PRINTUSASCII without spaces (RFC 5424 §6)
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)
    return cleaned[:limit] or "-"


def to_syslog(record: AuditRecord, hostname: str | None = None) -> str:
    """An RFC 5424 message with the record in structured data."""
    pri = _FACILITY_AUTHPRIV * 8 + _SEVERITY.get(record.outcome, 5)
    timestamp = record.at.isoformat().replace("+00:00", "Z")
    host = _printable(hostname or socket.gethostname(), 255)
    msgid = _printable(record.tag, 32)
    params = {
        "seq": str(record.seq),
        "tag": record.tag,
        "actor": record.actor,
        "org": record.org_path,
        "subject": record.subject,
        "outcome": record.outcome,
        "hash": record.hash,
    }
    if record.reason:
        params["reason"] = record.reason
    sd = "[" + _SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    msg = json.dumps(record.details, sort_keys=True, separators=(",", ":"))
    return f"<{pri}>1 {timestamp} {host} iotiam - {msgid} {sd} \ufeff{msg}"


def checkpoint_to_syslog(note: str, hostname: str | None = None, *, refused: bool = False,
                         at: datetime | None = None) -> str:
    """An RFC 5424 message carrying a signed checkpoint note, or why none was signed."""
    # RFC 5424 §6.2.1 severities: 3 (error) for a refusal, 6 (informational) otherwise
    pri = _FACILITY_AUTHPRIV * 8 + (3 if refused else 6)
    timestamp = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    host = _printable(hostname or socket.gethostname(), 255)
    msgid = "audit:checkpoint:refused" if refused else "audit:checkpoint:signed"
    lines = note.split("\n", 2)
    params = {} if refused or len(lines) < 3 else {"origin": lines[0], "size": lines[1]}
    sd = "[" + _SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    # the note's lines travel JSON-escaped: one export line per message
    body = json.dumps({"refused" if refused else "checkpoint": note}, sort_keys=True,
                      separators=(",", ":"))
    return f"<{pri}>1 {timestamp} {host} iotiam - {msgid} {sd} \ufeff{body}"


def checkpoint_to_jsonl(note: str, at: datetime, size: int) -> str:
    """The latest checkpoint as the last JSON line of an export."""
    return json.dumps({"checkpoint": note, "at": at.isoformat(), "size": size},
                      sort_keys=True, separators=(",", ":"))
