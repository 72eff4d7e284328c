"""Checks the API tests share: problem+json answers, stored state, the audit tail.

A refused request must answer a clear 4xx problem (G10), leave every table as it was
and leave its refusal in the audit log (G7). ``Snapshot`` captures what "as it was"
means before the request; ``assert_refused`` checks all three afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from conftest import Installation
from iotiam.pki.models import CertificateStatus
from iotiam.storage.tables import admin, audit, inventory, pki
from iotiam.testing.fakes.unit_of_work import MemoryDatabase, MemoryUnitOfWork

PROBLEM_JSON = "application/problem+json"
PROBLEM_FIELDS = {"type", "title", "status", "detail"}

#: tables holding fleet state; the audit log is checked separately
STATE_TABLES = (
    inventory.org_units,
    inventory.device_types,
    inventory.devices,
    inventory.groups,
    inventory.group_members,
    pki.certificates,
    admin.admin_tokens,
)


def assert_problem(
    response: httpx.Response, status: int, detail: str | None = None
) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status``; ``detail`` must appear in it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["type"].startswith("urn:iotiam:problem:")
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in response.text
    if detail is not None:
        assert detail in body["detail"], body["detail"]
    return body


def row_counts(installation: Installation) -> dict[str, int]:
    """Row count of every fleet-state table, plus reserved (never signed) certificates."""
    if isinstance(installation.services.database, MemoryDatabase):
        return _memory_row_counts(installation.services.database.uow)
    with installation.services.database.engine.connect() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in STATE_TABLES
        }
        counts["reserved_certificates"] = conn.execute(
            select(func.count())
            .select_from(pki.certificates)
            .where(pki.certificates.c.status == "reserved")
        ).scalar_one()
    return counts


def _memory_row_counts(uow: MemoryUnitOfWork) -> dict[str, int]:
    """``row_counts`` of an installation in memory: the same tables, as stores."""
    certificates = uow.certificates.certificates.values()
    return {
        "org_units": len(uow.org_units.units),
        "device_types": len(uow.device_types.types),
        "devices": len(uow.devices.devices),
        "groups": len(uow.groups.groups),
        "group_members": len(uow.groups.memberships),
        "certificates": len(certificates),
        "admin_tokens": len(uow.admin_tokens.tokens),
        "reserved_certificates": sum(1 for c in certificates
                                     if c.status is CertificateStatus.RESERVED),
    }


def audit_records(api: TestClient, after: int = 0) -> list[dict[str, Any]]:
    """Every audit record the caller of ``api`` may see, after sequence number ``after``."""
    records: list[dict[str, Any]] = []
    while True:
        page = api.get("/v1/audit/records", params={"after": after, "limit": 5000})
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        records += items
        if page.json()["next"] is None:
            return records
        after = items[-1]["seq"]


def last_seq(installation: Installation) -> int:
    """Sequence number of the newest audit record."""
    if isinstance(installation.services.database, MemoryDatabase):
        head = installation.services.database.uow.audit.head()
        return head.seq if head else 0
    with installation.services.database.engine.connect() as conn:
        value = conn.execute(select(func.max(audit.audit_records.c.seq))).scalar_one()
    return int(value or 0)


@dataclass(frozen=True)
class Snapshot:
    """Stored state and the audit position before a request."""

    rows: dict[str, int]
    seq: int


def snapshot(installation: Installation) -> Snapshot:
    """Take a ``Snapshot`` now."""
    return Snapshot(rows=row_counts(installation), seq=last_seq(installation))


def assert_refused(
    installation: Installation,
    before: Snapshot,
    response: httpx.Response,
    status: int,
    *,
    detail: str,
    tag: str,
    outcome: str,
) -> dict[str, Any]:
    """A clear problem, nothing stored, and exactly one audit record of the refusal."""
    body = assert_problem(response, status, detail)
    assert row_counts(installation) == before.rows
    new = audit_records(installation.api(), after=before.seq)
    assert [(r["tag"], r["outcome"]) for r in new] == [(tag, outcome)], new
    assert new[0]["reason"] == body["detail"][:500]
    return new[0]
