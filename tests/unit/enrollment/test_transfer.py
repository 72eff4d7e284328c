"""Ownership transfer: old credentials and bindings go, a fresh claim for the new owner."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from expect import assert_problem, audit_records, row_counts
from fleet import add_device, add_org_unit, issue

from conftest import Installation
from enrollment.zerotouch import EST, PKCS10, common_name, csr_for, issued, records
from iotiam.kernel import SYSTEM
from iotiam.policy.models import AttachmentTarget, TargetKind
from iotiam.testing import make_key


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Transfers are a use case: they run on the memory stores."""
    return memory_installation


def claim_enroll(installation: Installation, device_id: str, token: str) -> Any:
    return installation.api().post(f"{EST}/simpleenroll",
                                   content=base64.b64encode(csr_for(device_id)),
                                   headers=PKCS10, auth=(device_id, token))


@pytest.fixture
def fleet(installation: Installation) -> Installation:
    """acme (→ site acme-berlin) and globex; d1 in acme with two certificates, a PSK,
    an unused claim and memberships of an acme group and a fleet-wide root group."""
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "acme-berlin", "site", parent="acme")
    add_org_unit(api, "globex", "tenant")
    add_device(api, "d1", org="acme")
    for _ in range(2):
        issue(api, "d1", make_key())
    assert api.post("/v1/devices/d1/psk", json={}).status_code == 201
    assert api.post("/v1/devices/d1/claims", json={}).status_code == 201
    for group, org in (("acme-g", "acme"), ("fleet", "root")):
        assert api.post("/v1/groups", json={"id": group, "org": org}).status_code == 201
        assert api.post(f"/v1/groups/{group}/members", json={"device": "d1"}).status_code == 204
    return installation


def test_transfer_ok(fleet: Installation) -> None:
    api = fleet.api()
    old_claim = api.post("/v1/devices/d1/claims", json={}).json()["token"]
    answer = api.post("/v1/devices/d1/transfer", json={"to": "globex"})
    assert answer.status_code == 200, answer.text
    moved = answer.json()
    assert (moved["from"], moved["to"], moved["state"], moved["credentials_revoked"],
            moved["groups_left"]) == ("acme", "globex", "pending", 3, ["acme-g"])
    device = api.get("/v1/devices/d1").json()
    assert (device["org"], device["state"]) == ("globex", "pending")
    # every credential of the old owner is revoked, and kept as history
    credentials = api.get("/v1/devices/d1/credentials").json()["items"]
    assert sorted((c["kind"], c["status"]) for c in credentials) == [
        ("certificate", "revoked"), ("certificate", "revoked"), ("psk", "revoked")]
    reasons = {api.get(f"/v1/certificates/{c['id']}").json()["revocation_reason"]
               for c in credentials if c["kind"] == "certificate"}
    assert reasons == {"affiliationChanged"}
    groups = {g["id"]: g["members"] for g in api.get("/v1/groups").json()["items"]}
    assert groups == {"acme-g": [], "fleet": ["d1"]}
    # the old owner's claims are dead; the new one enrolls the device into globex
    assert claim_enroll(fleet, "d1", old_claim).status_code == 401
    cert = issued(claim_enroll(fleet, "d1", moved["claim"]["token"]))
    assert common_name(cert) == "d1"
    assert "OU=globex" in cert.subject.rfc4514_string()
    assert api.get("/v1/devices/d1").json()["state"] == "active"


def test_transfer_visible_to_both_owners(fleet: Installation) -> None:
    acme = fleet.token("admin", "acme")
    globex = fleet.token("admin", "globex")
    fleet.api().post("/v1/devices/d1/transfer", json={"to": "globex"})
    assert fleet.api(acme).get("/v1/devices/d1").status_code == 404
    assert fleet.api(globex).get("/v1/devices/d1").status_code == 200
    # history stays with the old owner: its revoked certificates, its side of the record
    history = fleet.api(acme).get("/v1/certificates", params={"device": "d1"}).json()["items"]
    assert [c["status"] for c in history] == ["revoked", "revoked"]
    assert fleet.api(globex).get("/v1/certificates", params={"device": "d1"}).json()[
        "items"] == []
    (left,) = records(fleet, "admin:device:transferred", acme)
    (arrived,) = records(fleet, "admin:device:transferred", globex)
    assert (left["details"]["side"], arrived["details"]["side"]) == ("from", "to")
    assert arrived["details"]["credentials_revoked"] == 3
    revocations = records(fleet, "device:certificate:revoked", acme)
    assert len(revocations) == 2


