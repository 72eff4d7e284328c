"""G9, existence oracles: what tenant acme can learn by naming globex's objects.

Ids are global (docs/tenancy.md). Naming another tenant's object to read or change it
answers byte for byte what naming an id nobody uses answers (404); creating an object
with an id another tenant holds answers byte for byte what creating one with an id the
caller's own tenant holds answers (one 409, "not available"); no answer carries another
tenant's org path or org unit.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from cryptography.hazmat.primitives import serialization
from enrollment.zerotouch import manufacturer_ca, register_manufacturer
from fastapi.testclient import TestClient
from tokens.test_clients import public_jwks

from api.tenants import Tenants
from api.test_policies_api import TELEMETRY
from iotiam.testing import make_csr, make_key

#: what only globex's objects could put into an answer (ids the caller sent are echoed)
FOREIGN_PATHS = ("/root/globex", "/root/acme2")


def _signer_pem() -> str:
    return make_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _own_and_foreign(tenants: Tenants) -> tuple[TestClient, TestClient]:
    """acme's and globex's admins; acme, globex and acme2 each hold a policy, a service
    client, a manufacturer and a firmware signer."""
    inst = tenants.installation
    acme = inst.api(tenants.token("acme", "admin"))
    globex = inst.api(tenants.token("globex", "admin"))
    acme2 = inst.api(tenants.token("acme2", "admin"))
    for api, tenant in ((acme, "acme"), (globex, "globex"), (acme2, "acme2")):
        policy = TELEMETRY.format(version=1, topic=f"{tenant}/#").replace(
            "plant-telemetry", f"{tenant}-pol")
        answer = api.put("/v1/policies", content=policy,
                         headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 201, answer.text
        answer = api.post("/v1/oauth/clients", json={
            "client_id": f"{tenant}-svc", "jwks": public_jwks(),
            "scopes": [f"mqtt:subscribe:devices/{tenant}-svc/#"]})
        assert answer.status_code == 201, answer.text
        register_manufacturer(inst, manufacturer_ca(inst, f"{tenant} CA"), f"{tenant}-mfr",
                              org=tenant, token=tenants.token(tenant, "admin"))
        answer = api.post("/v1/firmware/signers", json={"name": f"{tenant}-signer",
                                                        "public_key_pem": _signer_pem()})
        assert answer.status_code == 201, answer.text
    return acme, globex


def _same(foreign: httpx.Response, reference: httpx.Response, foreign_id: str,
          reference_id: str) -> None:
    """``foreign`` is ``reference`` byte for byte once the ids are swapped, and names no
    other tenant."""
    assert foreign.status_code == reference.status_code, (foreign.text, reference.text)
    assert foreign.headers["content-type"] == reference.headers["content-type"]
    assert foreign.content == reference.content.replace(reference_id.encode(),
                                                        foreign_id.encode())
    for leak in FOREIGN_PATHS:
        assert leak not in foreign.text


# -- creating an object with an id another tenant holds --------------------------------

Create = Callable[[TestClient, str], httpx.Response]
CREATES: dict[str, tuple[Create, str, str]] = {
    # kind: (create with this id, an id acme holds, an id globex holds)
    "device": (lambda api, i: api.post("/v1/devices", json={"id": i, "type": "sensor"}),
               "acme-d1", "globex-d1"),
    "group": (lambda api, i: api.post("/v1/groups", json={"id": i}), "acme-g", "globex-g"),
    "org-unit": (lambda api, i: api.post("/v1/org-units", json={
        "id": i, "kind": "site", "parent": "acme"}), "acme-berlin", "globex"),
    # a policy name the caller holds is its own to version; compared instead: the names
    # two other tenants hold must answer alike
    "policy": (lambda api, i: api.put("/v1/policies", content=TELEMETRY.format(
        version=1, topic="acme/#").replace("plant-telemetry", i),
        headers={"Content-Type": "application/yaml"}), "acme2-pol", "globex-pol"),
    # naming an owner once answered "belongs to /root/globex/"
    "policy-with-owner": (lambda api, i: api.put("/v1/policies", content=TELEMETRY.format(
        version=2, topic="acme/#").replace("plant-telemetry", i),
        params={"owner": "acme"}, headers={"Content-Type": "application/yaml"}),
        "acme2-pol", "globex-pol"),
    "oauth-client": (lambda api, i: api.post("/v1/oauth/clients", json={
        "client_id": i, "jwks": public_jwks(), "scopes": []}), "acme-svc", "globex-svc"),
    "manufacturer": (lambda api, i: api.post("/v1/manufacturers", json={
        "name": i, "certificate": _fresh_ca_pem()}), "acme-mfr", "globex-mfr"),
}


def _fresh_ca_pem() -> str:
    from iotiam.testing import make_manufacturer_ca

    return make_manufacturer_ca("another CA").pem


def test_create_fail_id_of_other_tenant_same_as_own(tenants: Tenants) -> None:
    acme, _ = _own_and_foreign(tenants)
    for kind, (create, own, foreign) in CREATES.items():
        reference = create(acme, own)
        assert reference.status_code == 409, (kind, reference.text)
        assert "not available" in reference.json()["detail"], (kind, reference.text)
        _same(create(acme, foreign), reference, foreign, own)


def test_create_ok_firmware_signer_names_are_per_org_unit(tenants: Tenants) -> None:
    """Signer names are namespaced by org unit: globex's name is free in acme."""
    acme, _ = _own_and_foreign(tenants)
    answer = acme.post("/v1/firmware/signers", json={"name": "globex-signer",
                                                     "public_key_pem": _signer_pem()})
    assert answer.status_code == 201, answer.text
    assert "/root/globex/" not in answer.text


