"""Searching the audit log by actor, tag, device and time, newest first.

The log is indexed by sequence number (and org path) only, so a search reads a bounded
window of the newest records the caller may see and filters it; the answer says which
window it read and where the next (older) one starts. An auditor's full export stays
``AuditTrail.export`` / ``iter_all``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from iotiam.audit.models import AuditRecord
from iotiam.audit.ports import AuditUnitOfWork
from iotiam.kernel import Principal, Transactions

#: records read per search (one page of a console search)
DEFAULT_SCAN = 5000


@dataclass(frozen=True)
class AuditQuery:
    """What to look for; every field left None matches everything."""

    actor: str | None = None
    #: a whole tag (``device:certificate:revoked``) or its first parts (``device:``)
    tag: str | None = None
    device: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: AuditRecord) -> bool:
        """Whether a record is one this query asks for."""
        if self.actor is not None and record.actor != self.actor:
            return False
        if self.tag is not None and not (record.tag == self.tag or (
                self.tag.endswith(":") and record.tag.startswith(self.tag))):
            return False
        if self.device is not None and not _about_device(record, self.device):
            return False
        if self.since is not None and record.at < self.since:
            return False
        return self.until is None or record.at < self.until


def _about_device(record: AuditRecord, device_id: str) -> bool:
    if record.subject == f"device:{device_id}":
        return True
    details = record.details
    return details.get("device") == device_id or details.get("device_id") == device_id


@dataclass(frozen=True)
class AuditSearch:
    """One page of a search: the matches, newest first, and the window read."""

    records: list[AuditRecord]
    #: pass as ``before_seq`` for the next (older) page; None: the log's start was read
    before: int | None
    #: the sequence numbers read, oldest and newest
    window: tuple[int, int]


def search(transactions: Transactions[AuditUnitOfWork], actor: Principal, query: AuditQuery,
           *, before_seq: int | None = None, limit: int = 50,
           scan: int = DEFAULT_SCAN) -> AuditSearch:
    """Up to ``limit`` matches among the ``scan`` records of the caller's subtree (G9)
    below ``before_seq``, newest first."""
    with transactions.reading() as uow:
        head = uow.audit.head()
        newest = head.seq if head is not None else 0
        top = newest if before_seq is None else min(before_seq - 1, newest)
        start = max(0, top - scan)
        found: list[AuditRecord] = []
        for record in uow.audit.iter_records(org_path=actor.org_path, after_seq=start):
            if record.seq > top:
                break
            if query.matches(record):
                found.append(record)
    found.reverse()
    if len(found) > limit:
        return AuditSearch(found[:limit], found[limit - 1].seq, (start + 1, top))
    return AuditSearch(found, start + 1 if start > 0 else None, (start + 1, top))
