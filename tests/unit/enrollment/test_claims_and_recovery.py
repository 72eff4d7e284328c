"""Claim tokens (G8) and recovery inside the grace window, in-process on every backend."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from conftest import Installation
from iotiam.enrollment import proof
from iotiam.inventory.models import DeviceState
from iotiam.kernel import SYSTEM
from iotiam.testing import make_csr, make_key


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Claims and recovery are use cases: they run on the memory stores."""
    return memory_installation

EST = "/.well-known/est"
PKCS10 = {"Content-Type": "application/pkcs10"}


def register(inst: Installation, device_id: str, device_type: str = "sensor") -> None:
    answer = inst.api().post("/v1/devices", json={"id": device_id, "type": device_type})
    assert answer.status_code == 201, answer.text


def claim(inst: Installation, device_id: str, ttl: int = 600) -> str:
    answer = inst.api().post(f"/v1/devices/{device_id}/claims", json={"ttl_seconds": ttl})
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def enroll(inst: Installation, device_id: str, token: str, key: object = None
           ) -> tuple[int, x509.Certificate | None]:
    csr = make_csr(device_id, key or make_key(), pem=False)  # type: ignore[arg-type]
    answer = inst.api().post(f"{EST}/simpleenroll", content=base64.b64encode(csr),
                             headers=PKCS10, auth=(device_id, token))
    if answer.status_code != 200:
        return answer.status_code, None
    return 200, pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer.content))[0]


def test_claim_ok_once_then_fail(sql_installation: Installation) -> None:
    # it reads the stored table: on the database
    installation = sql_installation
    register(installation, "c-1")
    token = claim(installation, "c-1")
    status, cert = enroll(installation, "c-1", token)
    assert status == 200 and cert is not None
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "c-1"
    assert enroll(installation, "c-1", token)[0] == 401
    # stored hashed: the plaintext secret is nowhere in the table
    from sqlalchemy import select

    from iotiam.storage.tables.enrollment import claim_tokens
    with installation.services.database.engine.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(select(claim_tokens))]
    assert rows and not any(token.split("_")[-1] in "".join(r) for r in rows)


def test_claim_fail_expired(installation: Installation) -> None:
    register(installation, "c-2")
    token = claim(installation, "c-2", ttl=60)
    installation.clock.advance(timedelta(seconds=61))
    assert enroll(installation, "c-2", token)[0] == 401
    records = installation.api().get("/v1/audit/records", params={"limit": 1000}).json()["items"]
    refused = [r for r in records if r["tag"] == "device:enrollment:refused"]
    assert refused and "expired" in (refused[-1]["reason"] or "")


def _enrollment_refusals(inst: Installation) -> list[dict[str, str]]:
    records = inst.api().get("/v1/audit/records", params={"limit": 1000}).json()["items"]
    return [r for r in records if r["tag"] == "device:enrollment:refused"]


def test_claim_fail_checked_before_anything_else(installation: Installation) -> None:
    # the claim is checked in the batch's reservation, before the device's state, the
    # profile or the key: a caller without a good claim learns nothing but 401
    register(installation, "c-6")
    good = claim(installation, "c-6")
    installation.services.inventory.set_state(SYSTEM, "c-6", DeviceState.DECOMMISSIONED)
    wrong = "iotc_" + "0" * 16 + "_" + "a" * 40
    assert enroll(installation, "c-6", wrong)[0] == 401  # not 409 (decommissioned)
    assert enroll(installation, "c-6", "not-a-claim")[0] == 401
    assert enroll(installation, "no-such-device", good)[0] == 401  # not 404
    assert enroll(installation, "c-6", good)[0] == 409  # the good claim: now the state
    label = installation.api().post(f"{EST}/gateway/simpleenroll",
                                    content=base64.b64encode(make_csr("c-6", pem=False)),
                                    headers=PKCS10, auth=("c-6", wrong))
    assert label.status_code == 401  # not 403 (a server profile for a sensor)
    reasons = [r["reason"] or "" for r in _enrollment_refusals(installation)]
    assert sum("unknown claim token" in r for r in reasons) == 3
    assert sum("malformed claim token" in r for r in reasons) == 1


def test_claim_ok_after_refused_attempts(installation: Installation) -> None:
    # a refused attempt (wrong token, garbage CSR) does not burn the device's claim
    register(installation, "c-7")
    good = claim(installation, "c-7")
    assert enroll(installation, "c-7", "iotc_" + "1" * 16 + "_" + "b" * 40)[0] == 401
    garbage = installation.api().post(f"{EST}/simpleenroll", content=base64.b64encode(b"x"),
                                      headers=PKCS10, auth=("c-7", good))
    assert garbage.status_code == 400
    status, cert = enroll(installation, "c-7", good)
    assert status == 200 and cert is not None
    succeeded = [r for r in installation.api().get(
        "/v1/audit/records", params={"limit": 1000}).json()["items"]
        if r["tag"] == "device:enrollment:succeeded"]
    assert [r["actor"] for r in succeeded] == ["est:c-7"]


