"""G10 through the admin API: bad input gets a clear 4xx problem, stores nothing, and the
refusal is audited (G7). Never a 5xx, never a traceback."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from expect import assert_problem, assert_refused, audit_records, row_counts, snapshot
from fleet import add_device, issue, revoke

from conftest import Installation
from iotiam.testing import make_csr, make_key

ISSUE_REFUSED = "device:certificate:refused"
REVOKE_REFUSED = "device:certificate:revocation-refused"
REGISTRATION_REFUSED = "admin:device:registration-refused"
NOT_A_CSR = "not a PEM or DER PKCS#10 certificate request"


@pytest.fixture
def device(installation: Installation) -> str:
    """A registered sensor, ``dev-1``."""
    add_device(installation.api(), "dev-1")
    return "dev-1"


def post_csr(installation: Installation, csr: str | bytes, device_id: str = "dev-1",
             token: str | None = None, **extra: Any) -> Any:
    text = csr.decode() if isinstance(csr, bytes) else csr
    return installation.api(token).post(
        "/v1/certificates", json={"device": device_id, "csr": text, **extra}
    )


# -- certificate requests --------------------------------------------------------------


def test_issue_fail_broken_signature(installation: Installation, device: str) -> None:
    der = make_csr(device, pem=False)
    tampered = der[:-1] + bytes([der[-1] ^ 0x01])  # last byte of the ECDSA signature
    before = snapshot(installation)
    answer = post_csr(installation, base64.b64encode(tampered))
    assert_refused(installation, before, answer, 400,
                   detail="CSR signature does not verify (no proof of possession)",
                   tag=ISSUE_REFUSED, outcome="failure")


def test_issue_fail_asks_for_ca(installation: Installation, device: str) -> None:
    before = snapshot(installation)
    answer = post_csr(installation, make_csr(device, ca=True))
    assert_refused(installation, before, answer, 400,
                   detail="CSR asks for a CA certificate (basicConstraints cA=TRUE)",
                   tag=ISSUE_REFUSED, outcome="failure")


def test_issue_fail_names_another_device_in_cn(installation: Installation, device: str) -> None:
    add_device(installation.api(), "dev-2")
    before = snapshot(installation)
    answer = post_csr(installation, make_csr("dev-2"))
    record = assert_refused(installation, before, answer, 400,
                            detail="CSR asks for name 'dev-2', this device is 'dev-1'",
                            tag=ISSUE_REFUSED, outcome="failure")
    assert record["subject"] == "device:dev-1"


@pytest.mark.parametrize(
    ("san", "shown"),
    [
        ({"uris": ("spiffe://iotiam.local/device/dev-2",)},
         "URI:'spiffe://iotiam.local/device/dev-2'"),
        ({"dns_names": ("dev-2.devices.example",)}, "DNS:'dev-2.devices.example'"),
    ],
    ids=["uri", "dns"],
)
def test_issue_fail_names_another_device_in_san(
    installation: Installation, device: str, san: dict[str, Any], shown: str
) -> None:
    before = snapshot(installation)
    answer = post_csr(installation, make_csr(device, **san))
    assert_refused(installation, before, answer, 400,
                   detail=f"CSR asks for subjectAltName {shown}, which this device does not have",
                   tag=ISSUE_REFUSED, outcome="failure")


def test_issue_fail_rsa_1024(installation: Installation, device: str) -> None:
    before = snapshot(installation)
    answer = post_csr(installation, make_csr(device, make_key("rsa-1024")))
    assert_refused(installation, before, answer, 400, detail="RSA-1024 keys are too weak",
                   tag=ISSUE_REFUSED, outcome="failure")


@pytest.mark.parametrize(
    "csr",
    [
        "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n",
        base64.b64encode(b"\x30\x82\x01\x00 definitely not DER").decode(),
        "hello, I am a certificate request!",
        "",
    ],
    ids=["garbage-pem", "garbage-der", "not-base64", "empty"],
)
def test_issue_fail_garbage_csr(installation: Installation, device: str, csr: str) -> None:
    before = snapshot(installation)
    answer = post_csr(installation, csr)
    assert_refused(installation, before, answer, 400, detail=NOT_A_CSR, tag=ISSUE_REFUSED,
                   outcome="failure")


def test_issue_fail_certificate_instead_of_csr(installation: Installation, device: str) -> None:
    ca_pem = installation.api().get("/v1/ca").json()["issuing"]["pem"]
    before = snapshot(installation)
    answer = post_csr(installation, ca_pem)
    assert_refused(installation, before, answer, 400, detail=NOT_A_CSR, tag=ISSUE_REFUSED,
                   outcome="failure")


def test_issue_fail_csr_over_16k(installation: Installation, device: str) -> None:
    # under the 32 KiB field limit, so the PKI itself sees and refuses it
    bloated = "-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 20_000
    before = snapshot(installation)
    answer = post_csr(installation, bloated)
    record = assert_refused(installation, before, answer, 413,
                          detail="at most 16384 are accepted", tag=ISSUE_REFUSED,
                          outcome="failure")
    assert record["reason"].startswith("certificate request is ")


def test_issue_fail_unknown_device(installation: Installation) -> None:
    before = snapshot(installation)
    answer = post_csr(installation, make_csr("ghost"), device_id="ghost")
    assert_refused(installation, before, answer, 404, detail="device 'ghost' not found",
                   tag=ISSUE_REFUSED, outcome="denied")


def test_issue_fail_unknown_profile(installation: Installation, device: str) -> None:
    before = snapshot(installation)
    answer = post_csr(installation, make_csr(device), profile="toaster")
    assert_refused(installation, before, answer, 400,
                   detail="unknown certificate profile 'toaster'; use one of: broker-server, "
                   "device, gateway", tag=ISSUE_REFUSED, outcome="failure")


def test_issue_fail_decommissioned_device(installation: Installation, device: str) -> None:
    api = installation.api()
    assert api.post(f"/v1/devices/{device}/state",
                    json={"state": "decommissioned"}).status_code == 200
    before = snapshot(installation)
    answer = post_csr(installation, make_csr(device))
    assert_refused(installation, before, answer, 409, detail="is decommissioned",
                   tag=ISSUE_REFUSED, outcome="failure")


# -- roles -----------------------------------------------------------------------------


def test_issue_fail_viewer(installation: Installation, device: str) -> None:
    viewer = installation.token("viewer")
    before = snapshot(installation)
    answer = post_csr(installation, make_csr(device), token=viewer)
    record = assert_refused(installation, before, answer, 403,
                            detail="issuing certificates needs the operator role",
                            tag=ISSUE_REFUSED, outcome="denied")
    assert record["actor"].startswith("token:viewer-")


def test_register_fail_viewer(installation: Installation) -> None:
    viewer = installation.token("viewer")
    before = snapshot(installation)
    answer = installation.api(viewer).post("/v1/devices", json={"id": "dev-9", "type": "sensor"})
    assert_refused(installation, before, answer, 403,
                   detail="registering devices needs the operator role; this token is viewer",
                   tag=REGISTRATION_REFUSED, outcome="denied")


def test_revoke_fail_viewer(installation: Installation, device: str) -> None:
    serial = issue(installation.api(), device)["serial"]
    viewer = installation.token("viewer")
    before = snapshot(installation)
    answer = installation.api(viewer).post(f"/v1/certificates/{serial}/revoke", json={})
    assert_refused(installation, before, answer, 403,
                   detail="revoking certificates needs the operator role",
                   tag=REVOKE_REFUSED, outcome="denied")
    assert installation.api().get(f"/v1/certificates/{serial}").json()["status"] == "issued"


def test_revoke_device_fail_viewer(installation: Installation, device: str) -> None:
    serial = issue(installation.api(), device)["serial"]
    viewer = installation.token("viewer")
    before = snapshot(installation)
    answer = installation.api(viewer).post(f"/v1/devices/{device}/revoke-certificates",
                                           json={})
    assert_refused(installation, before, answer, 403,
                   detail="revoking certificates needs the operator role",
                   tag=REVOKE_REFUSED, outcome="denied")
    assert installation.api().get(f"/v1/certificates/{serial}").json()["status"] == "issued"


# -- revocation ------------------------------------------------------------------------


def test_revoke_fail_twice(installation: Installation, device: str) -> None:
    api = installation.api()
    serial = issue(api, device)["serial"]
    first = revoke(api, serial, "keyCompromise")
    installation.clock.advance(timedelta(minutes=10))
    before = snapshot(installation)
    answer = api.post(f"/v1/certificates/{serial}/revoke", json={"reason": "superseded"})
    assert_refused(installation, before, answer, 409,
                   detail="was already revoked (2026-03-01T12:00:00+00:00, keyCompromise); "
                   "revocation is final", tag=REVOKE_REFUSED, outcome="failure")
    final = api.get(f"/v1/certificates/{serial}").json()
    assert final["status"] == "revoked"
    assert final["revoked_at"] == first["revoked_at"] == "2026-03-01T12:00:00+00:00"
    assert final["revocation_reason"] == "keyCompromise"


@pytest.mark.parametrize("reason", ["certificateHold", "removeFromCRL", "because", "6"])
def test_revoke_fail_unknown_reason(installation: Installation, device: str,
                                    reason: str) -> None:
    api = installation.api()
    serial = issue(api, device)["serial"]
    before = snapshot(installation)
    answer = api.post(f"/v1/certificates/{serial}/revoke", json={"reason": reason})
    assert_refused(installation, before, answer, 400,
                   detail=f"unknown revocation reason {reason!r}", tag=REVOKE_REFUSED,
                   outcome="failure")
    assert api.get(f"/v1/certificates/{serial}").json()["status"] == "issued"


@pytest.mark.parametrize("serial", ["not-hex", "0x", "ab" * 21, "12 34"])
def test_revoke_fail_malformed_serial(installation: Installation, serial: str) -> None:
    before = snapshot(installation)
    answer = installation.api().post(f"/v1/certificates/{serial}/revoke", json={})
    assert_refused(installation, before, answer, 400, detail="is not a certificate serial",
                   tag=REVOKE_REFUSED, outcome="failure")


def test_revoke_fail_unknown_serial(installation: Installation) -> None:
    before = snapshot(installation)
    answer = installation.api().post("/v1/certificates/0badc0ffee/revoke", json={})
    assert_refused(installation, before, answer, 404, detail="certificate 0badc0ffee not found",
                   tag=REVOKE_REFUSED, outcome="denied")


# -- malformed requests ----------------------------------------------------------------


MALFORMED = [
    ("post", "/v1/devices", {"content": b'{"id": "dev-9", "type": ',
                             "headers": {"content-type": "application/json"}}, "JSON"),
    ("post", "/v1/devices", {"json": {"id": "dev-9", "type": "sensor", "colour": "red"}},
     "colour"),
    ("post", "/v1/devices", {"json": {"id": 9, "type": "sensor"}}, "id"),
    ("post", "/v1/devices", {"json": {"id": "dev-9", "type": "sensor",
                                      "attributes": {"fw": 3}}}, "attributes.fw"),
    ("post", "/v1/devices", {"json": ["dev-9", "sensor"]}, "body"),
    ("post", "/v1/devices", {"json": {"id": "dev-9"}}, "type"),
    ("post", "/v1/devices", {"json": {"id": "d" * 129, "type": "sensor"}}, "id"),
    ("post", "/v1/certificates", {"json": {"device": "dev-9"}}, "csr"),
    ("post", "/v1/certificates", {"json": {"device": "dev-9", "csr": ["x"]}}, "csr"),
    ("post", "/v1/certificates", {"json": {"device": "dev-9", "csr": "A" * 40_000}}, "csr"),
    ("post", "/v1/devices/dev-9/state", {"json": {"state": "exploded"}}, "state"),
    ("post", "/v1/tokens", {"json": {"name": "t", "role": "superuser"}}, "role"),
    ("post", "/v1/tokens", {"json": {"name": "t", "role": "viewer", "ttl_seconds": -5}},
     "ttl_seconds"),
    ("post", "/v1/org-units", {"json": {"id": "x", "kind": "galaxy", "parent": "root"}},
     "kind"),
    ("post", "/v1/devices/import", {"json": {"rows": "dev-9,sensor"}}, "rows"),
    ("post", "/v1/devices/import", {"json": {"rows": [{"row": 1, "data": "dev-9"}]}},
     "rows.0.data"),
    ("post", "/v1/certificates/ab/revoke", {"json": {"reason": 1}}, "reason"),
    ("get", "/v1/devices?limit=abc", {}, "query.limit"),
    ("get", "/v1/devices?limit=0", {}, "query.limit"),
    ("get", "/v1/devices?state=bogus", {}, "query.state"),
    ("get", "/v1/inventory?expiring_days=-1", {}, "query.expiring_days"),
    ("get", "/v1/audit/records?after=-1", {}, "query.after"),
    ("get", "/v1/audit/export?format=xml", {}, "query.format"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "field"), MALFORMED,
                         ids=[f"{m}-{p.split('?')[0]}-{f}" for m, p, _, f in MALFORMED])
def test_request_fail_malformed(installation: Installation, method: str, path: str,
                                kwargs: dict[str, Any], field: str) -> None:
    add_device(installation.api(), "dev-9")
    before = row_counts(installation)
    answer = getattr(installation.api(), method)(path, **kwargs)
    body = assert_problem(answer, 400)
    assert body["type"] == "urn:iotiam:problem:invalid-input"
    assert field in body["detail"]
    assert all({"field", "message"} <= e.keys() for e in body["errors"])
    assert row_counts(installation) == before


# -- oversized and hostile bodies ------------------------------------------------------


def test_body_fail_too_large_declared(installation: Installation) -> None:
    before = row_counts(installation)
    answer = installation.api().post(
        "/v1/devices", content=b"{" + b" " * (3 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    body = assert_problem(answer, 413, "request body exceeds 1048576 bytes")
    assert body["type"] == "urn:iotiam:problem:payload-too-large"
    assert row_counts(installation) == before


def test_body_fail_too_large_streamed(installation: Installation) -> None:
    """No Content-Length (chunked): the limit is enforced while the body streams in."""

    def chunks() -> Iterator[bytes]:
        yield b'{"id": "dev-9", "type": "sensor", "site": "'
        for _ in range(4):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    before = row_counts(installation)
    answer = installation.api().post("/v1/devices", content=chunks(),
                                     headers={"content-type": "application/json"})
    body = assert_problem(answer, 413, "request body exceeds 1048576 bytes")
    assert body["type"] == "urn:iotiam:problem:payload-too-large"
    assert row_counts(installation) == before


def test_ocsp_fail_too_large_streamed(installation: Installation) -> None:
    answer = installation.public().post("/ocsp", content=iter([b"0" * 50_000] * 3),
                                        headers={"content-type": "application/ocsp-request"})
    assert_problem(answer, 413, "request body exceeds 65536 bytes")


def nul_refusal(installation: Installation, not_found: str) -> tuple[int, str, str]:
    """Status, detail and audit outcome for a NUL byte in a looked-up id: SQLite finds no
    such object; PostgreSQL cannot hold a NUL at all. Both are a clean 4xx."""
    if installation.services.database.is_sqlite:
        return 404, not_found, "denied"
    return 400, "PostgreSQL text fields cannot contain NUL (0x00) bytes", "failure"


def test_register_fail_nul_byte_in_org(installation: Installation) -> None:
    before = snapshot(installation)
    answer = installation.api().post("/v1/devices", json={"id": "dev-9", "type": "sensor",
                                                          "org": "ac\u0000me"})
    status, detail, outcome = nul_refusal(installation, "org unit 'ac\\x00me' not found")
    assert_refused(installation, before, answer, status, detail=detail,
                   tag=REGISTRATION_REFUSED, outcome=outcome)


def test_state_fail_nul_byte_in_device_id(installation: Installation) -> None:
    before = snapshot(installation)
    answer = installation.api().post("/v1/devices/dev%00one/state", json={"state": "active"})
    status, detail, outcome = nul_refusal(installation, "device 'dev\\x00one' not found")
    record = assert_refused(installation, before, answer, status, detail=detail,
                            tag="admin:device:state-changed", outcome=outcome)
    # the audit subject stays storable: the NUL is escaped
    assert record["subject"] == "device:dev\\x00one"


def test_state_fail_huge_device_id(installation: Installation) -> None:
    device_id = "x" * 3000
    before = snapshot(installation)
    answer = installation.api().post(f"/v1/devices/{device_id}/state", json={"state": "active"})
    record = assert_refused(installation, before, answer, 404, detail="not found",
                            tag="admin:device:state-changed", outcome="denied")
    # the audit subject is capped at the column size
    assert record["subject"] == ("device:" + device_id)[:1024]


def test_group_member_fail_long_group_id(installation: Installation) -> None:
    add_device(installation.api(), "dev-9")
    before = snapshot(installation)
    answer = installation.api().post(f"/v1/groups/{'g' * 3000}/members", json={"device": "dev-9"})
    assert_refused(installation, before, answer, 404, detail="not found",
                   tag="admin:group:member-added", outcome="denied")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/tokens", {"name": "nul\u0000name", "role": "viewer"}),
        ("/v1/groups", {"id": "g1", "name": "nul\u0000name"}),
        ("/v1/org-units", {"id": "t1", "kind": "tenant", "parent": "root",
                           "name": "nul\u0000name"}),
    ],
    ids=["token", "group", "org-unit"],
)
def test_create_nul_byte_in_name_never_5xx(installation: Installation, path: str,
                                           body: dict[str, Any]) -> None:
    """SQLite stores a NUL in free text, PostgreSQL cannot: a 201 or a clean 400."""
    before = row_counts(installation)
    answer = installation.api().post(path, json=body)
    if answer.status_code == 201:
        assert installation.services.database.is_sqlite
    else:
        assert_problem(answer, 400, "cannot contain NUL")
        assert row_counts(installation) == before


def test_device_type_fail_unknown_profile(installation: Installation) -> None:
    before = snapshot(installation)
    answer = installation.api().post("/v1/device-types", json={
        "name": "kettle", "device_class": "sensor", "certificate_profile": "toaster" * 20})
    assert_refused(installation, before, answer, 400, detail="unknown certificate profile",
                   tag="admin:device-type:created", outcome="failure")
    names = [t["name"] for t in installation.api().get("/v1/device-types").json()["items"]]
    assert "kettle" not in names


def test_refusals_leave_chain_verifiable(installation: Installation, device: str) -> None:
    """Many refusals in a row are each one link of a chain that still verifies."""
    post_csr(installation, make_csr(device, ca=True))
    post_csr(installation, "garbage")
    installation.api().post("/v1/certificates/ff/revoke", json={})
    refusals = [r for r in audit_records(installation.api()) if r["outcome"] != "success"]
    assert len(refusals) == 3
    assert installation.api().get("/v1/audit/verify").json()["ok"] is True
