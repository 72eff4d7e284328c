"""A scheduled child-key rotation with an overlap (frozen clock): a next key beside the
current one, both delivered to the gateway, promoted on the child's first use or when
the overlap ends; a gateway's revocation still re-keys at once."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from expect import audit_records
from fleet import revoke

from conftest import START, Installation
from iotiam.gateways.rotation import (
    GATEWAY_REVOKED,
    OVERLAP_ENDED,
    SCHEDULED,
    due_reason,
)
from iotiam.gateways.sealed_keys import context_of, open_sealed

from .test_gateway_api import Kit

PERIOD = timedelta(days=2)  # inside the gateway certificate's validity
OVERLAP = timedelta(hours=24)
DAY = timedelta(days=1)


@pytest.mark.parametrize(("lost", "now", "ends", "reason"), [
    (None, START + 11 * DAY, START + 13 * DAY, None),
    (None, START + 13 * DAY, START + 13 * DAY, OVERLAP_ENDED),
    (START + 11 * DAY, START + 11 * DAY, START + 13 * DAY, GATEWAY_REVOKED),
], ids=["ok/pending", "ok/overlap-ended", "ok/gateway-revoked-first"])
def test_due_reason_with_next_key(lost: Any, now: Any, ends: Any, reason: str | None
                                  ) -> None:
    assert due_reason(START, lost, now, PERIOD, ends) == reason


def listing(kit: Kit, gateway_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each child's listed keys, opened: {child: [{identity, psk_id, next, key}]}."""
    answer = kit.http.get("/v1/gateways/self/children", headers=kit.as_gateway(gateway_id))
    assert answer.status_code == 200, answer.text
    found: dict[str, list[dict[str, Any]]] = {}
    for c in answer.json()["children"]:
        key = open_sealed(kit.keys[gateway_id], base64.b64decode(c["sealed_key"]),
                          context_of(gateway_id, c["id"], c["psk_id"]))
        found.setdefault(c["id"], []).append({**c, "key": key})
    return found


def psks(kit: Kit, device_id: str) -> dict[str, str]:
    """The device's PSKs: {id: status}."""
    answer = kit.api.get(f"/v1/devices/{device_id}/credentials")
    assert answer.status_code == 200, answer.text
    return {c["id"]: c["status"] for c in answer.json()["items"] if c["kind"] == "psk"}


def key_used(kit: Kit, gateway_id: str, child: str, psk_id: str) -> Any:
    return kit.http.post("/v1/gateways/self/key-used", headers=kit.as_gateway(gateway_id),
                         json={"child": child, "psk_id": psk_id})


