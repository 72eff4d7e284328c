"""Policies in the real database (SQLite and PostgreSQL) behind the policy use cases."""

from __future__ import annotations

import pytest
from fleet import add_device, issue

from conftest import Installation
from iotiam.errors import Conflict, NotFound
from iotiam.kernel import SYSTEM
from iotiam.policy.actions import CONNECT, PUBLISH, SUBSCRIBE
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY
from iotiam.policy.models import AttachmentTarget, Subject, TargetKind

PLANT_POLICY = """\
name: line-telemetry
version: 1
statements:
  - {sid: line, effect: allow, actions: [mqtt:publish], topics: ["lines/${device.site}/#"]}
"""


def subject_of(installation: Installation, device_id: str) -> Subject:
    device = installation.services.inventory.get_device(SYSTEM, device_id)
    return Subject.from_device(device)


def test_default_policy_ok_installed_by_init(installation: Installation) -> None:
    services = installation.services
    stored = services.policies.get(SYSTEM, DEFAULT_DEVICE_POLICY.name)
    assert stored.owner_path == "/root/"
    add_device(installation.api(), "dev-1")
    issue(installation.api(), "dev-1")  # enrolled: active (a pending device gets nothing)
    subject = subject_of(installation, "dev-1")
    decide = services.decisions.decide
    assert decide(subject, CONNECT, "dev-1").allowed
    assert decide(subject, PUBLISH, "devices/dev-1/telemetry").allowed
    assert decide(subject, SUBSCRIBE, "devices/dev-1/#").allowed
    denied = decide(subject, PUBLISH, "devices/dev-2/telemetry")
    assert not denied.allowed and denied.reason


def test_write_attach_ok_versions_and_generation(installation: Installation) -> None:
    services = installation.services
    api = installation.api()
    assert api.post("/v1/devices", json={"id": "dev-1", "type": "sensor",
                                         "site": "berlin"}).status_code == 201
    add_device(api, "dev-2")  # no site: the variable is missing, so the allow never matches
    issue(api, "dev-1")
    issue(api, "dev-2")
    before = services.policies.generation()
    services.policies.write(SYSTEM, PLANT_POLICY)
    services.policies.attach(SYSTEM, "line-telemetry",
                             AttachmentTarget(TargetKind.DEVICE_TYPE, "sensor"))
    assert services.policies.generation() == before + 2
    engine = services.decisions.refresh()
    assert engine.generation == before + 2
    device = services.inventory.get_device(SYSTEM, "dev-1")
    subject = Subject.from_device(device)
    assert services.decisions.decide(subject, PUBLISH, "lines/berlin/x").allowed
    assert not services.decisions.decide(subject, PUBLISH, "lines/tokyo/x").allowed
    siteless = subject_of(installation, "dev-2")
    assert not services.decisions.decide(siteless, PUBLISH, "lines//x").allowed
    with pytest.raises(Conflict, match="version 2"):
        services.policies.write(SYSTEM, PLANT_POLICY)
    second = PLANT_POLICY.replace("version: 1", "version: 2").replace("lines/", "cells/")
    result = services.policies.write(SYSTEM, second)
    assert result.diff is not None and result.diff.lines()
    assert services.policies.get(SYSTEM, "line-telemetry", 1).document.version == 1
    assert [r["tag"] for r in installation.api().get(
        "/v1/audit/records", params={"after": 7}).json()["items"]][-4:] == [
        "admin:policy:written", "admin:policy:attached", "admin:policy:refused",
        "admin:policy:written"]


def test_attach_fail_unknown_target(installation: Installation) -> None:
    services = installation.services
    services.policies.write(SYSTEM, PLANT_POLICY)
    with pytest.raises(NotFound):
        services.policies.attach(SYSTEM, "line-telemetry",
                                 AttachmentTarget(TargetKind.DEVICE, "nobody"))
    with pytest.raises(NotFound):
        services.policies.attach(SYSTEM, "no-such-policy",
                                 AttachmentTarget(TargetKind.ORG_UNIT, "root"))
