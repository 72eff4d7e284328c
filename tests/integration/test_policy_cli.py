"""``iotiam policy`` and ``iotiam site`` against a live server: write, attach, test (exit
codes 0 on Permit, 2 on Deny), who-can, what-can, lint, and G10 on the CLI."""

from __future__ import annotations

import json
import secrets

import pytest

from iotiam.testing import make_csr

from .live_server import CliResult, Server

pytestmark = pytest.mark.integration

POLICY = """\
name: {name}
version: {version}
statements:
  - sid: line
    effect: allow
    actions: [mqtt:publish]
    topics: ["lines/${{device.site}}/{level}/#"]
    conditions:
      time_window: {{days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}}
      source_networks: ["${{device.site}}"]
"""


def one_line_error(result: CliResult, rc: int = 1) -> str:
    """G10 on the CLI: exit ``rc`` (1 a refusal, 2 a command line that does not parse) and
    one ``error:`` line on stderr."""
    assert result.rc == rc, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0]


def _names() -> tuple[str, str, str]:
    suffix = secrets.token_hex(3)
    return f"plant-{suffix}", f"acme-{suffix}", f"press-{suffix}"


def _set_up(server: Server) -> tuple[str, str, str]:
    """A site, a tenant with one device at that site, and a policy file: their names,
    made with ``iotiam site set``, ``org create`` and ``device add``."""
    site, tenant, device = _names()
    created = server.cli("site", "set", site, "--tz", "Europe/Berlin", "--network",
                         "10.7.0.0/16", "--network", "fd07::/64")
    assert created.out.strip() == (f"created site {site} (Europe/Berlin; 10.7.0.0/16, "
                                   "fd07::/64)")
    server.cli("org", "create", tenant, "--kind", "tenant", "--parent", "root")
    server.cli("device", "add", device, "--type", "sensor", "--org", tenant, "--site", site)
    certify(server, device)
    return site, tenant, device


def _set_up_through_api(server: Server) -> tuple[str, str, str]:
    """What ``_set_up`` makes, through the API, for tests whose subject is elsewhere (each
    ``iotiam`` run costs a Python start-up)."""
    site, tenant, device = _names()
    with server.api() as api:
        for answer in (
            api.put(f"/v1/sites/{site}", json={"timezone": "Europe/Berlin",
                                               "networks": ["10.7.0.0/16", "fd07::/64"]}),
            api.post("/v1/org-units", json={"id": tenant, "kind": "tenant",
                                            "parent": "root"}),
            api.post("/v1/devices", json={"id": device, "type": "sensor", "org": tenant,
                                          "site": site}),
        ):
            assert answer.status_code == 201, answer.text
    certify(server, device)
    return site, tenant, device


def certify(server: Server, device: str) -> None:
    """Give a device a certificate: it is live (a pending one is denied everything)."""
    with server.api() as api:
        answer = api.post("/v1/certificates", json={"device": device,
                                                    "csr": make_csr(device).decode()})
    assert answer.status_code == 201, answer.text


