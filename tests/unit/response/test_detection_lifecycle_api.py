"""Issue 15, classes 5 and 6 through the API: unknown clients' auth failures are monitored
(a settable mode), an upload sees the findings its events raised, monitor mode says what
enforce would have done; bad input is a problem, another tenant's upload is not found."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from fleet import add_device, add_org_unit

from conftest import Installation
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.models import Event
from iotiam.eventstream.wire import decode_events, encode_events
from iotiam.kernel import SYSTEM
from iotiam.response.service import BATCH_RETENTION

T0 = 1_772_366_400.0


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Use cases on the memory stores."""
    return memory_installation


def stuffing(source_ip: str, identities: int, *, every: float = 20.0,
             start: float = T0) -> list[dict[str, object]]:
    """Paced credential stuffing: one failure per identity, never a burst per minute."""
    return [{"kind": "auth_failure", "ts": start + i * every, "client_id": f"guess-{i:03d}",
             "source_ip": source_ip, "reason": "bad username or password"}
            for i in range(identities)]


def test_ok_unknown_clients_stuffing_is_found_by_default(installation: Installation) -> None:
    api = installation.api()
    modes = api.get("/v1/detection/modes").json()
    assert (modes["default"], modes["unknown"]) == ("learn", "monitor")
    answer = api.post("/v1/events", json=stuffing("203.0.113.9", 12)).json()
    assert answer["accepted"] == 12 and answer["batch"].startswith("bat-")
    found = api.get(answer["findings_url"]).json()
    (finding,) = found["items"]
    assert finding["type"] == "auth_failure_burst" and finding["device_id"] is None
    assert finding["mode"] == "monitor" and finding["evidence"]["source_ip"] == "203.0.113.9"
    assert finding["evidence"]["identities"] >= 8
    assert "guess-000" in finding["evidence"]["client_ids"]


def test_ok_unknown_mode_is_settable_and_learn_silences_it(installation: Installation) -> None:
    api = installation.api()
    assert api.put("/v1/detection/modes/_unknown", json={"mode": "learn"}).json() == {
        "device_type": "_unknown", "mode": "learn"}
    assert api.get("/v1/detection/modes").json()["unknown"] == "learn"
    answer = api.post("/v1/events", json=stuffing("203.0.113.9", 12)).json()
    assert answer["findings"] == 0
    assert api.get(answer["findings_url"]).json()["items"] == []


def test_ok_two_addresses_are_two_findings_and_a_later_episode_a_third(
        installation: Installation) -> None:
    api = installation.api()
    first = api.post("/v1/events", json=[*stuffing("203.0.113.9", 10),
                                         *stuffing("198.51.100.4", 10)]).json()
    assert len(api.get(first["findings_url"]).json()["items"]) == 2
    # the same address a day later: a new episode with its own time, not a repeat
    later = api.post("/v1/events", json=stuffing("203.0.113.9", 10, start=T0 + 86400)).json()
    (again,) = api.get(later["findings_url"]).json()["items"]
    assert again["at"].startswith("2026-03-02") and again["subject"] == "source:203.0.113.9"
    assert again["last_event_at"] >= again["at"]
    items = api.get("/v1/findings", params={"type": "auth_failure_burst"}).json()["items"]
    assert len(items) == 3


