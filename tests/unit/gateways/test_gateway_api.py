"""Gateways through the API: children registered (--via, import), moved and re-keyed,
their keys delivered sealed to the gateway, relayed actions and sightings judged."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from expect import audit_records
from fastapi.testclient import TestClient
from fleet import add_device, add_org_unit, certificate_of, issue, revoke

from conftest import Installation
from iotiam.api.app import create_api_app
from iotiam.api.tls import CLIENT_CERT_HEADER
from iotiam.broker.plugin_plane import PdpAnswers
from iotiam.detection.models import FindingType
from iotiam.gateways.sealed_keys import context_of, open_sealed
from iotiam.policy.actions import PUBLISH
from iotiam.testing import make_key


class Kit:
    """An installation with a gateway gw-1 (certified) and a gateway-side client."""

    def __init__(self, installation: Installation) -> None:
        services = installation.services
        services.settings = services.settings.with_overrides(trusted_proxies=("127.0.0.1/32",))
        self.installation = installation
        self.api = installation.api()
        self.http = TestClient(create_api_app(replace(services)),
                               raise_server_exceptions=False, client=("127.0.0.1", 50000))
        installation._clients.append(self.http)
        assert self.api.post("/v1/device-types", json={
            "name": "tag", "device_class": "constrained-sensor"}).status_code == 201
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.serials: dict[str, str] = {}
        for gateway in ("gw-1", "gw-2"):
            self.gateway(gateway)

    def gateway(self, gateway_id: str) -> None:
        add_device(self.api, gateway_id, "gateway")
        key = make_key()
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        issued = issue(self.api, gateway_id, key)
        self.keys[gateway_id], self.serials[gateway_id] = key, issued["serial"]
        self.__dict__[f"cert_{gateway_id}"] = certificate_of(issued)

    def as_gateway(self, gateway_id: str) -> dict[str, str]:
        pem = self.__dict__[f"cert_{gateway_id}"].public_bytes(serialization.Encoding.PEM)
        return {CLIENT_CERT_HEADER: quote(pem.decode())}

    def add_child(self, child_id: str, via: str) -> Any:
        return self.api.post("/v1/devices", json={"id": child_id, "type": "tag", "via": via})

    def children(self, gateway_id: str) -> dict[str, bytes]:
        answer = self.http.get("/v1/gateways/self/children", headers=self.as_gateway(gateway_id))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["gateway"] == gateway_id
        return {c["id"]: open_sealed(self.keys[gateway_id], base64.b64decode(c["sealed_key"]),
                                     context_of(gateway_id, c["id"], c["psk_id"]))
                for c in body["children"]}

    def relay(self, gateway_id: str, child: str, topic: str) -> dict[str, Any]:
        answer = self.http.post("/v1/gateways/self/relay", headers=self.as_gateway(gateway_id),
                                json={"child": child, "action": "mqtt:publish",
                                      "resource": topic})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def audit_tags(self) -> list[str]:
        return [r["tag"] for r in audit_records(self.api)]


@pytest.fixture
def kit(installation: Installation) -> Kit:
    return Kit(installation)


def test_register_child_ok(kit: Kit) -> None:
    answer = kit.add_child("tag-1", "gw-1")
    assert answer.status_code == 201, answer.text
    assert answer.json()["via"] == "gw-1"
    # keyed for its gateway, so it is live at once
    assert answer.json()["state"] == "active"
    assert kit.api.get("/v1/devices/tag-1").json()["via"] == "gw-1"
    assert "admin:gateway-child:attached" in kit.audit_tags()


@pytest.mark.parametrize(("via", "status", "message"), [
    ("nope", 400, "gateway 'nope' not found"),
    ("sensor-1", 400, "is not a gateway"),
    ("old-gw", 409, "is decommissioned"),
    ("bad id!", 400, "gateway id"),
], ids=["fail/unknown", "fail/not-a-gateway", "fail/decommissioned", "fail/malformed"])
def test_register_child_fail(kit: Kit, via: str, status: int, message: str) -> None:
    add_device(kit.api, "sensor-1")
    add_device(kit.api, "old-gw", "gateway")
    assert kit.api.post("/v1/devices/old-gw/state",
                        json={"state": "decommissioned"}).status_code == 200
    answer = kit.add_child("tag-1", via)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert kit.api.get("/v1/devices/tag-1").status_code == 404  # nothing stored half-way


def test_import_with_via_ok_and_fail_alone(kit: Kit) -> None:
    answer = kit.api.post("/v1/devices/import", json={"rows": [
        {"row": 2, "data": {"id": "tag-1", "type": "tag", "via": "gw-1"}},
        {"row": 3, "data": {"id": "tag-2", "type": "tag", "via": "nope"}},
        {"row": 4, "data": {"id": "tag-3", "type": "tag"}},
    ]})
    assert answer.status_code in (200, 207), answer.text
    results = {r["row"]: r for r in answer.json()["results"]}
    assert results[2]["ok"] and results[4]["ok"]
    assert not results[3]["ok"] and "gateway 'nope' not found" in results[3]["error"]
    assert kit.api.get("/v1/devices/tag-2").status_code == 404
    assert set(kit.children("gw-1")) == {"tag-1"}
    assert "via" not in kit.api.get("/v1/devices/tag-3").json()["attributes"]


def test_children_delivered_sealed_ok(kit: Kit) -> None:
    kit.add_child("tag-1", "gw-1")
    kit.add_child("tag-2", "gw-1")
    kit.add_child("tag-9", "gw-2")
    keys = kit.children("gw-1")
    assert set(keys) == {"tag-1", "tag-2"}
    assert all(len(k) == 32 for k in keys.values())
    # the same key the PSK file of the broker holds for the child
    psk_file = kit.installation.services.psks.broker_psk_file()
    assert f"tag-1:{keys['tag-1'].hex()}" in psk_file.splitlines()
    assert set(kit.children("gw-2")) == {"tag-9"}


def test_children_fail_without_certificate(kit: Kit) -> None:
    answer = kit.http.get("/v1/gateways/self/children")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_children_fail_not_a_gateway(kit: Kit) -> None:
    add_device(kit.api, "sensor-1")
    kit.__dict__["cert_sensor-1"] = certificate_of(issue(kit.api, "sensor-1", make_key()))
    answer = kit.http.get("/v1/gateways/self/children", headers=kit.as_gateway("sensor-1"))
    assert answer.status_code == 401
    assert "is not a gateway" in answer.json()["detail"]


def test_revoked_child_removed_ok(kit: Kit) -> None:
    kit.add_child("tag-1", "gw-1")
    kit.add_child("tag-2", "gw-1")
    assert kit.api.post("/v1/devices/tag-1/psk/revoke", json={}).status_code == 200
    assert set(kit.children("gw-1")) == {"tag-2"}
    assert kit.api.post("/v1/devices/tag-2/state",
                        json={"state": "suspended"}).status_code == 200
    assert kit.children("gw-1") == {}


def test_move_rekeys_ok(kit: Kit) -> None:
    kit.add_child("tag-1", "gw-1")
    before = kit.children("gw-1")["tag-1"]
    answer = kit.api.post("/v1/devices/tag-1/gateway", json={"via": "gw-2"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["via"] == "gw-2"
    assert kit.children("gw-1") == {}
    after = kit.children("gw-2")["tag-1"]
    assert after != before
    assert kit.relay("gw-1", "tag-1", "devices/tag-1/telemetry")["decision"] == "deny"
    assert kit.relay("gw-2", "tag-1", "devices/tag-1/telemetry")["decision"] == "permit"


@pytest.mark.parametrize(("child", "via", "message"), [
    ("tag-1", "gw-1", "already under"),
    ("gw-a", "gw-b", "cycle"),
    ("loose", "gw-1", "not under a gateway"),
], ids=["fail/same-gateway", "fail/cycle", "fail/no-gateway"])
def test_move_fail(kit: Kit, child: str, via: str, message: str) -> None:
    kit.add_child("tag-1", "gw-1")
    add_device(kit.api, "loose", "tag")
    # gw-b is under gw-a, which is under gw-1: gw-a under gw-b would be a cycle
    for gateway, parent in (("gw-a", "gw-1"), ("gw-b", "gw-a")):
        assert kit.api.post("/v1/devices", json={"id": gateway, "type": "gateway",
                                                 "via": parent}).status_code == 201
    answer = kit.api.post(f"/v1/devices/{child}/gateway", json={"via": via})
    assert answer.status_code in (400, 409), answer.text
    assert message in answer.json()["detail"]
    assert "admin:gateway-child:moved" in kit.audit_tags()


def test_relay_judged_as_child_ok(kit: Kit) -> None:
    kit.add_child("tag-1", "gw-1")
    permitted = kit.relay("gw-1", "tag-1", "devices/tag-1/telemetry")
    assert permitted["decision"] == "permit", permitted
    # ${device.id} is the child: the gateway's own topic is not the child's
    assert kit.relay("gw-1", "tag-1", "devices/gw-1/telemetry")["decision"] == "deny"


def test_relay_fail_not_its_child(kit: Kit) -> None:
    kit.add_child("tag-9", "gw-2")
    add_device(kit.api, "sensor-1")
    for child in ("tag-9", "sensor-1", "ghost"):
        denied = kit.relay("gw-1", child, f"devices/{child}/telemetry")
        assert denied["decision"] == "deny"
        assert f"'{child}' is not a child of gateway 'gw-1'" in denied["reason"]
    assert kit.audit_tags().count("device:gateway-relay:decided") == 3


def test_sightings_mismatch_raises_finding(kit: Kit) -> None:
    kit.add_child("tag-1", "gw-1")
    kit.add_child("tag-9", "gw-2")
    answer = kit.http.post("/v1/gateways/self/sightings", headers=kit.as_gateway("gw-1"),
                           json={"children": ["tag-1", "tag-9"]})
    assert answer.status_code == 200, answer.text
    results = {r["child"]: r for r in answer.json()["results"]}
    assert results["tag-1"]["accepted"] and not results["tag-9"]["accepted"]
    assert "device:gateway-sighting:refused" in kit.audit_tags()
    findings = kit.api.get("/v1/findings").json()["items"]
    mismatch = [f for f in findings if f["type"] == FindingType.GATEWAY_MISMATCH]
    assert len(mismatch) == 1 and mismatch[0]["subject"] == "device:gw-1"
    assert mismatch[0]["evidence"]["child"] == "tag-9"


def test_revoked_gateway_speaks_for_nobody(kit: Kit) -> None:
    kit.add_child("tag-1", "gw-1")
    revoke(kit.api, kit.serials["gw-1"])
    for answer in (
        kit.http.get("/v1/gateways/self/children", headers=kit.as_gateway("gw-1")),
        kit.http.post("/v1/gateways/self/relay", headers=kit.as_gateway("gw-1"),
                      json={"child": "tag-1", "action": "mqtt:publish",
                            "resource": "devices/tag-1/x"}),
    ):
        assert answer.status_code == 401, answer.text
        assert "revoked" in answer.json()["detail"]


def test_events_for_children_ok_and_mismatch_refused(kit: Kit) -> None:
    kit.add_child("tag-1", "gw-1")
    kit.add_child("tag-9", "gw-2")
    at = kit.installation.clock.now().timestamp()
    events = [{"kind": "publish", "ts": at, "device_id": "tag-1",
               "topic": "devices/tag-1/telemetry", "size": 12},
              {"kind": "connect", "ts": at, "device_id": "gw-1"},
              {"kind": "publish", "ts": at, "device_id": "tag-9",
               "topic": "devices/tag-9/telemetry", "size": 12},
              {"kind": "connect", "ts": at}]
    answer = kit.http.post("/v1/gateways/self/events", headers=kit.as_gateway("gw-1"),
                           json={"events": events})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 2
    assert [r["event"] for r in body["refused"]] == [3, 4]
    assert "'tag-9' is not a child of gateway 'gw-1'" in body["refused"][0]["reason"]
    findings = kit.api.get("/v1/findings").json()["items"]
    assert [f["evidence"]["child"] for f in findings
            if f["type"] == FindingType.GATEWAY_MISMATCH] == ["tag-9"]


def test_events_fail_without_certificate(kit: Kit) -> None:
    answer = kit.http.post("/v1/gateways/self/events",
                           json={"events": [{"kind": "connect", "ts": 1.0}]})
    assert answer.status_code == 401


def test_plugin_answers_gateway_for_child_ok_and_fail(kit: Kit) -> None:
    """The plugin-authorized broker's questions: a gateway's publish on its child's topic
    is judged as the child's; on any other device's topic it stays denied."""
    services = kit.installation.services
    answers = PdpAnswers(services.subjects, services.decisions, services.gateways)
    kit.add_child("tag-1", "gw-1")
    add_device(kit.api, "bystander")
    assert answers.answer("gw-1", PUBLISH, None, "devices/gw-1/telemetry").allowed
    assert answers.answer("gw-1", PUBLISH, None, "devices/tag-1/telemetry").allowed
    assert not answers.answer("gw-2", PUBLISH, None, "devices/tag-1/telemetry").allowed
    assert not answers.answer("gw-1", PUBLISH, None, "devices/bystander/cmd").allowed
    assert kit.api.post("/v1/devices/tag-1/state", json={"state": "suspended"}
                        ).status_code == 200
    services.subjects.forget()
    denied = answers.answer("gw-1", PUBLISH, None, "devices/tag-1/telemetry")
    assert not denied.allowed and "'tag-1' is suspended" in denied.reason
    assert kit.api.post("/v1/devices/tag-1/state", json={"state": "active"}
                        ).status_code == 200
    revoke(kit.api, kit.serials["gw-1"])
    services.subjects.forget()
    assert not answers.answer("gw-1", PUBLISH, None, "devices/tag-1/telemetry").allowed


def test_register_child_fail_other_tenants_gateway(kit: Kit) -> None:
    for tenant in ("acme", "beta"):
        add_org_unit(kit.api, tenant, "tenant")
    add_device(kit.api, "gw-beta", "gateway", org="beta")
    answer = kit.api.post("/v1/devices", json={"id": "tag-1", "type": "tag", "org": "acme",
                                               "via": "gw-beta"})
    assert answer.status_code == 400, answer.text
    assert "outside gateway 'gw-beta'" in answer.json()["detail"]
    assert kit.api.get("/v1/devices/tag-1").status_code == 404
    # a tenant's own gateway serves devices anywhere in the tenant's subtree
    assert kit.api.post("/v1/devices", json={"id": "tag-2", "type": "tag", "org": "beta",
                                             "via": "gw-beta"}).status_code == 201
