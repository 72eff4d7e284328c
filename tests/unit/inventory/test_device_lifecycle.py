"""Device lifecycle: every edge of the state machine works, every other move is a 409,
and decommissioning takes every live credential away."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from expect import assert_problem, audit_records, row_counts
from fastapi.testclient import TestClient
from fleet import add_device, issue, revoke

from conftest import Installation
from iotiam.errors import Conflict
from iotiam.inventory.models import DeviceState
from iotiam.inventory.ports import visible_device
from iotiam.kernel import SYSTEM
from iotiam.testing import make_csr


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """The lifecycle is a use case: it runs on the memory stores."""
    return memory_installation

STATES = ["pending", "active", "quarantined", "suspended", "decommissioned"]
ALLOWED = {
    "pending": {"active", "decommissioned"},
    "active": {"quarantined", "suspended", "decommissioned"},
    "quarantined": {"active", "suspended", "decommissioned"},
    "suspended": {"active", "quarantined", "decommissioned"},
    "decommissioned": set(),
}
#: how to bring a freshly registered (pending) device into each state
ROUTE = {
    "pending": [],
    "active": ["active"],
    "quarantined": ["active", "quarantined"],
    "suspended": ["active", "suspended"],
    "decommissioned": ["decommissioned"],
}


def device_in(api: TestClient, device_id: str, state: str) -> None:
    add_device(api, device_id)
    for step in ROUTE[state]:
        answer = api.post(f"/v1/devices/{device_id}/state", json={"state": step})
        assert answer.status_code == 200, answer.text
    assert api.get(f"/v1/devices/{device_id}").json()["state"] == state


@pytest.mark.parametrize("source", [s for s in STATES if ALLOWED[s]])
def test_transition_ok(installation: Installation, source: str) -> None:
    api = installation.api()
    for target in sorted(ALLOWED[source]):
        device_id = f"{source}-to-{target}"
        device_in(api, device_id, source)
        installation.clock.advance(timedelta(minutes=1))
        answer = api.post(f"/v1/devices/{device_id}/state",
                          json={"state": target, "reason": "maintenance"})
        assert answer.status_code == 200, (source, target, answer.text)
        assert answer.json()["state"] == target
        shown = api.get(f"/v1/devices/{device_id}").json()
        assert shown["state"] == target
        assert shown["updated_at"] == installation.clock.now().isoformat()
        record = audit_records(api)[-1]
        assert (record["tag"], record["subject"], record["outcome"]) == (
            "admin:device:state-changed", f"device:{device_id}", "success")
        assert record["details"] == {"from": source, "to": target, "reason": "maintenance",
                                     "credentials_revoked": 0}


@pytest.mark.parametrize("source", STATES)
def test_transition_fail(installation: Installation, source: str) -> None:
    api = installation.api()
    for target in sorted(set(STATES) - ALLOWED[source]):
        device_id = f"{source}-to-{target}"
        device_in(api, device_id, source)
        before = row_counts(installation)
        answer = api.post(f"/v1/devices/{device_id}/state", json={"state": target})
        allowed = ", ".join(sorted(ALLOWED[source])) or "none (final state)"
        assert_problem(answer, 409, f"a device cannot go from {source} to {target}; "
                                    f"allowed from {source}: {allowed}")
        assert api.get(f"/v1/devices/{device_id}").json()["state"] == source
        assert row_counts(installation) == before
        record = audit_records(api)[-1]
        assert (record["tag"], record["outcome"]) == ("admin:device:state-changed", "failure")


def test_transition_fail_unknown_device(installation: Installation) -> None:
    answer = installation.api().post("/v1/devices/ghost/state", json={"state": "active"})
    assert_problem(answer, 404, "device 'ghost' not found")


def test_transition_fail_viewer(installation: Installation) -> None:
    add_device(installation.api(), "dev-1")
    answer = installation.api(installation.token("viewer")).post(
        "/v1/devices/dev-1/state", json={"state": "active"})
    assert_problem(answer, 403, "changing device state needs the operator role")
    assert installation.api().get("/v1/devices/dev-1").json()["state"] == "pending"


def test_lifecycle_port_ok(installation: Installation) -> None:
    """The ``DeviceLifecycle`` other domains move devices with (response's quarantine
    and its lift) writes in the caller's transaction and leaves the audit record to it."""
    api = installation.api()
    device_in(api, "lent", "suspended")
    inventory, database = installation.services.inventory, installation.services.database
    before = len(audit_records(api))
    installation.clock.advance(timedelta(minutes=1))
    with database() as uow:
        inventory.quarantine(uow, visible_device(uow.devices, SYSTEM, "lent", for_update=True))
    shown = api.get("/v1/devices/lent").json()
    assert (shown["state"], shown["updated_at"]) == (
        "quarantined", installation.clock.now().isoformat())
    with database() as uow:
        inventory.restore(uow, visible_device(uow.devices, SYSTEM, "lent", for_update=True),
                          DeviceState.SUSPENDED)
    assert api.get("/v1/devices/lent").json()["state"] == "suspended"
    assert len(audit_records(api)) == before


