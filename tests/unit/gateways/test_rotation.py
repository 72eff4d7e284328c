"""Gateway children re-keyed on a schedule and when their gateway is revoked (frozen clock),
and children kept off the managed broker's own PSK listener."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from expect import audit_records
from fleet import revoke

from conftest import START, Installation
from iotiam.gateways.rotation import GATEWAY_REVOKED, SCHEDULED, due_reason, lost_standing_at
from iotiam.inventory.models import Device, DeviceState
from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.serving import broker_fleet

from .test_gateway_api import Kit

PERIOD = timedelta(days=90)
DAY = timedelta(days=1)


@pytest.mark.parametrize(("made", "lost", "now", "period", "reason"), [
    (START, None, START + 89 * DAY, PERIOD, None),
    (START, None, START + 90 * DAY, PERIOD, SCHEDULED),
    (START, None, START + 900 * DAY, None, None),
    (START, START + DAY, START + DAY, None, GATEWAY_REVOKED),
    (START, START + DAY, START + 90 * DAY, PERIOD, GATEWAY_REVOKED),
    (START + DAY, START + DAY, START + DAY, PERIOD, None),
    (START + 2 * DAY, START + DAY, START + 2 * DAY, PERIOD, None),
], ids=["ok/young", "ok/scheduled", "ok/schedule-off", "ok/gateway-revoked",
        "ok/revocation-first", "ok/rekeyed-at-revocation", "ok/made-after-revocation"])
def test_due_reason(made: Any, lost: Any, now: Any, period: Any, reason: str | None
                    ) -> None:
    assert due_reason(made, lost, now, period) == reason


def certificate(revoked_at: Any) -> CertificateRecord:
    return CertificateRecord(
        issuer_id="ca", serial=1, device_id="gw-1", org_unit_id="root", org_path="/",
        profile="gateway", subject="CN=gw-1", not_before=START,
        not_after=START + PERIOD, status=CertificateStatus.REVOKED if revoked_at
        else CertificateStatus.ISSUED, fingerprint_sha256=None, pem=None,
        created_at=START, revoked_at=revoked_at)


def test_lost_standing_at_latest_revocation_or_distrust() -> None:
    gateway = Device(id="gw-1", type_name="gateway", org_unit_id="root", org_path="/",
                     state=DeviceState.ACTIVE, site=None, location=None, attributes={},
                     created_at=START, updated_at=START)
    assert lost_standing_at(None, []) is None
    assert lost_standing_at(gateway, [certificate(None)]) is None
    # the certificate revoked last, or the distrust of the device, whichever is later
    assert lost_standing_at(gateway, [certificate(START + DAY), certificate(None),
                                      certificate(START + 3 * DAY)]) == START + 3 * DAY
    distrusted = replace(gateway, tokens_not_before=START + 5 * DAY)
    assert lost_standing_at(distrusted, [certificate(START + DAY)]) == START + 5 * DAY


def rekeyed(kit: Kit) -> list[dict[str, Any]]:
    return [r for r in audit_records(kit.api) if r["tag"] == "system:gateway-child:rekeyed"]


def active_psk(kit: Kit, device_id: str) -> str:
    listing = kit.api.get(f"/v1/devices/{device_id}/credentials")
    assert listing.status_code == 200, listing.text
    (psk,) = [c["id"] for c in listing.json()["items"]
              if c["kind"] == "psk" and c["status"] == "active"]
    return str(psk)


def scenario_scheduled(installation: Installation) -> None:
    kit = Kit(installation)
    for child, via in (("tag-1", "gw-1"), ("tag-2", "gw-1"), ("tag-3", "gw-2")):
        assert kit.add_child(child, via).status_code == 201
    add = kit.api.post("/v1/devices", json={"id": "loner", "type": "tag"})
    assert add.status_code == 201
    assert kit.api.post("/v1/devices/loner/psk", json={}).status_code == 201
    gateways = installation.services.gateways
    before = {c: active_psk(kit, c) for c in ("tag-1", "tag-2", "tag-3", "loner")}

    installation.clock.advance(89 * DAY)
    assert gateways.rotate_child_keys(PERIOD).rotated == ()
    installation.clock.advance(DAY)
    report = gateways.rotate_child_keys(PERIOD)
    assert [d.child_id for d in report.rotated] == ["tag-1", "tag-2", "tag-3"]
    assert report.count(SCHEDULED) == 3
    after = {c: active_psk(kit, c) for c in before}
    assert after["loner"] == before["loner"]  # not a child: its own rotation policy
    assert all(after[c] != before[c] for c in ("tag-1", "tag-2", "tag-3"))
    records = rekeyed(kit)
    assert {(r["subject"], r["details"]["reason"], r["details"]["replaced"])
            for r in records} == {(f"device:{c}", "scheduled", before[c])
                                  for c in ("tag-1", "tag-2", "tag-3")}
    assert all(r["actor"] == "gateway-key-rotation" for r in records)
    # the new keys are the ones the gateway receives
    assert gateways.rotate_child_keys(PERIOD).rotated == ()


def test_scheduled_rotation_ok(installation: Installation) -> None:
    scenario_scheduled(installation)


def test_scheduled_rotation_ok_memory(memory_installation: Installation) -> None:
    scenario_scheduled(memory_installation)


def scenario_gateway_revoked(installation: Installation) -> None:
    kit = Kit(installation)
    for child, via in (("tag-1", "gw-1"), ("tag-2", "gw-1"), ("tag-3", "gw-2")):
        assert kit.add_child(child, via).status_code == 201
    gateways = installation.services.gateways
    held = kit.children("gw-1")  # what the gateway holds before it is revoked
    before = {c: active_psk(kit, c) for c in ("tag-1", "tag-2", "tag-3")}
    # a suspended child may get no new key now: it is re-keyed when it is back
    assert kit.api.post("/v1/devices/tag-2/state",
                        json={"state": "suspended"}).status_code == 200

    installation.clock.advance(DAY)
    revoke(kit.api, kit.serials["gw-1"])
    report = gateways.rotate_child_keys(None)
    assert [(d.child_id, d.reason) for d in report.rotated] == [("tag-1", GATEWAY_REVOKED)]
    assert report.skipped == 1
    assert active_psk(kit, "tag-1") != before["tag-1"]
    assert active_psk(kit, "tag-3") == before["tag-3"]  # another gateway's child
    # once: the new key was made after the revocation
    installation.clock.advance(DAY)
    assert gateways.rotate_child_keys(None).rotated == ()

    assert kit.api.post("/v1/devices/tag-2/state",
                        json={"state": "active"}).status_code == 200
    assert [d.child_id for d in gateways.rotate_child_keys(None).rotated] == ["tag-2"]
    # the old gateway holds no key that is still valid anywhere: moved to gw-2 (which
    # re-keys again), the children's keys are delivered sealed to gw-2 only
    for child in ("tag-1", "tag-2"):
        moved = kit.api.post(f"/v1/devices/{child}/gateway", json={"via": "gw-2"})
        assert moved.status_code == 200, moved.text
    now_held = kit.children("gw-2")
    assert set(now_held) == {"tag-1", "tag-2", "tag-3"}
    assert all(now_held[c] != held[c] for c in held)
    assert {r["details"]["gateway"] for r in rekeyed(kit)} == {"gw-1"}


def test_gateway_revoked_rekeys_children_ok(installation: Installation) -> None:
    scenario_gateway_revoked(installation)


def test_gateway_revoked_rekeys_children_ok_memory(memory_installation: Installation
                                                   ) -> None:
    scenario_gateway_revoked(memory_installation)


def test_gateway_suspended_rekeys_children_ok(installation: Installation) -> None:
    kit = Kit(installation)
    assert kit.add_child("tag-1", "gw-1").status_code == 201
    before = active_psk(kit, "tag-1")
    installation.clock.advance(DAY)
    assert kit.api.post("/v1/devices/gw-1/state",
                        json={"state": "suspended"}).status_code == 200
    report = installation.services.gateways.rotate_child_keys(None)
    assert [(d.child_id, d.reason) for d in report.rotated] == [("tag-1", GATEWAY_REVOKED)]
    assert active_psk(kit, "tag-1") != before


def test_children_not_in_broker_psk_file_ok(installation: Installation) -> None:
    kit = Kit(installation)
    assert kit.add_child("tag-1", "gw-1").status_code == 201
    assert kit.api.post("/v1/devices", json={"id": "loner", "type": "tag"}).status_code \
        == 201
    assert kit.api.post("/v1/devices/loner/psk", json={}).status_code == 201
    assert kit.api.post("/v1/devices/loner/state", json={"state": "active"}).status_code \
        == 200
    identities = {line.partition(":")[0] for line in
                  broker_fleet(installation.services).psk_file().splitlines()}
    assert identities == {"loner"}  # a child goes through its gateway, not around it
    services = installation.services
    services.settings = replace(services.settings, child_psk_direct=True)
    identities = {line.partition(":")[0] for line in
                  broker_fleet(services).psk_file().splitlines()}
    assert identities == {"loner", "tag-1"}
