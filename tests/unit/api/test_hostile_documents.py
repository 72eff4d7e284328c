"""G10 for documents read from request bodies: deep nesting, duplicate keys and YAML
aliases get a 4xx problem (or the hook's deny), never a 5xx, and store nothing.

Each body here once reached a decoder that recursed (``RecursionError``, a 500) or let
the last of two equal keys silently win.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from expect import assert_problem
from fastapi.testclient import TestClient
from fleet import add_device

from conftest import Installation

HOOK = "/v1/hooks/emqx/authz"
YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}
DEEP = 1000


def deep_list(depth: int = DEEP) -> str:
    """``[[[…]]]`` nested ``depth`` deep (JSON, and a YAML flow sequence)."""
    return "[" * depth + "]" * depth


def deep_object(depth: int = DEEP) -> str:
    """``{"a": {"a": …}}`` nested ``depth`` deep."""
    return '{"a": ' * depth + "1" + "}" * depth


def alias_bomb(levels: int = 9) -> str:
    """The YAML "billion laughs": each level repeats the one before nine times."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "name: p\nversion: 1\n" + "\n".join(lines) + "\n"


def policy_names(api: TestClient) -> set[str]:
    """Names of the stored policies."""
    return {p["name"] for p in api.get("/v1/policies").json()["items"]}


POLICIES = [
    (deep_list(), YAML, "nested more than"),
    ("name: p\nversion: 1\nstatements: " + deep_list(100_000) + "\n", YAML, "nested more than"),
    ('{"name": "p", "statements": ' + deep_list() + "}", JSON, "nested more than"),
    ('{"name": "p", "statements": ' + deep_object() + "}", JSON, "nested more than"),
    (alias_bomb(), YAML, "anchors or aliases"),
    ("name: p\nname: q\nversion: 1\n", YAML, "the key 'name' twice"),
    ('{"name": "p", "name": "q", "version": 1}', JSON, "the key 'name' twice"),
    ("name: p\nversion: " + "9" * 5000 + "\n", YAML, "bad value"),
]
POLICY_IDS = ["fail/deep-yaml", "fail/deep-yaml-100k", "fail/deep-json", "fail/deep-json-object",
              "fail/alias-bomb", "fail/duplicate-yaml", "fail/duplicate-json",
              "fail/huge-integer"]


@pytest.mark.parametrize(("text", "headers", "detail"), POLICIES, ids=POLICY_IDS)
def test_policy_write_fail_hostile(installation: Installation, text: str,
                                   headers: dict[str, str], detail: str) -> None:
    api = installation.api()
    before = policy_names(api)
    assert_problem(api.put("/v1/policies", content=text, headers=headers), 400, detail)
    assert policy_names(api) == before


@pytest.mark.parametrize(("text", "headers", "detail"), POLICIES, ids=POLICY_IDS)
def test_policy_lint_fail_hostile(installation: Installation, text: str,
                                  headers: dict[str, str], detail: str) -> None:
    answer = installation.api().post("/v1/policies/lint", content=text, headers=headers)
    assert_problem(answer, 400, detail)


EVENT: dict[str, Any] = {"kind": "auth_failure", "ts": 1_772_366_400.0, "device_id": "s1",
         "source_ip": "198.51.100.7", "reason": "bad certificate"}


@pytest.mark.parametrize(("body", "detail"), [
    (deep_list().encode(), "nested more than"),
    (("[" + deep_object() + "]").encode(), "nested more than"),
    (b'[{"kind": "auth_failure", "kind": "flow", "ts": 1, "device_id": "s1"}]',
     "the key 'kind' twice"),
], ids=["fail/deep-array", "fail/deep-object", "fail/duplicate-key"])
def test_events_json_fail_hostile(installation: Installation, body: bytes, detail: str) -> None:
    api = installation.api()
    add_device(api, "s1")
    assert_problem(api.post("/v1/events", content=body, headers=JSON), 400, detail)
    assert installation.services.ingest.events_seen == 0


