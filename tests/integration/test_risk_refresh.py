"""A refresh of a few devices (the change feed's) reads their presence and credentials
by key, not the fleet's: what it writes must be exactly what a full rebuild writes for
those devices, on each backend (issue 13)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import Installation
from iotiam.kernel import SYSTEM
from iotiam.risk.models import RiskEntry, RiskFactor
from iotiam.testing.synthetic_evidence import observations
from iotiam.testing.synthetic_fleet import register_fleet
from iotiam.testing.synthetic_formats import write_evidence
from iotiam.testing.synthetic_network import AS_OF, build_network

from .test_discovery_accuracy import import_file, rest


def held_by(entries: dict[str, RiskEntry], device: str, psk_identity: str | None
            ) -> dict[str, RiskEntry]:
    """The entries of a device: its own, its PSK's, its certificates' (they name it)."""
    return {i: e for i, e in entries.items()
            if e.subject_id in (device, psk_identity)
            or any(h.evidence.get("device") == device for h in e.factors)}


def test_ok_refresh_writes_what_a_rebuild_writes(installation: Installation,
                                                 tmp_path: Path) -> None:
    client = installation.api()
    network = build_network(7, registered=60, ratio=2.0)
    issued = register_fleet(network, rest(client))
    installation.clock.set(datetime.fromtimestamp(AS_OF, UTC))
    for evidence in write_evidence(observations(network, issued), tmp_path / "evidence"):
        assert import_file(client, evidence)["refused"] == 0
    # a registered device's PSK identity used from two addresses at once: shared
    shared_psk = next(d.label for d in network.registered
                      if d.fate == "seen" and d.label in issued
                      and issued[d.label].psk_identity)
    lines = [json.dumps({"psk_identity": issued[shared_psk].psk_identity, "ip": ip,
                         "site": "plant-x", "seen_at": AS_OF - age})
             for ip, age in (("10.250.0.8", 600), ("10.250.0.9", 300))]
    answer = client.post("/v1/discovery/imports", params={"source": "jsonl"},
                         content="\n".join(lines).encode(),
                         headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 200 and answer.json()["refused"] == 0, answer.text
    installation.services.risk.rebuild(SYSTEM)
    rebuilt = installation.risk_entries()

    plan = network.registered
    revoked = next(d.label for d in plan if d.revoke and d.fate == "seen")
    dormant = next(d.label for d in plan if d.fate == "dormant")
    chosen = [revoked, dormant, shared_psk]
    held: dict[str, RiskEntry] = {}
    factors: dict[str, set[RiskFactor]] = {}
    for label in chosen:
        mine = held_by(rebuilt, label, issued[label].psk_identity if label in issued else None)
        held.update(mine)
        factors[label] = {h.factor for e in mine.values() for h in e.factors}
    # the cases the refresh must judge as the rebuild did are there to be judged
    assert RiskFactor.REVOKED_IN_USE in factors[revoked], factors
    assert RiskFactor.DORMANT_VALID_CREDENTIALS in factors[dormant], factors
    assert RiskFactor.SHARED_CREDENTIAL in factors[shared_psk], factors

    written = installation.services.risk.refresh_devices(chosen)

    assert written == len(held)
    assert installation.risk_entries() == rebuilt


def psk_seen_from_two_assets(installation: Installation, device: str) -> None:
    """The device's PSK identity, seen from two boxes: a shared credential."""
    now = installation.clock.now().timestamp()
    lines = [json.dumps({"psk_identity": device, "mac": mac, "ip": ip, "site": "hq",
                         "seen_at": now - age})
             for mac, ip, age in (("02:00:00:0d:00:01", "10.13.0.1", 600),
                                  ("02:00:00:0d:00:02", "10.13.0.2", 300))]
    answer = installation.api().post(
        "/v1/discovery/imports", params={"source": "jsonl"},
        content="\n".join(lines).encode(),
        headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 200 and answer.json()["added"] == 2, answer.text


@pytest.mark.parametrize("rotations", [0, 2])
def test_ok_refresh_after_a_psk_is_revoked_writes_what_a_rebuild_writes(
        installation: Installation, rotations: int) -> None:
    """A revoked PSK the sources still see keeps its entry (here: shared) in a refresh of
    its device as in a rebuild; a PSK rotated before it was revoked leaves one entry for
    its identity, judged by the last key's revocation."""
    api = installation.api()
    assert api.post("/v1/devices", json={"id": "d9", "type": "sensor"}).status_code == 201
    assert api.post("/v1/devices/d9/psk", json={}).status_code == 201
    for _ in range(rotations):
        installation.clock.advance(timedelta(seconds=1000))
        assert api.post("/v1/devices/d9/psk/rotate", json={}).status_code == 201
    # seen after the rotations revoked the earlier keys, before the last is revoked
    psk_seen_from_two_assets(installation, "d9")
    installation.services.risk.rebuild(SYSTEM)
    installation.clock.advance(timedelta(seconds=60))
    revoked = api.post("/v1/devices/d9/psk/revoke", json={"reason": "key-compromise"})
    assert revoked.status_code == 200, revoked.text

    installation.services.risk.refresh_devices(["d9"])
    refreshed = installation.risk_entries()
    installation.services.risk.rebuild(SYSTEM)
    rebuilt = installation.risk_entries()
    psk = [e for e in rebuilt.values() if e.subject == "psk" and e.subject_id == "d9"]
    assert [h.factor for e in psk for h in e.factors] == [RiskFactor.SHARED_CREDENTIAL]
    assert rebuilt == refreshed

    # the rebuild's entry is the device's: a refresh replaces it, to the same content
    installation.services.risk.refresh_devices(["d9"])
    assert installation.risk_entries() == rebuilt
