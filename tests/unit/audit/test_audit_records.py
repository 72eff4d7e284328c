"""G7: every admin action leaves one audit record with the right tag, actor and scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from expect import audit_records, last_seq
from fastapi.testclient import TestClient
from fleet import add_device, add_org_unit, issue

from conftest import Installation
from iotiam.audit.models import AuditTag

Action = Callable[[TestClient], tuple[str, str, dict[str, Any]]]


@pytest.fixture
def alice(installation: Installation) -> TestClient:
    """The API as a root admin whose token is named ``alice``, with tenant acme and a
    pending device ``dev-1`` in it."""
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_device(api, "dev-1", org="acme")
    created = api.post("/v1/tokens", json={"name": "alice", "role": "admin"})
    return installation.api(created.json()["token"])


def register(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    add_device(api, "dev-2", "gateway", org="acme")
    return "device:dev-2", "/root/acme/", {"type": "gateway"}


def change_state(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    api.post("/v1/devices/dev-1/state", json={"state": "active", "reason": "installed"})
    return "device:dev-1", "/root/acme/", {"from": "pending", "to": "active",
                                           "reason": "installed", "credentials_revoked": 0}


def import_devices(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    api.post("/v1/devices/import", json={"rows": [
        {"row": 1, "data": {"id": "imp-1", "type": "sensor", "org": "acme"}},
        {"row": 2, "data": {"id": "imp-2", "type": "toaster"}}]})
    return "import:1-devices", "/root/", {"devices": ["imp-1"], "failed": 1}


def issue_certificate(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    issued = issue(api, "dev-1")
    return "device:dev-1", "/root/acme/", {"serial": issued["serial"], "profile": "device",
                                           "sha256": issued["sha256"]}


def revoke_certificate(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    serial = issue(api, "dev-1")["serial"]
    api.post(f"/v1/certificates/{serial}/revoke", json={"reason": "key-compromise"})
    return "device:dev-1", "/root/acme/", {"serial": serial, "reason": "keyCompromise"}


def create_token(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    token = api.post("/v1/tokens", json={"name": "bob", "role": "viewer", "org": "acme"}).json()
    return f"token:{token['id']}", "/root/acme/", {"name": "bob", "role": "viewer",
                                                   "org_unit": "acme"}


def revoke_token(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    token = api.post("/v1/tokens", json={"name": "bob", "role": "viewer", "org": "acme"}).json()
    assert api.delete(f"/v1/tokens/{token['id']}").status_code == 204
    return f"token:{token['id']}", "/root/acme/", {}


def create_org_unit(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    add_org_unit(api, "berlin", "site", parent="acme")
    return "org-unit:berlin", "/root/acme/berlin/", {"kind": "site"}


def create_group(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    api.post("/v1/groups", json={"id": "meters", "org": "acme"})
    return "group:meters", "/root/acme/", {}


def add_group_member(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    api.post("/v1/groups", json={"id": "meters", "org": "acme"})
    api.post("/v1/groups/meters/members", json={"device": "dev-1"})
    return "group:meters", "/root/acme/", {"device": "dev-1"}


def create_device_type(api: TestClient) -> tuple[str, str, dict[str, Any]]:
    api.post("/v1/device-types", json={"name": "meter", "device_class": "sensor"})
    return "device-type:meter", "/root/", {}


ACTIONS: dict[AuditTag, Action] = {
    AuditTag.DEVICE_REGISTERED: register,
    AuditTag.DEVICE_STATE_CHANGED: change_state,
    AuditTag.DEVICE_IMPORTED: import_devices,
    AuditTag.CERTIFICATE_ISSUED: issue_certificate,
    AuditTag.CERTIFICATE_REVOKED: revoke_certificate,
    AuditTag.TOKEN_CREATED: create_token,
    AuditTag.TOKEN_REVOKED: revoke_token,
    AuditTag.ORG_UNIT_CREATED: create_org_unit,
    AuditTag.GROUP_CREATED: create_group,
    AuditTag.GROUP_MEMBER_ADDED: add_group_member,
    AuditTag.DEVICE_TYPE_CREATED: create_device_type,
}


@pytest.mark.parametrize("tag", list(ACTIONS), ids=[t.value for t in ACTIONS])
def test_action_audited(installation: Installation, alice: TestClient, tag: AuditTag) -> None:
    before = last_seq(installation)
    subject, org_path, details = ACTIONS[tag](alice)
    new = audit_records(installation.api(), after=before)
    mine = [r for r in new if r["tag"] == tag]
    assert len(mine) == 1, new
    record = mine[0]
    assert (record["actor"], record["subject"], record["org_path"], record["outcome"],
            record["reason"]) == ("token:alice", subject, org_path, "success", None)
    assert details.items() <= record["details"].items()
    assert record["at"] == installation.clock.now().isoformat()
    # nothing else was written but the record(s) of the action itself
    assert all(r["actor"] == "token:alice" for r in new)


def test_every_tag_is_namespaced() -> None:
    for tag in AuditTag:
        source, subject, action = tag.value.split(":")
        assert source in {"admin", "device", "pki", "system", "detection"}
        assert subject and action


def test_initialization_audited(installation: Installation) -> None:
    records = audit_records(installation.api())
    assert [r["tag"] for r in records] == [
        "pki:ca:created", "pki:ca:created", "pki:ca:created", "admin:policy:written",
        "admin:policy:attached", "admin:token:created", "system:installation:initialized"]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert {r["actor"] for r in records} == {"system"}


def test_crl_publication_audited_as_system(installation: Installation) -> None:
    issuer = installation.services.pki.cas.issuing_id
    before = last_seq(installation)
    installation.public().get(f"/crl/{issuer}.crl")
    [record] = audit_records(installation.api(), after=before)
    assert (record["tag"], record["actor"], record["subject"], record["org_path"]) == (
        "pki:crl:published", "system", f"crl:{issuer}:1", "/root/")


def test_decommission_audits_each_revocation(installation: Installation,
                                             alice: TestClient) -> None:
    serials = [issue(alice, "dev-1")["serial"] for _ in range(2)]
    before = last_seq(installation)
    alice.post("/v1/devices/dev-1/state", json={"state": "decommissioned"})
    new = audit_records(installation.api(), after=before)
    assert [(r["tag"], r["details"].get("serial")) for r in new] == [
        ("device:certificate:revoked", serials[0]),
        ("device:certificate:revoked", serials[1]),
        ("admin:device:state-changed", None),
    ]
    assert {r["details"].get("reason") for r in new[:2]} == {"cessationOfOperation"}


def test_records_page_with_next(installation: Installation) -> None:
    api = installation.api()
    for i in range(4):
        add_device(api, f"dev-{i}")
    first = api.get("/v1/audit/records", params={"limit": 5}).json()
    assert [r["seq"] for r in first["items"]] == [1, 2, 3, 4, 5]
    assert first["next"] == 5
    rest = api.get("/v1/audit/records", params={"after": 5, "limit": 10}).json()
    assert [r["seq"] for r in rest["items"]] == [6, 7, 8, 9, 10, 11]  # 7 from init
    assert rest["next"] is None