def test_create_fail_device_types_are_root_only(tenants: Tenants) -> None:
    acme, _ = _own_and_foreign(tenants)
    body = {"class": "sensor", "criticality": "low"}
    taken = acme.post("/v1/device-types", json={"name": "sensor", **body})
    _same(taken, acme.post("/v1/device-types", json={"name": "nosuch-type", **body}),
          "sensor", "nosuch-type")


# -- reading or changing another tenant's object ---------------------------------------

Probe = Callable[[TestClient, str], httpx.Response]
PROBES: dict[str, tuple[Probe, str]] = {
    # name: (a request naming this id, globex's id)
    "show-device": (lambda api, i: api.get(f"/v1/devices/{i}"), "globex-d1"),
    "set-state": (lambda api, i: api.post(f"/v1/devices/{i}/state",
                                          json={"state": "suspended"}), "globex-d1"),
    "credentials": (lambda api, i: api.get(f"/v1/devices/{i}/credentials"), "globex-d1"),
    "psk": (lambda api, i: api.post(f"/v1/devices/{i}/psk", json={}), "globex-d1"),
    "trust": (lambda api, i: api.get(f"/v1/devices/{i}/trust"), "globex-d1"),
    "mitigations": (lambda api, i: api.get(f"/v1/devices/{i}/mitigations"), "globex-d1"),
    "firmware": (lambda api, i: api.get(f"/v1/devices/{i}/firmware"), "globex-d1"),
    "permissions": (lambda api, i: api.get(f"/v1/devices/{i}/permissions"), "globex-d1"),
    "claim": (lambda api, i: api.post(f"/v1/devices/{i}/claims", json={}), "globex-d1"),
    "claims": (lambda api, i: api.post("/v1/claims", json={"devices": [i]}), "globex-d1"),
    "transfer": (lambda api, i: api.post(f"/v1/devices/{i}/transfer",
                                         json={"to": "acme-berlin"}), "globex-d1"),
    "certificate": (lambda api, i: api.post("/v1/certificates", json={
        "device": i, "csr": make_csr(i).decode()}), "globex-d1"),
    "decision": (lambda api, i: api.post("/v1/decisions", json={
        "device": i, "action": "mqtt:publish", "resource": "x/y"}), "globex-d1"),
    "device-client": (lambda api, i: api.post("/v1/oauth/clients", json={"device": i}),
                      "globex-d1"),
    "join-group": (lambda api, i: api.post(f"/v1/groups/{i}/members",
                                           json={"device": "acme-d1"}), "globex-g"),
    "add-member": (lambda api, i: api.post("/v1/groups/acme-g/members",
                                           json={"device": i}), "globex-d1"),
    "device-in-unit": (lambda api, i: api.post("/v1/devices", json={
        "id": "acme-new", "type": "sensor", "org": i}), "globex"),
    "group-in-unit": (lambda api, i: api.post("/v1/groups", json={"id": "acme-new-g",
                                                                  "org": i}), "globex"),
    "unit-in-unit": (lambda api, i: api.post("/v1/org-units", json={
        "id": "acme-new-u", "kind": "site", "parent": i}), "globex"),
    "show-policy": (lambda api, i: api.get(f"/v1/policies/{i}"), "globex-pol"),
    "diff-policy": (lambda api, i: api.get(f"/v1/policies/{i}/diff",
                                           params={"from": 1, "to": 1}), "globex-pol"),
    "attach-policy": (lambda api, i: api.post(f"/v1/policies/{i}/attachments",
                                              json={"kind": "org-unit", "id": "acme"}),
                      "globex-pol"),
    "policy-owner": (lambda api, i: api.put("/v1/policies", params={"owner": i},
                                            content=TELEMETRY.format(version=1, topic="a/#"),
                                            headers={"Content-Type": "application/yaml"}),
                     "globex"),
    "attach-to-unit": (lambda api, i: api.post("/v1/policies/acme-pol/attachments",
                                               json={"kind": "org-unit", "id": i}), "globex"),
    "show-client": (lambda api, i: api.get(f"/v1/oauth/clients/{i}"), "globex-svc"),
    "revoke-client": (lambda api, i: api.post(f"/v1/oauth/clients/{i}/revoke"),
                      "globex-svc"),
    "show-manufacturer": (lambda api, i: api.get(f"/v1/manufacturers/{i}"), "globex-mfr"),
    "manifest": (lambda api, i: api.post(f"/v1/manufacturers/{i}/manifest", json={
        "rows": [{"row": 1, "data": {"serial": "s-1"}}]}), "globex-mfr"),
    "revoke-signer": (lambda api, i: api.post(f"/v1/firmware/signers/{i}/revoke",
                                              json={}), "globex-signer"),
    "lift-quarantine": (lambda api, i: api.post(f"/v1/devices/{i}/quarantine/lift",
                                                json={}), "globex-d1"),
}


def test_probe_fail_other_tenant_same_as_nonexistent(tenants: Tenants) -> None:
    acme, _ = _own_and_foreign(tenants)
    unknown = "nosuch-x1"
    for probe, (request, foreign) in PROBES.items():
        reference = request(acme, unknown)
        assert reference.status_code == 404, (probe, reference.text)
        _same(request(acme, foreign), reference, foreign, unknown)


def test_import_fail_other_tenants_id_same_as_own(tenants: Tenants) -> None:
    """A bulk import row naming another tenant's device reads like one naming the
    caller's own."""
    acme, _ = _own_and_foreign(tenants)
    answer = acme.post("/v1/devices/import", json={"rows": [
        {"row": 1, "data": {"id": "acme-d1", "type": "sensor"}},
        {"row": 2, "data": {"id": "globex-d1", "type": "sensor"}}]})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    own, foreign = (r["error"] for r in results)
    assert foreign == own.replace("acme-d1", "globex-d1")
    assert "not available" in own

