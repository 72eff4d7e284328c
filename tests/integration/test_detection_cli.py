"""``iotiam detect``, ``iotiam findings`` and ``iotiam trust`` against a live server."""

from __future__ import annotations

import json

import pytest

from .live_server import Server
from .test_cli import assert_one_line_error
from .test_dataplane_e2e import enroll

pytestmark = pytest.mark.integration

T0 = 1_772_366_400


def test_detect_cli_ok_replay_findings_lifecycle_and_trust(server: Server) -> None:
    enroll(server, "cli-det-1")  # active, with a certificate
    assert "sensor: enforce" in server.cli("detect", "mode", "sensor", "enforce").out
    assert "enforce" in server.cli("detect", "mode").out
    playbook = server.work_dir / "strict.json"
    playbook.write_text(json.dumps({"rules": [
        {"finding_type": "*", "min_severity": "low", "actions": ["alert"]},
        {"finding_type": "auth_failure_burst", "min_severity": "medium",
         "actions": ["quarantine"]}]}))
    assert "quarantine" in server.cli("detect", "playbook", "--set", playbook).out
    events = server.work_dir / "events.jsonl"
    lines = [json.dumps({"kind": "auth_failure", "ts": T0 + i, "device_id": "cli-det-1",
                         "source_ip": "203.0.113.9"}) for i in range(40)]
    lines.insert(5, "{broken")
    lines.append(json.dumps({"kind": "publish", "ts": T0, "device_id": "cli-det-1"}))
    events.write_text("\n".join(lines) + "\n")
    replay = server.cli("detect", "replay", events, check=False)
    assert replay.rc == 3, replay  # partly done: bad lines were reported
    assert "40 events ingested, 2 rejected" in replay.out
    # item 16: the playbook alerts but no channel is configured: said at start, counted
    assert "no alert channel is configured" in server.log_text()
    with server.api() as api:
        stats = api.get("/v1/detection/stats").json()
    assert stats["alerts_undelivered"]["no_channel"] >= 1 and stats["alerts_sent"] == 0
    assert "line 6: the line is not valid JSON" in replay.out
    assert "line 42: a publish event needs a 'topic'" in replay.out
    listed = json.loads(server.cli("findings", "list", "--device", "cli-det-1", "--json").out)
    (finding,) = listed
    assert finding["type"] == "auth_failure_burst"
    shown = server.cli("findings", "show", finding["id"]).out
    assert "auth_failure_burst" in shown and "evidence" in shown
    assert "quarantine" in finding["actions"]
    assert "acknowledged" in server.cli("findings", "ack", finding["id"], "--note", "mine").out
    trust = json.loads(server.cli("trust", "show", "cli-det-1", "--json").out)
    assert {"finding", "state"} <= {f["factor"] for f in trust["factors"]}
    with_finding = trust["score"]
    assert "false_positive" in server.cli("findings", "resolve", finding["id"],
                                          "--false-positive").out
    trust = json.loads(server.cli("trust", "show", "cli-det-1", "--json").out)
    assert not {"finding", "state"} & {f["factor"] for f in trust["factors"]}
    assert trust["score"] > with_finding
    with server.api() as api:  # the false positive lifted its quarantine
        assert api.get("/v1/devices/cli-det-1").json()["state"] == "active"
    # the same burst is normal now: replaying it raises nothing new
    again = server.cli("detect", "replay", events, check=False)
    assert "0 findings raised" in again.out


@pytest.mark.parametrize(("args", "message"), [
    (("detect", "mode", "sensor", "panic"), "learn, monitor, enforce"),
    (("detect", "mode", "toaster", "learn"), "not found"),
    (("detect", "mode", "sensor"), "give both"),
    (("findings", "show", "fnd-000"), "not found"),
    (("findings", "resolve", "fnd-000"), "not found"),
    (("trust", "show", "nobody"), "not found"),
    (("detect", "replay", "/nonexistent/events.jsonl"), "cannot read"),
    (("detect", "lift", "nobody"), "not found"),
], ids=["fail/mode", "fail/type", "fail/half", "fail/finding", "fail/resolve",
        "fail/trust", "fail/file", "fail/lift"])
def test_detect_cli_fail_one_line_errors(server: Server, args: tuple[str, ...],
                                         message: str) -> None:
    line = assert_one_line_error(server.cli(*args, check=False))
    assert message in line


def test_detect_cli_fail_bad_playbook_changes_nothing(server: Server) -> None:
    before = server.cli("detect", "playbook").out
    bad = server.work_dir / "playbook.json"
    bad.write_text(json.dumps({"rules": [{"finding_type": "*", "actions": ["nuke"]}]}))
    line = assert_one_line_error(server.cli("detect", "playbook", "--set", bad, check=False))
    assert "unknown action" in line
    assert server.cli("detect", "playbook").out == before
