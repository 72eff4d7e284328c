"""G11 on a real Mosquitto: a policy change for a large fleet reaches the broker as a
few edits of shared roles, with no restart and no connected device dropped."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotiam.broker.dynsec import DynsecAdmin
from iotiam.broker.layout import ADMIN_USERNAME
from iotiam.broker.provision import admin_password
from iotiam.broker.sync import DEAD_AFTER, BrokerSync
from iotiam.broker.sync_ports import SyncReport, Updates
from iotiam.changes import CredentialRevoked, Published
from iotiam.clock import SystemClock
from iotiam.policy.broker_acl import AclEntry, AclType
from iotiam.testing.mqtt import MqttDevice

from .test_broker_dataplane import Plane, own_namespace, provisioned_broker, running_plane

pytestmark = pytest.mark.integration

FLEET = 2_000
CONNECTED = 12
GUARDRAIL = AclEntry(200, AclType.PUBLISH_CLIENT_SEND, "devices/+/firmware/#", False)


def fleet_rights(device_id: str, *, guardrail: bool) -> tuple[AclEntry, ...]:
    """Its own namespace, telemetry for the whole fleet, and (later) a root guardrail."""
    shared = (AclEntry(100, AclType.PUBLISH_CLIENT_SEND, "fleet/telemetry", True),)
    return own_namespace(device_id) + shared + ((GUARDRAIL,) if guardrail else ())


@pytest.fixture
def fleet_plane(tmp_path: Path) -> Iterator[Plane]:
    made = provisioned_broker(tmp_path)
    for n in range(FLEET):
        made.fleet.allow(f"dev-{n:05d}", fleet_rights(f"dev-{n:05d}", guardrail=False))
    made.sync.cold_start()  # the fleet written before the start, as `serve` does
    with running_plane(made, tmp_path) as started:
        yield started


def connect(plane: Plane, device_id: str) -> MqttDevice:
    cert, key, _ = plane.device(device_id)
    device = plane.connect(device_id, cert, key)
    assert device.connect_result == "Success"
    return device


def test_policy_change_ok_fleet_wide_guardrail_drops_no_session(
        fleet_plane: Plane, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="iotiam.broker")
    plane = fleet_plane
    pid, generation = plane.broker.pid, plane.broker.generation
    devices = [connect(plane, f"dev-{n:05d}") for n in range(CONNECTED)]
    try:
        for n, device in enumerate(devices):
            assert device.subscribe(f"devices/dev-{n:05d}/#")
        watcher = devices[0]
        for n in range(FLEET):  # a root guardrail: every device's rights change
            plane.fleet.allow(f"dev-{n:05d}", fleet_rights(f"dev-{n:05d}", guardrail=True))
        plane.fleet.changes = Updates(policies_changed=True)
        started = time.monotonic()
        plane.sync._pass(plane.fleet.now)  # one pass of the loop, as after the change
        took = time.monotonic() - started
        assert (plane.broker.pid, plane.broker.generation) == (pid, generation), \
            "the broker was restarted for a policy change"
        time.sleep(0.5)  # a kick would arrive within this
        dropped = [d for d in devices if d.disconnected.is_set()]
        assert not dropped, f"{len(dropped)} of {CONNECTED} sessions dropped"
        assert took < 30, f"the change took {took:.1f}s"
        report = next(r.args[0] for r in caplog.records
                      if r.msg == "broker full sync: %s" and isinstance(r.args, tuple))
        assert isinstance(report, SyncReport)
        # one class for the whole fleet: its deny role edited, no client touched
        assert (report.roles_edited, report.commands, report.unchanged) == (1, 1, FLEET)
        # the guardrail is in force on the live sessions
        devices[0].publish("devices/dev-00000/firmware/image", b"evil")
        devices[0].publish("devices/dev-00000/telemetry", b"fine")
        assert watcher.received() == ("devices/dev-00000/telemetry", b"fine")
    finally:
        for device in devices:
            device.close()


def test_policy_change_ok_many_device_changes_on_a_busy_broker_do_not_time_out(
        fleet_plane: Plane) -> None:
    """Each command rewrites the plugin's whole file: hundreds of them on a large fleet
    take longer than the admin link's timeout, which must not read as a dead broker:
    they go in small pipelined messages, each answered well within the timeout."""
    plane = fleet_plane
    password = admin_password(plane.files)
    sync = BrokerSync(plane.fleet, SystemClock(), plane.files, lambda: DynsecAdmin(
        "127.0.0.1", plane.config.admin_port, ADMIN_USERNAME, password, timeout=3.0),
        plane.broker)
    try:
        sync.full_sync()
        pid = plane.broker.pid
        changed = [f"dev-{n:05d}" for n in range(0, FLEET, 5)]
        for device_id in changed:  # each gets a topic of its own: its own role is edited
            status = AclEntry(100, AclType.PUBLISH_CLIENT_SEND, f"status/{device_id}", True)
            plane.fleet.allow(device_id, (*fleet_rights(device_id, guardrail=False), status))
        started = time.monotonic()
        report = sync.sync_devices(changed)
        print(f"{len(changed)} own roles edited in {time.monotonic() - started:.1f}s")
        assert report.updated == len(changed)
        assert plane.broker.pid == pid
        assert sync.full_sync().commands == 0  # the broker holds what was decided
    finally:
        sync.close()


def test_broker_liveness_ok_only_a_hung_broker_is_restarted(fleet_plane: Plane) -> None:
    """A broker that stopped answering (SIGSTOP: its kernel still accepts connections)
    is restarted after DEAD_AFTER probes; a running one never is."""
    plane = fleet_plane
    pid = plane.broker.pid
    assert pid is not None
    for _ in range(DEAD_AFTER + 1):
        plane.sync._check_broker()
    assert plane.broker.pid == pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(DEAD_AFTER):
            plane.sync._check_broker()
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed by the restart
            os.kill(pid, signal.SIGCONT)
    assert plane.broker.pid not in (None, pid), "the hung broker was left as it was"
    assert plane.sync.full_sync().commands == 0  # restarted with the whole fleet


def test_policy_change_ok_with_devices_retired_in_the_same_sync(fleet_plane: Plane) -> None:
    """Retired devices do not hold their class back: the others still change together,
    one edit of the class, and not one own-role edit each."""
    plane = fleet_plane
    retired = [f"dev-{n:05d}" for n in range(10)]
    for device_id in retired:
        del plane.fleet.acls[device_id]
    for n in range(10, FLEET):
        plane.fleet.allow(f"dev-{n:05d}", fleet_rights(f"dev-{n:05d}", guardrail=True))
    report = plane.sync.full_sync()
    assert (report.removed, report.updated, report.roles_edited) == (10, 0, 1)
    assert report.commands == 1 + 2 * len(retired)  # the class edit; delete client + role


def test_sync_ok_a_mass_enrolment_does_not_hold_revocations_back(fleet_plane: Plane) -> None:
    """Hundreds of new devices on a large broker take many seconds of plugin work: one
    pass of the loop does about a second of it and leaves the rest queued, so a
    revocation arriving meanwhile waits for a slice, not for the whole enrolment (G3)."""
    plane = fleet_plane
    victim = connect(plane, "dev-00001")
    new = [f"new-{n:04d}" for n in range(100)]
    for device_id in new:
        plane.fleet.allow(device_id, fleet_rights(device_id, guardrail=False))
    plane.fleet.changes = Updates(changed=set(new))
    # the change feed delivers the revocation (BrokerSync.follow)
    plane.sync.follow(Published(1, CredentialRevoked("psk", "psk-1", "dev-00001")))
    try:
        started = time.monotonic()
        plane.sync._pass(plane.fleet.now)
        took = time.monotonic() - started
        assert victim.disconnected.wait(1), "the revocation waited behind the enrolment"
        assert took < 4, f"one pass worked {took:.1f}s before looking for revocations"
        left = len(plane.sync._pending)
        assert 0 < left < len(new)
        deadline = time.monotonic() + 60
        while plane.sync._pending and time.monotonic() < deadline:
            plane.sync._pass(plane.fleet.now)
        assert plane.sync.full_sync().commands == 0  # every new device arrived
    finally:
        victim.close()