def test_lifecycle_port_fail_decommissioned(installation: Installation) -> None:
    api = installation.api()
    device_in(api, "gone", "decommissioned")
    inventory, database = installation.services.inventory, installation.services.database
    before = row_counts(installation)
    with pytest.raises(Conflict, match="cannot go from decommissioned to quarantined"), \
            database() as uow:
        inventory.quarantine(uow, visible_device(uow.devices, SYSTEM, "gone", for_update=True))
    assert api.get("/v1/devices/gone").json()["state"] == "decommissioned"
    assert row_counts(installation) == before


def test_first_certificate_activates_pending_device(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    issue(api, "dev-1")
    assert api.get("/v1/devices/dev-1").json()["state"] == "active"


@pytest.mark.parametrize("state", ["quarantined", "suspended", "decommissioned"])
def test_issue_fail_device_out_of_service(installation: Installation, state: str) -> None:
    api = installation.api()
    device_in(api, "dev-1", state)
    before = row_counts(installation)
    answer = api.post("/v1/certificates", json={"device": "dev-1",
                                                "csr": make_csr("dev-1").decode()})
    assert_problem(answer, 409, f"device 'dev-1' is {state}; certificates are issued only "
                                "to pending or active devices")
    assert row_counts(installation) == before
    assert api.get("/v1/devices/dev-1").json()["state"] == state


def crl_serials(installation: Installation) -> set[int]:
    issuer = installation.services.pki.cas.issuing_id
    der = installation.public().get(f"/crl/{issuer}.crl").content
    return {entry.serial_number for entry in x509.load_der_x509_crl(der)}


def test_decommission_revokes_every_live_certificate(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    old = issue(api, "dev-1")["serial"]
    revoke(api, old, "superseded")
    installation.clock.advance(timedelta(hours=1))
    live = [issue(api, "dev-1")["serial"], issue(api, "dev-1")["serial"]]
    installation.clock.advance(timedelta(hours=1))
    answer = api.post("/v1/devices/dev-1/state",
                      json={"state": "decommissioned", "reason": "retired"})
    assert answer.status_code == 200, answer.text
    decommissioned_at = installation.clock.now().isoformat()
    for serial in live:
        shown = api.get(f"/v1/certificates/{serial}").json()
        assert (shown["status"], shown["revocation_reason"], shown["revoked_at"]) == (
            "revoked", "cessationOfOperation", decommissioned_at)
    # an earlier revocation is final: neither its time nor its reason change
    earlier = api.get(f"/v1/certificates/{old}").json()
    assert (earlier["revocation_reason"], earlier["revoked_at"]) == (
        "superseded", "2026-03-01T12:00:00+00:00")
    assert crl_serials(installation) == {int(s, 16) for s in [old, *live]}
    records = audit_records(api)
    revoked = [r for r in records if r["tag"] == "device:certificate:revoked"]
    assert [r["details"]["serial"] for r in revoked[-2:]] == live
    changed = [r for r in records if r["tag"] == "admin:device:state-changed"][-1]
    assert changed["details"]["credentials_revoked"] == 2
    assert changed["seq"] > revoked[-1]["seq"]


def ocsp_status(installation: Installation, issued: dict[str, str]) -> ocsp.OCSPCertStatus:
    """Ask the public OCSP responder (RFC 6960, POST) about an issued certificate."""
    certificate = x509.load_pem_x509_certificate(issued["pem"].encode())
    issuer = x509.load_pem_x509_certificates(issued["chain_pem"].encode())[0]
    request = ocsp.OCSPRequestBuilder().add_certificate(
        certificate, issuer, hashes.SHA1()).build()
    answer = installation.public().post(
        "/ocsp", content=request.public_bytes(serialization.Encoding.DER),
        headers={"content-type": "application/ocsp-request"})
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return response.certificate_status


def test_decommission_reflected_by_ocsp_at_once(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    issued = issue(api, "dev-1")
    assert ocsp_status(installation, issued) is ocsp.OCSPCertStatus.GOOD
    api.post("/v1/devices/dev-1/state", json={"state": "decommissioned"})
    assert ocsp_status(installation, issued) is ocsp.OCSPCertStatus.REVOKED


def test_decommission_skips_expired_certificates(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    expired = issue(api, "dev-1")["serial"]
    installation.clock.advance(timedelta(days=2))
    current = issue(api, "dev-1")["serial"]
    api.post("/v1/devices/dev-1/state", json={"state": "decommissioned"})
    assert api.get(f"/v1/certificates/{expired}").json()["status"] == "issued"
    assert api.get(f"/v1/certificates/{current}").json()["status"] == "revoked"
    assert audit_records(api)[-1]["details"]["credentials_revoked"] == 1


def test_decommission_ok_without_certificates(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    answer = api.post("/v1/devices/dev-1/state", json={"state": "decommissioned"})
    assert answer.json()["state"] == "decommissioned"
    assert audit_records(api)[-1]["details"]["credentials_revoked"] == 0


def test_revoke_device_certificates_ok(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    serials = {issue(api, "dev-1")["serial"] for _ in range(2)}
    answer = api.post("/v1/devices/dev-1/revoke-certificates", json={"reason": "keyCompromise"})
    assert answer.status_code == 200, answer.text
    assert {c["serial"] for c in answer.json()["revoked"]} == serials
    assert api.get("/v1/devices/dev-1").json()["state"] == "active"
    again = api.post("/v1/devices/dev-1/revoke-certificates", json={})
    assert again.json() == {"revoked": []}