@pytest.mark.parametrize("ttl", [0, 29, 31 * 86400])
def test_claim_fail_bad_ttl(installation: Installation, ttl: int) -> None:
    register(installation, "c-3")
    answer = installation.api().post("/v1/devices/c-3/claims", json={"ttl_seconds": ttl})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"


def test_claim_fail_other_tenant(installation: Installation) -> None:
    api = installation.api()
    assert api.post("/v1/org-units", json={"id": "acme", "kind": "tenant",
                                            "parent": "root"}).status_code == 201
    register(installation, "c-4")
    acme = installation.api(installation.token("operator", "acme"))
    assert acme.post("/v1/devices/c-4/claims", json={}).status_code == 404


def test_claim_fail_viewer(installation: Installation) -> None:
    register(installation, "c-5")
    viewer = installation.api(installation.token("viewer"))
    assert viewer.post("/v1/devices/c-5/claims", json={}).status_code == 403


def test_batch_claims_all_or_nothing(installation: Installation) -> None:
    register(installation, "b-1")
    register(installation, "b-2")
    api = installation.api()
    bad = api.post("/v1/claims", json={"devices": ["b-1", "nope"]})
    assert bad.status_code == 404
    ok = api.post("/v1/claims", json={"devices": ["b-1", "b-2"]})
    assert ok.status_code == 201
    tokens = {i["device"]: i["token"] for i in ok.json()["items"]}
    assert enroll(installation, "b-2", tokens["b-2"])[0] == 200


def _recovery_body(cert: x509.Certificate, old_key: object, new_key: object, device: str,
                   inst: Installation, signed_offset: timedelta = timedelta(0)) -> dict[str, str]:
    csr = make_csr(device, new_key, pem=False)  # type: ignore[arg-type]
    signed_at = inst.clock.now() + signed_offset
    signature = proof.sign(old_key, proof.recovery_message(signed_at, csr))  # type: ignore[arg-type]
    return {"certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "csr": base64.b64encode(csr).decode(), "signed_at": signed_at.isoformat(),
            "signature": base64.b64encode(signature).decode()}


def _enrolled(inst: Installation, device: str) -> tuple[x509.Certificate, object]:
    register(inst, device)
    key = make_key()
    status, cert = enroll(inst, device, claim(inst, device), key)
    assert status == 200 and cert is not None
    return cert, key


