"""POST /v1/events: bad rows reported, good rows scored, findings stored (G10, G9)."""

from __future__ import annotations

import json

import pytest
from fleet import add_device, add_org_unit

from conftest import Installation


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Event ingest is a use case: it runs on the memory stores."""
    return memory_installation

T0 = 1_772_366_400.0


def auth_failures(device_id: str, count: int, start: float = T0) -> list[dict[str, object]]:
    return [{"kind": "auth_failure", "ts": start + i, "device_id": device_id,
             "source_ip": "198.51.100.7", "reason": "bad certificate"} for i in range(count)]


def ndjson(rows: list[object]) -> bytes:
    return b"\n".join(json.dumps(r).encode() if not isinstance(r, bytes) else r for r in rows)


def test_ok_good_rows_land_bad_rows_are_reported(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    rows: list[object] = [
        *auth_failures("s1", 3),
        b"{not json",
        {"kind": "teleport", "ts": T0, "device_id": "s1"},
        {"kind": "publish", "ts": T0, "device_id": "s1"},
        {"kind": "flow", "ts": "yesterday", "device_id": "s1", "dst_ip": "10.0.0.1",
         "dst_port": 22},
        {"kind": "flow", "ts": T0, "device_id": "s1", "dst_ip": "not-an-ip", "dst_port": 22},
        {"kind": "publish", "ts": T0, "device_id": "s1", "topic": "t", "payload": "secret"},
    ]
    answer = api.post("/v1/events", content=ndjson(rows),
                      headers={"Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["accepted"], report["rejected"]) == (3, 6)
    messages = {e["item"]: e["error"] for e in report["errors"]}
    assert "not valid JSON" in messages[4]
    assert "'kind' must be one of" in messages[5]
    assert "needs a 'topic'" in messages[6]
    assert "ISO 8601" in messages[7]
    assert "not an IP address" in messages[8]
    assert "unknown event field" in messages[9] and "payload" in messages[9]
    assert installation.services.ingest.events_seen == 3


def test_ok_monitor_mode_burst_becomes_a_finding(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    assert api.put("/v1/detection/modes/sensor", json={"mode": "monitor"}).status_code == 200
    answer = api.post("/v1/events", json=auth_failures("s1", 40))
    assert answer.status_code == 200, answer.text
    assert answer.json()["findings"] >= 1
    (finding,) = api.get("/v1/findings", params={"device": "s1"}).json()["items"]
    assert finding["type"] == "auth_failure_burst" and finding["mode"] == "monitor"
    assert finding["state"] == "open" and finding["device_type"] == "sensor"
    shown = api.get(f"/v1/findings/{finding['id']}").json()
    assert shown["evidence"]
    score = api.get("/v1/devices/s1/trust").json()
    (factor,) = [f for f in score["factors"] if f["factor"] == "finding"]
    assert factor["delta"] == 0 and "monitor mode" in factor["detail"]


def test_fail_whole_request_refusals_are_problems(installation: Installation) -> None:
    api = installation.api()
    viewer = installation.api(installation.token("viewer"))
    cases = [
        (api.post("/v1/events", content=b"[1,2", headers={"Content-Type": "application/json"}),
         400),
        (api.post("/v1/events", content=b"{}", headers={"Content-Type": "application/json"}),
         400),
        (api.post("/v1/events", content=b"x", headers={"Content-Type": "text/csv"}), 400),
        (api.post("/v1/events", content=b"\n\n",
                  headers={"Content-Type": "application/x-ndjson"}), 400),
        (viewer.post("/v1/events", json=auth_failures("s1", 1)), 403),
        (api.post("/v1/events", content=b"[" + b"{}," * 600_000 + b"{}]",
                  headers={"Content-Type": "application/json"}), 413),
    ]
    for answer, status in cases:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert installation.services.ingest.events_seen == 0


def test_fail_tenant_cannot_send_events_for_another_tenants_device(
        installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    add_device(api, "globex-1", org="globex")
    acme = installation.api(installation.token("operator", "acme"))
    report = acme.post("/v1/events", json=auth_failures("globex-1", 2)).json()
    assert report["accepted"] == 0 and report["rejected"] == 2
    assert report["errors"][0]["error"] == "device 'globex-1' not found"
    unknown = acme.post("/v1/events", json=auth_failures("nobody", 1)).json()
    assert unknown["errors"][0]["error"] == "device 'nobody' not found"
