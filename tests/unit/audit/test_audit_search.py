"""Audit search: newest first, bounded windows, the caller's subtree only (G9), on each
backend's store."""

from __future__ import annotations

from datetime import timedelta

from conftest import Installation
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.search import AuditQuery
from iotiam.kernel import SYSTEM, Principal, Role


def test_ok_search_filters_pages_and_stays_in_the_subtree(installation: Installation
                                                           ) -> None:
    audit = installation.services.audit
    clock = installation.clock
    for n in range(6):
        clock.advance(timedelta(minutes=1))
        audit.record(AuditDraft(tag=AuditTag.DEVICE_STATE_CHANGED, actor=f"token:a{n % 2}",
                                org_path="/root/acme/" if n % 3 else "/root/globex/",
                                subject=f"device:d{n}"))
    everything = audit.search(SYSTEM, AuditQuery(tag="admin:device:"))
    assert [r.subject for r in everything.records] == [f"device:d{n}" for n in range(5, -1, -1)]
    assert [r.subject for r in audit.search(SYSTEM, AuditQuery(actor="token:a1")).records] \
        == ["device:d5", "device:d3", "device:d1"]
    assert [r.subject for r in audit.search(SYSTEM, AuditQuery(device="d4")).records] \
        == ["device:d4"]
    since = everything.records[2].at
    recent = audit.search(SYSTEM, AuditQuery(tag="admin:device:state-changed", since=since))
    assert [r.subject for r in recent.records] == ["device:d5", "device:d4", "device:d3"]
    acme = Principal(name="acme", role=Role.ADMIN, org_unit_id="acme", org_path="/root/acme/")
    assert {r.org_path for r in audit.search(acme, AuditQuery()).records} == {"/root/acme/"}
    first = audit.search(SYSTEM, AuditQuery(tag="admin:device:"), limit=4)
    rest = audit.search(SYSTEM, AuditQuery(tag="admin:device:"), limit=4,
                        before_seq=first.before)
    assert [r.subject for r in first.records + rest.records] == \
        [r.subject for r in everything.records]