def test_recovery_ok_inside_grace(installation: Installation) -> None:
    cert, key = _enrolled(installation, "r-1")
    installation.clock.advance(timedelta(days=2))  # 24 h cert, 3-day default grace
    body = _recovery_body(cert, key, make_key(), "r-1", installation)
    answer = installation.api().post("/v1/recovery", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["device"] == "r-1"
    # the same proof again (a replay): its key is now certified, refused
    assert installation.api().post("/v1/recovery", json=body).status_code == 409


def test_recovery_fail_outside_grace(installation: Installation) -> None:
    cert, key = _enrolled(installation, "r-2")
    installation.clock.advance(timedelta(days=5))
    answer = installation.api().post("/v1/recovery",
                                     json=_recovery_body(cert, key, make_key(), "r-2",
                                                         installation))
    assert answer.status_code == 401
    assert "grace window" in answer.json()["detail"]


def test_recovery_fail_wrong_key_stale_or_revoked(installation: Installation) -> None:
    cert, key = _enrolled(installation, "r-3")
    installation.clock.advance(timedelta(days=1, hours=1))
    api = installation.api()
    wrong = _recovery_body(cert, make_key(), make_key(), "r-3", installation)
    assert api.post("/v1/recovery", json=wrong).status_code == 401
    stale = _recovery_body(cert, key, make_key(), "r-3", installation,
                           signed_offset=timedelta(minutes=-10))
    assert api.post("/v1/recovery", json=stale).status_code == 401
    other_name = _recovery_body(cert, key, make_key(), "r-other", installation)
    assert api.post("/v1/recovery", json=other_name).status_code == 400
    assert api.post(f"/v1/certificates/{cert.serial_number:x}/revoke",
                    json={"reason": "keyCompromise"}).status_code == 200
    revoked = _recovery_body(cert, key, make_key(), "r-3", installation)
    assert api.post("/v1/recovery", json=revoked).status_code == 401
    certs = api.get("/v1/certificates", params={"device": "r-3"}).json()["items"]
    assert len(certs) == 1  # nothing was issued by any refused attempt


def test_recovery_ok_before_expiry_as_renewal_by_proof(installation: Installation) -> None:
    # a device whose key is in a PKCS#11 token renews this way (docs/hsm.md)
    cert, key = _enrolled(installation, "r-4")
    installation.clock.advance(timedelta(hours=16))
    answer = installation.api().post(
        "/v1/recovery", json=_recovery_body(cert, key, make_key(), "r-4", installation))
    assert answer.status_code == 200, answer.text
    records = installation.api().get("/v1/audit/records", params={"limit": 1000}
                                     ).json()["items"]
    assert [r["details"]["before_expiry"] for r in records
            if r["tag"] == "device:recovery:succeeded" and r["subject"] == "device:r-4"
            ] == [True]


def test_recovery_fail_suspended_device(installation: Installation) -> None:
    cert, key = _enrolled(installation, "r-5")
    api = installation.api()
    assert api.post("/v1/devices/r-5/state", json={"state": "suspended"}).status_code == 200
    answer = api.post("/v1/recovery",
                      json=_recovery_body(cert, key, make_key(), "r-5", installation))
    assert answer.status_code == 409, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert len(api.get("/v1/certificates", params={"device": "r-5"}).json()["items"]) == 1


def test_rotation_policy_sets_lifetime(installation: Installation) -> None:
    api = installation.api()
    answer = api.put("/v1/device-types/controller/rotation",
                     json={"certificate_lifetime_seconds": 600, "grace_seconds": 0})
    assert answer.status_code == 200, answer.text
    register(installation, "rot-1", "controller")
    status, cert = enroll(installation, "rot-1", claim(installation, "rot-1"))
    assert status == 200 and cert is not None
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc) == timedelta(seconds=600)
    tenant_admin_refused = api.put("/v1/device-types/controller/rotation",
                                   json={"certificate_lifetime_seconds": 1})
    assert tenant_admin_refused.status_code == 400


def test_request_refused_before_domain_is_audited(installation: Installation) -> None:
    api = installation.api()
    answer = api.post("/v1/devices", content=b"{not json", headers={
        "Content-Type": "application/json"})
    assert answer.status_code == 400
    records = api.get("/v1/audit/records", params={"limit": 1000}).json()["items"]
    refused = [r for r in records if r["tag"] == "admin:request:refused"]
    assert refused and refused[-1]["subject"] == "POST /v1/devices"
    assert refused[-1]["actor"].startswith("token:")


def test_server_profile_fail_for_sensor_operator(installation: Installation) -> None:
    register(installation, "p-1")
    operator = installation.api(installation.token("operator"))
    csr = make_csr("p-1").decode()
    refused = operator.post("/v1/certificates", json={"device": "p-1", "csr": csr,
                                                      "profile": "broker-server"})
    assert refused.status_code == 403
    label = installation.api().post(f"{EST}/gateway/simpleenroll",
                                    content=base64.b64encode(make_csr("p-1", pem=False)),
                                    headers=PKCS10, auth=("p-1", claim(installation, "p-1")))
    assert label.status_code == 403
    admin = installation.api().post("/v1/certificates", json={"device": "p-1", "csr": csr,
                                                              "profile": "broker-server"})
    assert admin.status_code == 201


def test_inventory_counts_never_rotated_keys(installation: Installation) -> None:
    """Renewing onto the same key keeps the certificate fresh, not the key."""
    api = installation.api()
    assert api.put("/v1/device-types/controller/rotation",
                   json={"max_credential_age_seconds": 2 * 86400}).status_code == 200
    register(installation, "nr-same", "controller")
    register(installation, "nr-fresh", "controller")
    same_key, fresh = make_key(), make_key()
    for device, key in (("nr-same", same_key), ("nr-fresh", fresh)):
        csr = make_csr(device, key).decode()
        assert api.post("/v1/certificates", json={"device": device, "csr": csr}
                        ).status_code == 201
    for _ in range(3):  # daily renewals: one device keeps its key, the other rotates
        installation.clock.advance(timedelta(hours=20))
        assert api.post("/v1/certificates", json={
            "device": "nr-same", "csr": make_csr("nr-same", same_key).decode()}
        ).status_code == 201
        assert api.post("/v1/certificates", json={
            "device": "nr-fresh", "csr": make_csr("nr-fresh").decode()}).status_code == 201
    # 60 h later the kept key is older than the 2-day maximum, the rotated one is not
    report = api.get("/v1/inventory", params={"expiring_days": 0}).json()
    assert report["never_rotated"] == 1
    assert report["by_credential_status"]["active"] == 2