def test_policy_put_attach_test_ok(server: Server) -> None:
    site, tenant, device = _set_up(server)
    name = f"lines-{secrets.token_hex(3)}"
    document = server.work_dir / f"{name}.yaml"
    document.write_text(POLICY.format(name=name, version=1, level="telemetry"))
    put = server.cli("policy", "put", document, "--owner", tenant)
    assert put.out.splitlines()[0] == f"stored {name} version 1 (owner /root/{tenant}/)"
    attached = server.cli("policy", "attach", name, "--org", tenant)
    assert attached.out.strip() == f"attached {name} to org-unit {tenant} (scope /root/{tenant}/)"

    topic = f"lines/{site}/telemetry/t1"
    monday = "2026-03-02T10:00+01:00"
    permit = server.cli("policy", "test", "--device", device, "--action", "publish",
                        "--topic", topic, "--at", monday, "--from", "10.7.1.2")
    assert permit.rc == 0
    assert permit.out.startswith(f"Permit: {device} mqtt:publish '{topic}' at "
                                 "2026-03-02T10:00:00+01:00"), permit.out
    assert f"allow: policy '{name}' v1 statement 'line' via org-unit {tenant}" in permit.out
    # a Sunday, another network, no address: Deny, exit 2, with the reason
    for extra in (["--at", "2026-03-01T10:00+01:00", "--from", "10.7.1.2"],
                  ["--at", monday, "--from", "10.8.1.2"], ["--at", monday]):
        denied = server.cli("policy", "test", "--device", device, "--topic", topic, *extra,
                            check=False)
        assert denied.rc == 2, denied
        assert denied.out.startswith("Deny: "), denied.out
        assert "reason: no policy allows mqtt:publish" in denied.out
    as_json = server.cli("policy", "test", "--device", device, "--topic", f"devices/{device}/x",
                         "--json")
    assert json.loads(as_json.out)["decision"] == "permit"
    connect = server.cli("policy", "test", "--device", device, "--action", "connect")
    assert connect.out.startswith(f"Permit: {device} mqtt:connect '{device}'")

    # a new version, its diff, show and list
    document.write_text(POLICY.format(name=name, version=2, level="status"))
    second = server.cli("policy", "put", document)
    assert f"stored {name} version 2" in second.out
    assert "- statement line: topics: 'lines/${device.site}/telemetry/#'" in second.out
    diff = server.cli("policy", "diff", name, "1", "2")
    assert diff.out.splitlines() == [
        "- statement line: topics: 'lines/${device.site}/telemetry/#'",
        "+ statement line: topics: 'lines/${device.site}/status/#'"]
    shown = server.cli("policy", "show", name, "--version", "1")
    assert shown.out.startswith(f"# {name} version 1 of [1, 2], owner /root/{tenant}/")
    assert POLICY.format(name=name, version=1, level="telemetry") in shown.out
    listed = json.loads(server.cli("policy", "list", "--json").out)
    mine = next(p for p in listed if p["name"] == name)
    assert mine["version"] == 2 and mine["attachments"][0]["target"]["id"] == tenant
    assert server.cli("policy", "test", "--device", device, "--topic", topic, "--at", monday,
                      "--from", "10.7.1.2", check=False).rc == 2

    detached = server.cli("policy", "detach", name, "--org", tenant)
    assert detached.out.strip() == f"detached {name} from org-unit {tenant}"
    sites = json.loads(server.cli("site", "list", "--json").out)
    assert {"name": site, "timezone": "Europe/Berlin",
            "networks": ["10.7.0.0/16", "fd07::/64"]} in sites


def test_policy_who_can_and_what_can_ok(server: Server) -> None:
    _, tenant, device = _set_up_through_api(server)
    other = f"{device}-b"
    server.register(other, org=tenant)
    certify(server, other)
    name = f"shared-{secrets.token_hex(3)}"
    document = server.work_dir / f"{name}.yml"
    document.write_text(f"name: {name}\nversion: 1\nstatements:\n"
                        "  - {sid: s, effect: allow, actions: [mqtt:publish], "
                        f"topics: ['shared/{tenant}/#']}}\n"
                        "  - {sid: d, effect: deny, actions: [mqtt:publish], "
                        f"topics: ['shared/{tenant}/secret']}}\n")
    server.cli("policy", "put", document, "--owner", tenant)
    server.cli("policy", "attach", name, "--type", "sensor", "--scope", tenant)

    who = json.loads(server.cli("policy", "who-can", "--action", "publish", "--topic",
                                f"shared/{tenant}/x", "--json").out)
    assert sorted(d["device"] for d in who["devices"]) == sorted([device, other])
    assert [g["attachment"]["target"] for g in who["targets"]] == [
        {"kind": "device-type", "id": "sensor"}]
    table = server.cli("policy", "who-can", "--topic", f"shared/{tenant}/x")
    assert f"2 devices may mqtt:publish on 'shared/{tenant}/x'" in table.out
    assert f"granted through device-type sensor: policy '{name}' v1 statement 's'" in table.out
    nobody = json.loads(server.cli("policy", "who-can", "--topic", f"shared/{tenant}/secret",
                                   "--json").out)
    assert nobody["devices"] == []
    own = json.loads(server.cli("policy", "who-can", "--topic", f"devices/{device}/t",
                                "--json").out)
    assert [d["device"] for d in own["devices"]] == [device]

    what = server.cli("policy", "what-can", "--device", device).out.splitlines()
    assert what[0].startswith(f"deny mqtt:publish on 'shared/{tenant}/secret'")
    assert any(line.startswith(f"allow mqtt:publish on 'devices/{device}/#'")
               or line.startswith(f"allow mqtt:publish, mqtt:subscribe, mqtt:receive on "
                                  f"'devices/{device}/#'") for line in what), what
    assert any(f"'shared/{tenant}/#'" in line and "partly overridden" in line
               for line in what), what