def scheduled_with_overlap(installation: Installation) -> None:
    kit = Kit(installation)
    for child in ("tag-1", "tag-2"):
        assert kit.add_child(child, "gw-1").status_code == 201
    gateways = installation.services.gateways
    before = {c: listing(kit, "gw-1")[c][0] for c in ("tag-1", "tag-2")}

    installation.clock.advance(PERIOD)
    report = gateways.rotate_child_keys(PERIOD, OVERLAP)
    assert [(d.child_id, d.reason) for d in report.rotated] == [
        ("tag-1", SCHEDULED), ("tag-2", SCHEDULED)]
    held = listing(kit, "gw-1")
    for child in ("tag-1", "tag-2"):
        current, nxt = held[child]
        # the current key stays valid until the overlap ends, beside a distinct next one
        assert (current["psk_id"], current["key"], current["next"]) == (
            before[child]["psk_id"], before[child]["key"], False)
        assert current["expires_at"] == (installation.clock.now() + OVERLAP).isoformat()
        assert nxt["next"] is True and nxt["psk_identity"] == f"{child}.{nxt['psk_id']}"
        assert nxt["key"] != current["key"]
        assert psks(kit, child) == {current["psk_id"]: "active", nxt["psk_id"]: "next"}
    # pending: not rotated again
    assert gateways.rotate_child_keys(PERIOD, OVERLAP).rotated == ()

    # tag-1 connects with its next key: gw-1 reports it, the next key becomes current
    promoted = held["tag-1"][1]["psk_id"]
    assert key_used(kit, "gw-2", "tag-1", promoted).status_code == 400  # not its child
    assert key_used(kit, "gw-1", "tag-1", "0123456789abcdef").status_code == 409
    answer = key_used(kit, "gw-1", "tag-1", promoted)
    assert answer.status_code == 200, answer.text
    assert key_used(kit, "gw-1", "tag-1", promoted).status_code == 200  # reported again
    assert psks(kit, "tag-1") == {before["tag-1"]["psk_id"]: "revoked", promoted: "active"}
    assert [(k["psk_id"], k["next"]) for k in listing(kit, "gw-1")["tag-1"]] == [
        (promoted, False)]
    tags = [r["tag"] for r in audit_records(kit.api)]
    assert "device:psk:promoted" in tags and "device:psk:next-issued" in tags
    used = [r for r in audit_records(kit.api) if r["tag"] == "device:gateway-child-key:used"]
    assert sum(1 for r in used if r["outcome"] == "success") >= 1
    assert sum(1 for r in used if r["outcome"] != "success") == 2  # both refusals

    # tag-2 never used its next key: when the overlap ends the old key stops being served
    installation.clock.advance(OVERLAP)
    pending = held["tag-2"][1]["psk_id"]
    assert [k["psk_id"] for k in listing(kit, "gw-1")["tag-2"]] == [pending]
    report = gateways.rotate_child_keys(PERIOD, OVERLAP)
    assert [(d.child_id, d.reason) for d in report.rotated] == [("tag-2", OVERLAP_ENDED)]
    assert psks(kit, "tag-2") == {before["tag-2"]["psk_id"]: "revoked", pending: "active"}
    assert gateways.rotate_child_keys(PERIOD, OVERLAP).rotated == ()
    ended = [r for r in audit_records(kit.api) if r["tag"] == "system:gateway-child:rekeyed"
             and r["details"]["reason"] == OVERLAP_ENDED]
    assert [r["subject"] for r in ended] == ["device:tag-2"]


def test_scheduled_with_overlap_ok(installation: Installation) -> None:
    scheduled_with_overlap(installation)


def test_scheduled_with_overlap_ok_memory(memory_installation: Installation) -> None:
    scheduled_with_overlap(memory_installation)


def test_gateway_revoked_during_overlap_ok(installation: Installation) -> None:
    kit = Kit(installation)
    assert kit.add_child("tag-1", "gw-1").status_code == 201
    gateways = installation.services.gateways
    installation.clock.advance(PERIOD)
    gateways.rotate_child_keys(PERIOD, OVERLAP)
    old = set(psks(kit, "tag-1"))
    assert sorted(psks(kit, "tag-1").values()) == ["active", "next"]

    installation.clock.advance(DAY)
    revoke(kit.api, kit.serials["gw-1"])
    report = gateways.rotate_child_keys(PERIOD, OVERLAP)
    # at once, no overlap: the revoked gateway held both the current and the next key
    assert [(d.child_id, d.reason) for d in report.rotated] == [("tag-1", GATEWAY_REVOKED)]
    now = psks(kit, "tag-1")
    assert {now[p] for p in old} == {"revoked"}
    assert sorted(now.values()) == ["active", "revoked", "revoked"]


def test_psk_revoked_during_overlap_ok(installation: Installation) -> None:
    kit = Kit(installation)
    assert kit.add_child("tag-1", "gw-1").status_code == 201
    installation.clock.advance(PERIOD)
    installation.services.gateways.rotate_child_keys(PERIOD, OVERLAP)
    assert kit.api.post("/v1/devices/tag-1/psk/revoke", json={}).status_code == 200
    # the next key goes with the current one: the gateway serves neither
    assert set(psks(kit, "tag-1").values()) == {"revoked"}
    assert "tag-1" not in listing(kit, "gw-1")


def test_no_overlap_replaces_at_once_ok(installation: Installation) -> None:
    kit = Kit(installation)
    assert kit.add_child("tag-1", "gw-1").status_code == 201
    installation.clock.advance(PERIOD)
    installation.services.gateways.rotate_child_keys(PERIOD, None)
    assert sorted(psks(kit, "tag-1").values()) == ["active", "revoked"]
