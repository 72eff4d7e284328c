"""The policy linter: overly permissive allows, in the spirit of AWS IoT Device Defender's
"IoT policies overly permissive" audit check.

Denies are never flagged (they cannot over-grant). Each finding names the statement,
its line when the policy came from YAML, a severity and a stable code.
"""

from __future__ import annotations

from collections.abc import Callable

from iotiam.policy.actions import CONNECT, ENROLL, TOPIC_ACTIONS
from iotiam.policy.models import Effect, LintFinding, PolicyDocument, Severity, Statement
from iotiam.policy.topics import HASH, PLUS

#: first topic levels under which each device has its own namespace at level 2
DEVICE_NAMESPACES = ("devices",)
DEVICE_ID = "${device.id}"
_ORDER = list(Severity)
_Add = Callable[[Severity, str, str], None]


def lint_policy(
    document: PolicyDocument, *, device_namespaces: tuple[str, ...] = DEVICE_NAMESPACES
) -> list[LintFinding]:
    """Findings for ``document``, most severe first."""
    findings: list[LintFinding] = []
    for index, statement in enumerate(document.statements):
        if statement.effect is not Effect.ALLOW:
            continue
        label = document.label(index)

        def add(severity: Severity, code: str, message: str,
                _label: str = label, _line: int | None = statement.line) -> None:
            findings.append(LintFinding(severity, code, _label, message, _line))

        _lint_statement(statement, device_namespaces, add)
    return sorted(findings, key=lambda f: -_ORDER.index(f.severity))


def _lint_statement(statement: Statement, namespaces: tuple[str, ...], add: _Add) -> None:
    covered = statement.covered_actions()
    everything = "*" in statement.actions
    if everything:
        add(Severity.HIGH, "action-wildcard", "allows every action ('*')")
    if not statement.restricted:
        severity = Severity.CRITICAL if everything or "mqtt:*" in statement.actions \
            else Severity.HIGH
        add(severity, "unrestricted-resource",
            f"allows {', '.join(statement.actions)} on any resource: no topics, clients or "
            "paths restrict it")
        return
    topic_actions = [a for a in covered if a in TOPIC_ACTIONS]
    if topic_actions and statement.topics:
        mqtt_all = everything or "mqtt:*" in statement.actions
        for text in statement.topics:
            _lint_topic(text, topic_actions, mqtt_all, namespaces, add)
    client_actions = [a for a in covered if a in (CONNECT, ENROLL)]
    for text in statement.clients or ():
        if not client_actions:
            break
        if text == "*":
            add(Severity.HIGH, "any-client-id",
                f"allows {', '.join(client_actions)} with any client id (impersonation)")
        elif DEVICE_ID not in text:
            add(Severity.MEDIUM, "shared-client-id",
                f"client pattern {text!r} has no {DEVICE_ID}: every device it applies to "
                "may take the same identity")
    for text in statement.paths or ():
        levels = text.split("/")[1:]
        if all(level in (PLUS, HASH) for level in levels):
            add(Severity.HIGH, "all-paths", f"path {text!r} allows every HTTP path")


def _lint_topic(
    text: str, actions: list[str], mqtt_all: bool, namespaces: tuple[str, ...], add: _Add
) -> None:
    levels = text.split("/")
    doing = ", ".join(actions)
    if all(level in (PLUS, HASH) for level in levels):
        if mqtt_all and text == HASH:
            add(Severity.CRITICAL, "mqtt-all-on-all",
                "allows mqtt:* on '#': every MQTT action on every topic")
        else:
            add(Severity.HIGH, "all-topics",
                f"allows {doing} on {text!r}, which matches every topic"
                + (" of that depth" if HASH not in levels else ""))
        return
    if levels[0] in namespaces and len(levels) > 1:
        second = levels[1]
        if second in (PLUS, HASH):
            add(Severity.HIGH, "other-devices-namespace",
                f"allows {doing} on {text!r}: a wildcard where {DEVICE_ID} belongs reaches "
                "every device's namespace")
        elif "${" not in second:
            add(Severity.LOW, "fixed-device-namespace",
                f"{text!r} names device {second!r} literally; use {DEVICE_ID} unless the "
                "policy is attached to that device alone")
    if levels[0].startswith("$SYS"):
        add(Severity.MEDIUM, "sys-topics", f"allows {doing} on broker topics {text!r}")
    if "" in levels:
        add(Severity.INFO, "empty-level",
            f"{text!r} has an empty level (leading, trailing or double '/'): MQTT treats it "
            "as a level of its own")
