"""The linter flags overly permissive allows (AWS Device Defender's audit check in spirit)."""

from __future__ import annotations

import pytest

from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY, QUARANTINE_POLICY
from iotiam.policy.lint import lint_policy
from iotiam.policy.models import Severity
from policy.fakes import policy


def _lint(statement: str) -> list[tuple[Severity, str]]:
    doc = policy(f"name: p\nversion: 1\nstatements:\n  - {statement}\n")
    return [(f.severity, f.code) for f in lint_policy(doc)]


@pytest.mark.parametrize(("statement", "expected"), [
    ("{effect: allow, actions: [mqtt:publish], topics: ['#']}",
     [(Severity.HIGH, "all-topics")]),
    ("{effect: allow, actions: [mqtt:subscribe], topics: ['+/#']}",
     [(Severity.HIGH, "all-topics")]),
    ("{effect: allow, actions: ['mqtt:*'], topics: ['#']}",
     [(Severity.CRITICAL, "mqtt-all-on-all")]),
    ("{effect: allow, actions: [mqtt:publish], topics: ['devices/+/telemetry']}",
     [(Severity.HIGH, "other-devices-namespace")]),
    ("{effect: allow, actions: [mqtt:subscribe], topics: ['devices/#']}",
     [(Severity.HIGH, "other-devices-namespace")]),
    ("{effect: allow, actions: [mqtt:publish]}", [(Severity.HIGH, "unrestricted-resource")]),
    ("{effect: allow, actions: ['mqtt:*']}", [(Severity.CRITICAL, "unrestricted-resource")]),
    ("{effect: allow, actions: ['*']}",
     [(Severity.CRITICAL, "unrestricted-resource"), (Severity.HIGH, "action-wildcard")]),
    ("{effect: allow, actions: [mqtt:connect], clients: ['*']}",
     [(Severity.HIGH, "any-client-id")]),
    ("{effect: allow, actions: [mqtt:connect], clients: ['gateway']}",
     [(Severity.MEDIUM, "shared-client-id")]),
    ("{effect: allow, actions: [mqtt:subscribe], topics: ['$SYS/broker/#']}",
     [(Severity.MEDIUM, "sys-topics")]),
    ("{effect: allow, actions: [mqtt:publish], topics: ['devices/d7/x']}",
     [(Severity.LOW, "fixed-device-namespace")]),
    ("{effect: allow, actions: [mqtt:publish], topics: ['/devices/${device.id}']}",
     [(Severity.INFO, "empty-level")]),
    ("{effect: allow, actions: ['http:*'], paths: ['/#']}", [(Severity.HIGH, "all-paths")]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_lint_findings(statement: str, expected: list[tuple[Severity, str]]) -> None:
    assert _lint(statement) == expected


@pytest.mark.parametrize("statement", [
    "{effect: allow, actions: [mqtt:publish], topics: ['devices/${device.id}/#']}",
    "{effect: allow, actions: [mqtt:connect], clients: ['${device.id}']}",
    "{effect: deny, actions: ['*']}",
    "{effect: deny, actions: [mqtt:publish], topics: ['#']}",
    "{effect: allow, actions: [mqtt:subscribe], topics: ['firmware/${device.type}/#']}",
], ids=["ok/own-namespace", "ok/own-client", "ok/deny-all", "ok/deny-topics",
        "ok/firmware"])
def test_lint_quiet(statement: str) -> None:
    assert _lint(statement) == []


def test_builtin_policies_are_clean() -> None:
    assert lint_policy(DEFAULT_DEVICE_POLICY) == []
    assert lint_policy(QUARANTINE_POLICY) == []


def test_finding_names_statement_and_line() -> None:
    doc = policy("name: p\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: [mqtt:publish], topics: [ok]}\n"
                 "  - sid: wide\n    effect: allow\n    actions: ['mqtt:*']\n"
                 "    topics: ['#']\n")
    finding = lint_policy(doc)[0]
    assert str(finding) == ("critical: line 5: statement wide: allows mqtt:* on '#': every MQTT "
                            "action on every topic [mqtt-all-on-all]")


def test_custom_device_namespaces() -> None:
    doc = policy("name: p\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: [mqtt:publish], topics: ['things/+/x']}\n")
    assert lint_policy(doc) == []
    assert lint_policy(doc, device_namespaces=("things",))[0].code == "other-devices-namespace"