def test_transfer_ok_within_tenant_keeps_tenant_groups(fleet: Installation) -> None:
    acme = fleet.token("admin", "acme")
    answer = fleet.api(acme).post("/v1/devices/d1/transfer", json={"to": "acme-berlin"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["groups_left"] == []


def test_transfer_closes_held_requests(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    held = api.post(f"{EST}/simpleenroll", content=base64.b64encode(csr_for("m1")),
                    headers=PKCS10)
    assert held.status_code == 202
    add_device(api, "m1")
    assert api.post("/v1/devices/m1/transfer", json={"to": "acme"}).status_code == 200
    shown = api.get(f"/v1/enrollment-requests/{held.json()['request']}").json()
    assert (shown["status"], shown["note"]) == ("rejected", "ownership transferred")


@pytest.mark.parametrize(
    ("token_of", "device", "to", "status", "detail"),
    [
        pytest.param(("admin", "acme"), "d1", "globex", 404, "org unit 'globex' not found",
                     id="fail/target-unseen"),
        pytest.param(("admin", "globex"), "d1", "globex", 404, "device 'd1' not found",
                     id="fail/device-unseen"),
        pytest.param(("operator", None), "d1", "globex", 403, "needs the admin role",
                     id="fail/operator"),
        pytest.param(("admin", None), "d1", "acme", 409, "already belongs to 'acme'",
                     id="fail/same-org"),
        pytest.param(("admin", None), "ghost", "globex", 404, "device 'ghost' not found",
                     id="fail/unknown-device"),
        pytest.param(("admin", None), "d1", "nowhere", 404, "org unit 'nowhere' not found",
                     id="fail/unknown-org"),
    ],
)
def test_transfer_fail(fleet: Installation, token_of: tuple[str, str | None], device: str,
                       to: str, status: int, detail: str) -> None:
    role, org = token_of
    token = fleet.token(role, org)
    before = row_counts(fleet)
    seq = audit_records(fleet.api())[-1]["seq"]
    answer = fleet.api(token).post(f"/v1/devices/{device}/transfer", json={"to": to})
    assert_problem(answer, status, detail)
    assert row_counts(fleet) == before
    assert fleet.api().get("/v1/devices/d1").json()["org"] == "acme"
    new = audit_records(fleet.api(), after=seq)
    assert [(r["tag"], r["outcome"]) for r in new] == [
        ("admin:device:transferred", "failure" if status == 409 else "denied")]


@pytest.mark.parametrize("state", ["quarantined", "decommissioned"])
def test_transfer_fail_state(fleet: Installation, state: str) -> None:
    api = fleet.api()
    api.post("/v1/devices/d1/state", json={"state": "active"})
    assert api.post("/v1/devices/d1/state", json={"state": state}).status_code == 200
    answer = api.post("/v1/devices/d1/transfer", json={"to": "globex"})
    assert_problem(answer, 409, f"device 'd1' is {state}")


def test_transfer_fail_bad_body(fleet: Installation) -> None:
    api = fleet.api()
    assert_problem(api.post("/v1/devices/d1/transfer", json={}), 400)
    assert_problem(api.post("/v1/devices/d1/transfer",
                            json={"to": "globex", "claim_ttl_seconds": 5}), 400)
    assert api.get("/v1/devices/d1").json()["org"] == "acme"


def test_transfer_ok_old_owners_device_policies_detached(fleet: Installation) -> None:
    services = fleet.services
    policy = ("name: d1-extra\nversion: 1\nstatements:\n"
              "  - {sid: x, effect: allow, actions: [mqtt:publish], topics: ['acme/#']}\n")
    services.policies.write(SYSTEM, policy, owner_path="/root/acme/")
    services.policies.attach(SYSTEM, "d1-extra", AttachmentTarget(TargetKind.DEVICE, "d1"))
    before = services.policies.generation()
    answer = fleet.api().post("/v1/devices/d1/transfer", json={"to": "globex"})
    assert answer.status_code == 200, answer.text
    with services.database.reading() as uow:
        assert [a for a in uow.policy_attachments.all() if a.target.id == "d1"] == []
    assert services.policies.generation() > before  # the broker sync and PDP see it
    moved = [r for r in audit_records(fleet.api()) if r["tag"] == "admin:device:transferred"]
    assert moved[-1]["details"]["policies_detached"] == ["d1-extra"]
