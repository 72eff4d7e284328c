"""Revocation by set over the API: selection per field, dry run, G3 after the call,
batched audit, G10 refusals, tenant scope."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient
from fleet import add_org_unit, issue
from sqlalchemy import select
from tokens.oauthkit import DeviceIdentity, OAuthKit

from conftest import Installation
from iotiam.audit.models import AuditTag
from iotiam.kernel import SYSTEM
from iotiam.policy.actions import PUBLISH
from iotiam.storage.tables.attestation import device_firmware
from iotiam.storage.tables.audit import audit_records
from iotiam.testing import make_key

SETS = "/v1/revocations/sets"

#: device id → (attributes, site)
FLEET: dict[str, tuple[dict[str, str], str | None]] = {
    "acme-a1": ({"manufacturer": "acme", "batch": "2026-07"}, "berlin"),
    "acme-a2": ({"manufacturer": "acme", "batch": "2026-07"}, "paris"),
    "acme-b1": ({"manufacturer": "acme", "batch": "2026-08"}, "berlin"),
    "other-1": ({"manufacturer": "globex", "batch": "2026-07"}, "berlin"),
}


def build(api: TestClient) -> dict[str, str]:
    """The fleet, each device with a certificate; serials by device."""
    serials = {}
    for device_id, (attributes, site) in FLEET.items():
        answer = api.post("/v1/devices", json={"id": device_id, "type": "sensor",
                                               "site": site, "attributes": attributes})
        assert answer.status_code == 201, answer.text
        serials[device_id] = issue(api, device_id)["serial"]
    return serials


def revoke_set(api: TestClient, where: str, **extra: Any) -> dict[str, Any]:
    answer = api.post(SETS, json={"where": where, **extra})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def ocsp_status(installation: Installation, serial: str) -> ocsp.OCSPCertStatus:
    pki = installation.services.pki
    cert = x509.load_pem_x509_certificate(
        pki.get_certificate(SYSTEM, serial).pem.encode())  # type: ignore[union-attr]
    issuer = x509.load_pem_x509_certificate(pki.cas.chain_pem().split(
        "-----END CERTIFICATE-----")[0].encode() + b"-----END CERTIFICATE-----\n")
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(pki.ocsp_response(
        request.public_bytes(serialization.Encoding.DER)))
    return answer.certificate_status


def allowed(installation: Installation, device_id: str) -> bool:
    services = installation.services
    services.changes.deliver_pending()
    subject = services.subjects.subject_of(services.inventory.get_device(SYSTEM, device_id))
    return services.decisions.decide(subject, PUBLISH, f"devices/{device_id}/up").allowed


SELECTIONS = {
    "ok/manufacturer-and-batch": ("manufacturer=acme and batch=2026-07",
                                  {"acme-a1", "acme-a2"}),
    "ok/manufacturer": ("manufacturer=acme", {"acme-a1", "acme-a2", "acme-b1"}),
    "ok/batch": ("batch=2026-07", {"acme-a1", "acme-a2", "other-1"}),
    "ok/site": ("site=berlin", {"acme-a1", "acme-b1", "other-1"}),
    "ok/type": ("type=sensor", set(FLEET)),
    "ok/site-and-batch": ("site=berlin and batch=2026-08", {"acme-b1"}),
    "ok/empty-match": ("manufacturer=nobody", set()),
    "ok/unknown-issuer": ("issuer=ab:cd", set()),
}


@pytest.mark.parametrize(("where", "selected"), SELECTIONS.values(), ids=SELECTIONS.keys())
def test_dry_run_selects(installation: Installation, where: str, selected: set[str]) -> None:
    api = installation.api()
    build(api)
    report = revoke_set(api, where, dry_run=True)
    assert report["dry_run"] is True
    assert report["devices"] == len(selected)
    assert set(report["sample"]) == selected
    assert report["certificates"] == len(selected)
    assert report["psks"] == report["oauth_clients"] == 0
    assert report["devices_sha256"] == hashlib.sha256(
        "".join(f"{d}\n" for d in sorted(selected)).encode()).hexdigest()
    # nothing changed
    for device_id in FLEET:
        assert installation.services.pki.list_certificates(
            SYSTEM, device_id=device_id)[0].status == "issued"


def test_dry_run_counts_psks_and_clients(installation: Installation) -> None:
    api = installation.api()
    build(api)
    assert api.post("/v1/devices/acme-a1/psk", json={}).status_code == 201
    assert api.post("/v1/oauth/clients", json={"device": "acme-a2"}).status_code == 201
    report = revoke_set(api, "manufacturer=acme and batch=2026-07", dry_run=True)
    assert (report["devices"], report["certificates"], report["psks"],
            report["oauth_clients"]) == (2, 2, 1, 1)
    # no managed broker in this installation: the sessions are not known, not 0
    assert report["sessions"] is None


def acme_client(kit: OAuthKit, device_id: str) -> DeviceIdentity:
    """An acme 2026-07 device with a certificate and an OAuth client."""
    answer = kit.api.post("/v1/devices", json={
        "id": device_id, "type": "sensor",
        "attributes": {"manufacturer": "acme", "batch": "2026-07"}})
    assert answer.status_code == 201, answer.text
    key = make_key()
    issued = issue(kit.api, device_id, key)
    assert kit.api.post("/v1/oauth/clients", json={"device": device_id}).status_code == 201
    return DeviceIdentity(device_id, key, x509.load_pem_x509_certificate(
        issued["pem"].encode()), issued["serial"])


def test_revoke_is_g3_consistent(installation: Installation) -> None:
    kit = OAuthKit(installation)
    api = kit.api
    serials = build(api)
    token = kit.access_token(acme_client(kit, "acme-z9"))
    assert kit.introspect(token)["active"] is True
    assert api.post("/v1/devices/acme-a1/psk", json={}).status_code == 201
    assert allowed(installation, "acme-a1") and allowed(installation, "acme-b1")

    report = revoke_set(api, "manufacturer=acme and batch=2026-07", reason="keyCompromise")
    assert report["dry_run"] is False
    assert (report["devices"], report["certificates"], report["psks"],
            report["oauth_clients"]) == (3, 3, 1, 1)
    # G3: OCSP, the PDP and introspection say so as soon as the call returned
    assert ocsp_status(installation, serials["acme-a1"]) is ocsp.OCSPCertStatus.REVOKED
    assert ocsp_status(installation, serials["acme-b1"]) is ocsp.OCSPCertStatus.GOOD
    assert kit.introspect(token) == {"active": False}
    assert not allowed(installation, "acme-a1") and not allowed(installation, "acme-z9")
    assert allowed(installation, "acme-b1") and allowed(installation, "other-1")
    # G4: a second run finds nothing left to revoke and is no error
    again = revoke_set(api, "manufacturer=acme and batch=2026-07")
    assert again["devices"] == 3
    assert again["certificates"] == again["psks"] == again["oauth_clients"] == 0


def test_revoke_ends_tokens_and_clients(installation: Installation) -> None:
    kit = OAuthKit(installation)
    device = kit.device("cam-1", client=True)
    token = kit.access_token(device)
    report = revoke_set(kit.api, "type=sensor")
    assert (report["certificates"], report["oauth_clients"]) == (1, 1)
    assert kit.introspect(token) == {"active": False}
    answer = kit.api.get("/v1/oauth/clients/cam-1")
    assert answer.json()["status"] == "revoked"


def test_audit_one_record_per_batch_and_the_set(installation: Installation) -> None:
    api = installation.api()
    build(api)
    installation.services.revocation_sets._batch = 2  # type: ignore[union-attr]
    report = revoke_set(api, "type=sensor")
    assert report["batches"] == 2
    with installation.services.database.engine.connect() as conn:
        rows = conn.execute(select(audit_records.c.tag, audit_records.c.details)
                            .order_by(audit_records.c.seq)).all()
    tags = [r.tag for r in rows]
    assert tags.count(AuditTag.REVOCATION_SET_STARTED) == 1
    assert tags.count(AuditTag.REVOCATION_SET_BATCH_REVOKED) == 2
    # the bulk path writes no record per certificate
    assert tags.count(AuditTag.CERTIFICATE_REVOKED) == 0
    assert tags.index(AuditTag.REVOCATION_SET_STARTED) < tags.index(
        AuditTag.REVOCATION_SET_BATCH_REVOKED)


def test_firmware_and_issuer_fields(installation: Installation) -> None:
    api = installation.api()
    build(api)
    now = installation.clock.now()
    with installation.services.database.engine.begin() as conn:
        conn.execute(device_firmware.insert(), [{
            "device_id": d, "firmware_version": v, "firmware_hash": "0" * 64,
            "image_id": None, "compliant": True, "reason": "", "measurements": "[]",
            "attested_at": now} for d, v in (("acme-a1", "1.2.0"), ("other-1", "1.3.0"))])
    report = revoke_set(api, "firmware=1.2.0", dry_run=True)
    assert report["sample"] == ["acme-a1"]


REFUSED = {
    "fail/unknown-field": ({"where": "colour=red"}, 400, "unknown field"),
    "fail/syntax": ({"where": "type=a or type=b"}, 400, "bad term"),
    "fail/empty": ({"where": ""}, 400, "empty filter"),
    "fail/reason": ({"where": "type=sensor", "reason": "because"}, 400, "reason"),
    "fail/extra-field": ({"where": "type=sensor", "all": True}, 400, ""),
    "fail/dry-run-not-bool": ({"where": "type=sensor", "dry_run": "yes"}, 400, ""),
}


@pytest.mark.parametrize(("body", "status", "detail"), REFUSED.values(), ids=REFUSED.keys())
def test_refused(installation: Installation, body: dict[str, Any], status: int,
                 detail: str) -> None:
    api = installation.api()
    build(api)
    answer = api.post(SETS, json=body)
    assert answer.status_code in (status, 422) and answer.status_code < 500
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert detail in answer.json()["detail"]
    # G10: nothing revoked
    assert revoke_set(api, "type=sensor", dry_run=True)["certificates"] == len(FLEET)


def test_operator_may_preview_not_revoke(installation: Installation) -> None:
    build(installation.api())
    operator = installation.api(installation.token("operator"))
    assert revoke_set(operator, "type=sensor", dry_run=True)["devices"] == len(FLEET)
    answer = operator.post(SETS, json={"where": "type=sensor"})
    assert answer.status_code == 403


def test_tenant_sees_only_its_devices(installation: Installation) -> None:
    root = installation.api()
    build(root)
    add_org_unit(root, "acme", "tenant")
    answer = root.post("/v1/devices", json={"id": "t-1", "type": "sensor", "org": "acme",
                                            "attributes": {"manufacturer": "acme"}})
    assert answer.status_code == 201
    issue(root, "t-1")
    tenant = installation.api(installation.token("admin", "acme"))
    report = revoke_set(tenant, "manufacturer=acme")
    assert (report["devices"], report["certificates"]) == (1, 1)
    assert revoke_set(root, "manufacturer=acme", dry_run=True)["certificates"] == 3


def test_drill_rehearses_and_rolls_back(installation: Installation) -> None:
    api = installation.api()
    serials = build(api)
    assert api.post("/v1/devices/acme-a1/psk", json={}).status_code == 201
    answer = api.post(f"{SETS}/drill", json={"where": "manufacturer=acme and batch=2026-07",
                                              "reason": "keyCompromise"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["drill"], report["devices"], report["certificates"], report["psks"],
            report["left_live"], report["batches"]) == (True, 2, 2, 1, 0, 1)
    # nothing changed: OCSP good, the PDP allows, the dry run still finds everything
    assert ocsp_status(installation, serials["acme-a1"]) is ocsp.OCSPCertStatus.GOOD
    assert allowed(installation, "acme-a1")
    assert revoke_set(api, "manufacturer=acme and batch=2026-07",
                      dry_run=True)["certificates"] == 2
    with installation.services.database.engine.connect() as conn:
        tags = [t for (t,) in conn.execute(select(audit_records.c.tag))]
    assert tags.count(AuditTag.REVOCATION_SET_DRILLED) == 1
    assert AuditTag.REVOCATION_SET_BATCH_REVOKED not in tags
    assert AuditTag.REVOCATION_SET_STARTED not in tags
    # the chain still verifies after the rolled-back writes
    assert installation.services.audit.verify(SYSTEM).ok


def test_drill_bad_filter_is_400(installation: Installation) -> None:
    answer = installation.api().post(f"{SETS}/drill", json={"where": "colour=red"})
    assert answer.status_code == 400
    assert "unknown field" in answer.json()["detail"]