def test_events_ndjson_fail_hostile_lines_alone(installation: Installation) -> None:
    """A hostile line is reported as its line; the good lines around it land (G12)."""
    api = installation.api()
    add_device(api, "s1")
    lines = [json.dumps(EVENT), deep_list(), deep_object(100_000),
             '{"kind": "auth_failure", "kind": "flow", "ts": 1, "device_id": "s1"}',
             json.dumps({**EVENT, "ts": EVENT["ts"] + 1})]
    answer = api.post("/v1/events", content="\n".join(lines).encode(), headers=NDJSON)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["accepted"], report["rejected"]) == (2, 3)
    errors = {e["item"]: e["error"] for e in report["errors"]}
    assert "nested more than" in errors[2] and "nested more than" in errors[3]
    assert "the key 'kind' twice" in errors[4]
    assert installation.services.ingest.events_seen == 2


def test_events_ndjson_fail_only_hostile_lines(installation: Installation) -> None:
    api = installation.api()
    answer = api.post("/v1/events", content=(deep_list() + "\n").encode(), headers=NDJSON)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["accepted"], answer.json()["rejected"]) == (0, 1)


@pytest.mark.parametrize(("body", "detail"), [
    (deep_list().encode(), "nested more than"),
    (('{"rules": ' + deep_list() + "}").encode(), "nested more than"),
    (b'{"rules": [], "rules": [{"finding_type": "x"}]}', "the key 'rules' twice"),
], ids=["fail/deep", "fail/deep-rules", "fail/duplicate-key"])
def test_playbook_fail_hostile(installation: Installation, body: bytes, detail: str) -> None:
    api = installation.api()
    before = api.get("/v1/detection/playbook").json()
    assert_problem(api.put("/v1/detection/playbook", content=body, headers=JSON), 400, detail)
    assert api.get("/v1/detection/playbook").json() == before


def hook_verdict(answer: httpx.Response) -> tuple[str, str]:
    """EMQX's result and iotiam's reason header."""
    assert answer.status_code == 200, answer.text
    return answer.json()["result"], answer.headers.get("x-iotiam-reason", "")


@pytest.mark.parametrize(("body", "reason"), [
    (deep_list(1000).encode(), "nested more than"),
    (b'{"username": "dev-1", "topic": "devices/dev-1/x", "action": "subscribe", '
     b'"action": "publish"}', "the key 'action' twice"),
    (b'{"username": "nobody", "username": "dev-1", "topic": "devices/dev-1/x", '
     b'"action": "publish"}', "the key 'username' twice"),
], ids=["fail/deep", "fail/duplicate-action", "fail/duplicate-username"])
def test_hook_fail_closed_on_hostile_body(installation: Installation, body: bytes,
                                          reason: str) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    emqx = installation.api(installation.token("viewer"))
    result, said = hook_verdict(emqx.post(HOOK, content=body, headers=JSON))
    assert result == "deny" and reason in said


def test_events_ok_a_bug_on_one_event_fails_it_alone(installation: Installation,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """G12 in the events batch: a detector that raises on one device's event rejects that
    event (reported, logged); the events around it are scored."""
    api = installation.api()
    add_device(api, "s1")
    add_device(api, "s2")
    engine = installation.services.ingest.engine
    process = engine.process

    def buggy(event: Any) -> Any:
        if event.device_id == "s2":
            raise RuntimeError("a detector bug")
        return process(event)

    monkeypatch.setattr(engine, "process", buggy)
    rows = [EVENT, {**EVENT, "device_id": "s2"}, {**EVENT, "ts": EVENT["ts"] + 1}]
    answer = api.post("/v1/events", content="\n".join(json.dumps(r) for r in rows).encode(),
                      headers=NDJSON)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["accepted"], report["rejected"]) == (2, 1)
    assert "internal error" in report["errors"][0]["error"]
    assert report["errors"][0]["item"] == 2