def test_ok_would_act_counts_monitor_findings_by_type(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    assert api.put("/v1/detection/modes/sensor", json={"mode": "monitor"}).status_code == 200
    burst = [{"kind": "auth_failure", "ts": T0 + i, "device_id": "s1",
              "source_ip": "198.51.100.7"} for i in range(40)]
    assert api.post("/v1/events", json=burst).json()["findings"] >= 1
    api.post("/v1/events", json=stuffing("203.0.113.9", 40))
    report = api.get("/v1/detection/would-act", params={"days": 1}).json()
    (row,) = report["by_finding_type"]
    # the device's burst (high: >= 30 failures) would be quarantined by the default
    # playbook; the deviceless stuffing finding can only be alerted on
    assert row["finding_type"] == "auth_failure_burst" and row["findings"] == 2
    assert (row["would_alert"], row["would_quarantine"], row["would_revoke"]) == (2, 1, 0)
    by_device_type = {r["device_type"]: r["findings"] for r in report["by_device_type"]}
    assert by_device_type == {"sensor": 1, "_unknown": 1}


def test_fail_bad_input_is_a_problem(installation: Installation) -> None:
    api = installation.api()
    cases = [
        (api.get("/v1/detection/would-act", params={"days": 0}), 400),
        (api.get("/v1/detection/would-act", params={"days": 91}), 400),
        (api.get("/v1/events/batches/bat-nope/findings"), 404),
        (api.put("/v1/detection/modes/_unknown", json={"mode": "panic"}), 400),
        (api.put("/v1/detection/modes/_nothing", json={"mode": "monitor"}), 404),
    ]
    for answer, status in cases:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert api.get("/v1/detection/modes").json()["unknown"] == "monitor"


def test_fail_tenant_cannot_read_another_tenants_batch(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    add_device(api, "acme-1", org="acme")
    api.put("/v1/detection/modes/sensor", json={"mode": "monitor"})
    acme = installation.api(installation.token("operator", "acme"))
    globex = installation.api(installation.token("operator", "globex"))
    burst = [{"kind": "auth_failure", "ts": T0 + i, "device_id": "acme-1",
              "source_ip": "198.51.100.7"} for i in range(10)]
    answer = acme.post("/v1/events", json=burst).json()
    assert len(acme.get(answer["findings_url"]).json()["items"]) == 1
    refused = globex.get(answer["findings_url"])
    assert refused.status_code == 404
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert globex.get("/v1/detection/would-act").json()["monitor"]["findings"] == 0
    # a tenant admin cannot set the unknown clients' mode (it is global)
    tenant_admin = installation.api(installation.token("admin", "acme"))
    assert tenant_admin.put("/v1/detection/modes/_unknown",
                            json={"mode": "learn"}).status_code == 404


def test_ok_a_stream_worker_links_the_findings_it_raises_later(
        installation: Installation) -> None:
    """With an event stream the upload's events are scored by a worker after the answer:
    the batch travels in the stream's rows, and the worker's findings join the batch."""
    api = installation.api()
    batch = installation.services.response.open_batch(SYSTEM, 12)
    assert api.get(f"/v1/events/batches/{batch.id}/findings").json()["items"] == []
    events = [replace(Event.from_json(e), batch=batch.id)
              for e in stuffing("203.0.113.9", 12)]
    worker = DetectionEngine(modes=installation.services.response)
    installation.services.response.report(
        worker.process_many(decode_events(encode_events(events))))
    (finding,) = api.get(f"/v1/events/batches/{batch.id}/findings").json()["items"]
    assert finding["evidence"]["source_ip"] == "203.0.113.9"


def test_ok_uploads_are_forgotten_after_retention_and_their_findings_stay(
        installation: Installation) -> None:
    api = installation.api()
    add_device(api, "acme-1")
    api.put("/v1/detection/modes/sensor", json={"mode": "monitor"})
    burst = [{"kind": "auth_failure", "ts": T0 + i, "device_id": "acme-1",
              "source_ip": "198.51.100.7"} for i in range(10)]
    old = api.post("/v1/events", json=burst).json()
    (finding,) = api.get(old["findings_url"]).json()["items"]
    installation.clock.advance(BATCH_RETENTION - timedelta(seconds=1))
    fresh = installation.services.response.open_batch(SYSTEM, 1)
    assert installation.services.response.prune_batches() == 0
    installation.clock.advance(timedelta(seconds=2))
    assert installation.services.response.prune_batches() == 1
    assert api.get(old["findings_url"]).status_code == 404
    assert api.get(f"/v1/events/batches/{fresh.id}/findings").status_code == 200
    assert api.get(f"/v1/findings/{finding['id']}").status_code == 200