def test_policy_lint_exit_codes(server: Server) -> None:
    clean = server.work_dir / "clean.yaml"
    clean.write_text("name: clean\nversion: 1\nstatements:\n"
                     "  - {effect: allow, actions: [mqtt:publish], "
                     "topics: ['devices/${device.id}/#']}\n")
    ok = server.cli("policy", "lint", clean)
    assert ok.out.strip() == "clean version 1: no findings"
    loose = server.work_dir / "loose.json"
    loose.write_text(json.dumps({"name": "loose", "version": 1, "statements": [
        {"effect": "allow", "actions": ["mqtt:subscribe"], "topics": ["#"]}]}))
    found = server.cli("policy", "lint", loose, check=False)
    assert found.rc == 2, found
    assert "high: statement 1: allows mqtt:subscribe on '#'" in found.out
    assert server.cli("policy", "lint", loose, "--fail-on", "critical").rc == 0
    broken = server.work_dir / "broken.yaml"
    broken.write_text("name: broken\nversion: 1\nstatements:\n  - effect: allow\n"
                      "    actions: [mqtt:publsh]\n    topics: [a]\n")
    error = one_line_error(server.cli("policy", "lint", broken, check=False))
    assert "line 5: statement 1: action 'mqtt:publsh' is unknown (did you mean " \
        "'mqtt:publish'?)" in error, error
    assert not [p for p in json.loads(server.cli("policy", "list", "--json").out)
                if p["name"] in ("clean", "loose", "broken")]


@pytest.mark.parametrize("args", [
    ("policy", "attach", "iotiam-default-device", "--org", "root", "--device", "x"),
    ("policy", "attach", "iotiam-default-device"),
    ("policy", "test", "--device", "nosuch-device", "--topic", "a/b"),
    ("policy", "test", "--device", "x", "--topic", "a/b", "--at", "tomorrow"),
    ("policy", "test", "--device", "x"),
    ("policy", "put", "/nonexistent/policy.yaml"),
    ("policy", "show", "no-such-policy"),
    ("policy", "who-can", "--topic", "a/#/b"),
    ("policy", "lint", "/nonexistent/policy.yaml", "--fail-on", "severe"),
    ("site", "set", "x", "--tz", "Mars/Olympus"),
    ("site", "set", "x", "--tz", "UTC", "--network", "10.0.0.1/8"),
], ids=["fail/two-targets", "fail/no-target", "fail/unknown-device", "fail/bad-time",
        "fail/no-topic", "fail/missing-file", "fail/unknown-policy", "fail/bad-filter",
        "fail/bad-severity", "fail/bad-zone", "fail/bad-cidr"])
def test_policy_cli_fail_one_line(server: Server, args: tuple[str, ...]) -> None:
    # naming no target or two is a command line that does not parse: a usage error
    usage = args[:2] == ("policy", "attach")
    one_line_error(server.cli(*args, check=False), rc=2 if usage else 1)


def test_emqx_hook_over_https_ok(server: Server) -> None:
    _, _, device = _set_up_through_api(server)
    with server.api() as api:
        created = api.post("/v1/tokens", json={"name": "emqx", "role": "viewer"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    body = {"clientid": device, "username": device, "peerhost": "10.7.0.9",
            "topic": f"devices/{device}/telemetry", "action": "publish", "qos": "0",
            "retain": "false"}
    with server.api(token) as emqx:
        allowed = emqx.post("/v1/hooks/emqx/authz", json=body)
        denied = emqx.post("/v1/hooks/emqx/authz", json={**body, "topic": "devices/x/y"})
        unknown = emqx.post("/v1/hooks/emqx/authz", json={**body, "username": "nobody"})
        garbage = emqx.post("/v1/hooks/emqx/authz", content=b"{",
                            headers={"Content-Type": "application/json"})
    with server.api("iotiam_0000000000000000_" + "x" * 43) as stranger:
        forged = stranger.post("/v1/hooks/emqx/authz", json=body)
    assert (allowed.status_code, allowed.json()) == (200, {"result": "allow"})
    for answer in (denied, unknown, garbage, forged):
        assert (answer.status_code, answer.json()) == (200, {"result": "deny"}), answer.text
        assert answer.headers["x-iotiam-reason"]
