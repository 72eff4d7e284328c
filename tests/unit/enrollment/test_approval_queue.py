"""The approval queue: held first contacts, approve / reject, polling (RFC 7030 §4.2.3)."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from expect import assert_problem, row_counts
from fleet import add_device, add_org_unit

from conftest import Installation
from enrollment.zerotouch import (
    common_name,
    csr_for,
    device_client,
    idevid,
    issued,
    manufacturer_ca,
    records,
    register_manufacturer,
    simpleenroll,
)
from iotiam.enrollment.first_contact import SIGNING_IN_FLIGHT
from iotiam.pki.issuing import CertificateIssuance


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """The approval queue is a use case: it runs on the memory stores."""
    return memory_installation


def pending(installation: Installation, token: str | None = None) -> list[dict[str, Any]]:
    answer = installation.api(token).get("/v1/enrollment-requests")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def held(installation: Installation, device_id: str, csr: bytes,
         source: str = "203.0.113.5") -> dict[str, Any]:
    answer = simpleenroll(device_client(installation), csr, forwarded_for=source)
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["request"]
    shown = installation.api().get(f"/v1/enrollment-requests/{request_id}").json()
    assert shown["device"] == device_id
    return dict(shown)


def test_unknown_device_held_approved_then_poll_ok(installation: Installation) -> None:
    add_org_unit(installation.api(), "acme", "tenant")
    csr = csr_for("meter-9")
    client = device_client(installation)
    before = row_counts(installation)
    first = simpleenroll(client, csr, forwarded_for="203.0.113.5")
    assert first.status_code == 202, first.text
    assert first.headers["retry-after"] == "60"
    assert row_counts(installation) == before
    (request,) = pending(installation)
    assert (request["device"], request["reason"], request["source"], request["org"]) == (
        "meter-9", "unknown-device", "203.0.113.5", None)
    assert request["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    # the same CSR again is the same request (RFC 7030 §4.2.3)
    assert simpleenroll(client, csr, forwarded_for="203.0.113.5").status_code == 202
    assert len(pending(installation)) == 1

    answer = installation.api().post(f"/v1/enrollment-requests/{request['id']}/approve",
                                     json={"type": "sensor", "org": "acme"})
    assert answer.status_code == 200, answer.text
    approved = answer.json()
    assert (approved["status"], approved["certificate"]["device"]) == ("approved", "meter-9")
    device = installation.api().get("/v1/devices/meter-9").json()
    assert (device["org"], device["type"], device["state"]) == ("acme", "sensor", "active")
    assert pending(installation) == []

    cert = issued(simpleenroll(client, csr, forwarded_for="203.0.113.5"))
    assert common_name(cert) == "meter-9"
    assert cert.serial_number == int(approved["certificate"]["serial"].replace(":", ""), 16)
    (approval,) = records(installation, "admin:enrollment:approved")
    assert (approval["outcome"], approval["org_path"], approval["details"]["request"]) == (
        "success", "/root/acme/", request["id"])
    assert records(installation, "device:enrollment:succeeded")[-1]["details"]["method"] == \
        "approval"


def test_approve_fail_twice_and_reject_after(installation: Installation) -> None:
    request = held(installation, "meter-1", csr_for("meter-1"))
    api = installation.api()
    assert api.post(f"/v1/enrollment-requests/{request['id']}/approve",
                    json={"type": "sensor"}).status_code == 200
    before = row_counts(installation)
    twice = api.post(f"/v1/enrollment-requests/{request['id']}/approve", json={"type": "sensor"})
    assert_problem(twice, 409, "is already approved")
    reject = api.post(f"/v1/enrollment-requests/{request['id']}/reject", json={})
    assert_problem(reject, 409, "is already approved")
    assert row_counts(installation) == before
    refused = records(installation, "admin:enrollment:approved")
    assert [r["outcome"] for r in refused] == ["success", "failure"]


def test_reject_then_poll_gets_403(installation: Installation) -> None:
    csr = csr_for("meter-2")
    request = held(installation, "meter-2", csr)
    answer = installation.api().post(f"/v1/enrollment-requests/{request['id']}/reject",
                                     json={"reason": "not ours"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["note"]) == ("rejected", "not ours")
    poll = simpleenroll(device_client(installation), csr, forwarded_for="203.0.113.5")
    assert_problem(poll, 403, "was rejected by an administrator")
    assert_problem(installation.api().post(
        f"/v1/enrollment-requests/{request['id']}/approve", json={"type": "sensor"}), 409,
        "is already rejected")
    assert installation.api().get("/v1/devices/meter-2").status_code == 404
    (rejection,) = records(installation, "admin:enrollment:rejected")
    assert rejection["details"]["note"] == "not ours"
    listed = installation.api().get("/v1/enrollment-requests",
                                    params={"status": "rejected"}).json()["items"]
    assert [r["id"] for r in listed] == [request["id"]]


def test_known_device_without_claim_is_challenged(installation: Installation) -> None:
    add_device(installation.api(), "meter-3")
    answer = simpleenroll(device_client(installation), csr_for("meter-3"))
    assert_problem(answer, 401, "needs a claim token")
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert pending(installation) == []


@pytest.mark.parametrize(
    ("csr_name", "status", "detail"),
    [
        pytest.param(None, 401, "needs a claim token", id="fail/nameless-csr"),
        pytest.param("no spaces please", 400, "is not valid", id="fail/bad-id"),
        pytest.param("root", 400, "is reserved", id="fail/reserved"),
    ],
)
def test_anonymous_fail_bad_names(installation: Installation, csr_name: str | None,
                                  status: int, detail: str) -> None:
    before = row_counts(installation)
    answer = simpleenroll(device_client(installation), csr_for(csr_name))
    assert_problem(answer, status, detail)
    assert row_counts(installation) == before
    assert pending(installation) == []


def test_queue_is_bounded_per_source_and_in_total(installation: Installation) -> None:
    queue = installation.services.enrollment_queue
    queue.limits = replace(queue.limits, per_source=2, total=3)
    client = device_client(installation)
    for n in range(2):
        assert simpleenroll(client, csr_for(f"flood-{n}"),
                            forwarded_for="192.0.2.1").status_code == 202
    full = simpleenroll(client, csr_for("flood-2"), forwarded_for="192.0.2.1")
    assert_problem(full, 429, "too many enrollment requests from 192.0.2.1")
    assert int(full.headers["retry-after"]) > 0
    # another source still gets in, until the total is reached
    assert simpleenroll(client, csr_for("other-0"), forwarded_for="192.0.2.2").status_code == 202
    assert_problem(simpleenroll(client, csr_for("other-1"), forwarded_for="192.0.2.3"), 429,
                   "too many enrollment requests are waiting")
    assert len(pending(installation)) == 3
    # stale requests are dropped, which frees the queue
    installation.clock.advance(queue.limits.stale_after + timedelta(minutes=1))
    assert simpleenroll(client, csr_for("later"), forwarded_for="192.0.2.1").status_code == 202
    assert [r["device"] for r in pending(installation)] == ["later"]


def test_forwarded_for_ignored_from_untrusted_peer(installation: Installation) -> None:
    answer = installation.api().post(
        "/.well-known/est/simpleenroll", content=base64.b64encode(csr_for("meter-4")),
        headers={"Content-Type": "application/pkcs10", "X-Forwarded-For": "192.0.2.99"})
    assert answer.status_code == 202
    (request,) = pending(installation)
    assert request["source"] == "testclient"


def test_tenant_scoping_of_requests(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    ca = manufacturer_ca(installation)
    register_manufacturer(installation, ca, org="acme")
    client = device_client(installation)
    # held for acme (its manufacturer, serial not in the manifest), and one for the root
    assert simpleenroll(client, csr_for("SN-7"), idevid(installation, ca, "SN-7")
                        ).status_code == 202
    held(installation, "stray-1", csr_for("stray-1"))
    acme_admin = installation.token("admin", "acme")
    globex_admin = installation.token("admin", "globex")
    (acme_request,) = pending(installation, acme_admin)
    assert acme_request["device"] == "SN-7"
    assert pending(installation, globex_admin) == []
    assert len(pending(installation)) == 2
    stray = next(r for r in pending(installation) if r["device"] == "stray-1")
    for token in (acme_admin, globex_admin):
        assert_problem(installation.api(token).get(f"/v1/enrollment-requests/{stray['id']}"),
                       404)
        assert_problem(installation.api(token).post(
            f"/v1/enrollment-requests/{stray['id']}/approve", json={"type": "sensor"}), 404)
    assert_problem(installation.api(globex_admin).post(
        f"/v1/enrollment-requests/{acme_request['id']}/reject", json={}), 404)
    # the acme admin approves into its own tenant only; its manufacturer's type applies
    assert_problem(installation.api(acme_admin).post(
        f"/v1/enrollment-requests/{acme_request['id']}/approve", json={"org": "globex"}), 404,
        "org unit 'globex' not found")
    answer = installation.api(acme_admin).post(
        f"/v1/enrollment-requests/{acme_request['id']}/approve", json={})
    assert answer.status_code == 200, answer.text
    device = api.get("/v1/devices/SN-7").json()
    assert (device["org"], device["type"]) == ("acme", "sensor")


def test_approve_fail_bad_input(installation: Installation) -> None:
    api = installation.api()
    request = held(installation, "meter-5", csr_for("meter-5"))
    path = f"/v1/enrollment-requests/{request['id']}/approve"
    operator = installation.token("operator")
    before = row_counts(installation)
    assert_problem(api.post(path, json={}), 400, "name the device type")
    assert_problem(api.post(path, json={"type": "toaster"}), 400, "unknown device type")
    assert_problem(api.post(path, json={"type": "sensor", "org": "nowhere"}), 404)
    assert_problem(api.post(path, json={"type": "sensor", "extra": 1}), 400)
    assert_problem(api.post("/v1/enrollment-requests/nope/approve", json={}), 404)
    assert_problem(installation.api(operator).post(path, json={"type": "sensor"}), 403,
                   "needs the admin role")
    assert_problem(installation.api(operator).post(
        f"/v1/enrollment-requests/{request['id']}/reject", json={}), 403)
    assert_problem(api.post(f"/v1/enrollment-requests/{request['id']}/reject",
                            json={"reason": "x" * 501}), 400)
    assert_problem(api.get("/v1/enrollment-requests", params={"status": "bogus"}), 400)
    assert row_counts(installation) == before
    # the device registered meanwhile: approval certifies it, no type or org to give
    add_device(api, "meter-5", org=None)
    assert_problem(api.post(path, json={"type": "sensor"}), 400, "already registered")
    answer = api.post(path, json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["certificate"]["device"] == "meter-5"


def test_viewer_lists_but_cannot_decide(installation: Installation) -> None:
    request = held(installation, "meter-6", csr_for("meter-6"))
    viewer = installation.token("viewer")
    assert [r["id"] for r in pending(installation, viewer)] == [request["id"]]
    assert_problem(installation.api(viewer).post(
        f"/v1/enrollment-requests/{request['id']}/approve", json={"type": "sensor"}), 403)


def test_poll_while_approval_signs_waits_then_ok(installation: Installation,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The approval commits its reservation before signing: a poll landing between the
    two is told to come back in a second, not that its certificate is gone."""
    csr = csr_for("meter-7")
    request = held(installation, "meter-7", csr)
    client = device_client(installation)
    sign = CertificateIssuance._sign
    during: list[Any] = []

    def sign_after_a_poll(self: CertificateIssuance, item: Any) -> tuple[str, str]:
        during.append(simpleenroll(client, csr, forwarded_for="203.0.113.5"))
        return sign(self, item)

    monkeypatch.setattr(CertificateIssuance, "_sign", sign_after_a_poll)
    approved = installation.api().post(f"/v1/enrollment-requests/{request['id']}/approve",
                                       json={"type": "sensor"})
    assert approved.status_code == 200, approved.text
    (poll,) = during
    assert poll.status_code == 202, poll.text
    assert poll.headers["retry-after"] == "1"
    assert "waiting for its certificate to be signed" in poll.json()["detail"]
    monkeypatch.setattr(CertificateIssuance, "_sign", sign)
    cert = issued(simpleenroll(client, csr, forwarded_for="203.0.113.5"))
    assert cert.serial_number == int(approved.json()["certificate"]["serial"].replace(":", ""), 16)


def test_poll_after_an_abandoned_reservation_conflicts(installation: Installation,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A reservation whose signing never finished is not waited for forever."""
    csr = csr_for("meter-8")
    request = held(installation, "meter-8", csr)

    def broken(self: CertificateIssuance, item: Any) -> tuple[str, str]:
        raise RuntimeError("the signer went away")

    monkeypatch.setattr(CertificateIssuance, "_sign", broken)
    failed = installation.api().post(f"/v1/enrollment-requests/{request['id']}/approve",
                                     json={"type": "sensor"})
    assert failed.status_code >= 400
    client = device_client(installation)
    assert simpleenroll(client, csr, forwarded_for="203.0.113.5").status_code == 202
    installation.clock.advance(SIGNING_IN_FLIGHT)
    assert_problem(simpleenroll(client, csr, forwarded_for="203.0.113.5"), 409,
                   "certificate is no longer valid")
