"""The broker watch against a real Mosquitto: ``$SYS`` values and message metadata.

The broker is provisioned as iotiam provisions one (the admin role iotiam seeds, which
is also what ``mosquitto_ctrl dynsec init`` gives an external broker's admin), with
``sys_interval 1`` so that two ``$SYS`` periods pass within seconds.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from iotiam.bootstrap import build_services
from iotiam.broker.broker_watch import BrokerWatch, broker_statistics
from iotiam.broker.dynsec import DynsecAdmin
from iotiam.broker.layout import ADMIN_USERNAME, BrokerConfig, BrokerFiles
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.runtime import start_data_plane
from iotiam.config import Settings
from iotiam.detection.models import EventKind
from iotiam.installation import initialize
from iotiam.serving import broker_fleet
from iotiam.testing import free_ports, require_binary
from iotiam.testing.mqtt import MqttDevice

from .collected import Collected
from .foreign_broker import foreign_mosquitto

pytestmark = pytest.mark.integration

SECRET = b"s3cret-payload-never-kept"


@dataclass
class Broker:
    config: BrokerConfig
    process: ManagedMosquitto
    password: str


def eventually(ready: Callable[[], bool], timeout: float = 6.0) -> bool:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with foreign_mosquitto(tmp_path, event_log="connections", sys_interval=1) as (
            config, process, password):
        admin = DynsecAdmin("127.0.0.1", config.admin_port, ADMIN_USERNAME, password)
        try:  # a device with a password, allowed its own namespace and one foreign topic
            admin.check([
                {"command": "createRole", "rolename": "dev"},
                {"command": "addRoleACL", "rolename": "dev", "acltype": "publishClientSend",
                 "topic": "devices/ext-1/#", "allow": True},
                {"command": "addRoleACL", "rolename": "dev", "acltype": "publishClientSend",
                 "topic": "factory/line-1", "allow": True},
                {"command": "createClient", "username": "ext-1", "password": "pw",
                 "roles": [{"rolename": "dev"}]},
            ])
        finally:
            admin.close()
        yield Broker(config, process, password)


def device(broker: Broker, client_id: str) -> MqttDevice:
    dev = MqttDevice(client_id)
    dev.client.username_pw_set("ext-1", "pw")
    assert dev.connect(broker.config.admin_port)
    return dev


def test_watch_ok_publish_metadata_and_sys_values_across_a_restart(broker: Broker) -> None:
    first = device(broker, "ext-1-a")
    first.client.publish("devices/ext-1/state", b"retained", qos=1, retain=True).wait_for_publish(5)
    collected = Collected()
    watch = BrokerWatch("127.0.0.1", broker.config.admin_port, ADMIN_USERNAME, broker.password,
                        deliver=collected)
    watch.start()
    try:
        assert eventually(lambda: watch.retained == 1)  # replayed on subscribing: skipped
        first.publish("devices/ext-1/t", SECRET)
        first.publish("factory/line-1", SECRET)
        assert collected.wait_for(lambda ev: len(ev) >= 1)
        (event,) = collected.events
        assert (event.kind, event.device_id, event.topic, event.size) == (
            EventKind.PUBLISH, "ext-1", "devices/ext-1/t", len(SECRET))
        assert SECRET.decode() not in repr(event) + repr(event.to_json())
        assert eventually(lambda: watch.unattributed == 1)
        # $SYS: the retained set at once, rates after two periods (sys_interval 1: ~2 s)
        # (a value is as old as the last period: the two publishes show up within ~2 s)
        assert eventually(lambda: bool(watch.sys.rates())
                          and watch.sys.values.get("publish/messages/received", 0) >= 3)
        stats = watch.statistics()
        assert stats["values"]["version"].startswith("mosquitto version 2.")
        assert stats["values"]["clients/connected"] >= 2
        assert set(stats["rates_per_second"]) >= {"publish/messages/received", "bytes/sent"}
        assert stats["messages"]["ingested"] == 1 and stats["connected"] is True
        first.close()
        # a broker restart: the watch reconnects, re-subscribes and sees the new uptime
        broker.process.stop()
        broker.process.start()
        assert eventually(lambda: watch.connects >= 2 and watch.sys.restarts >= 1)
        second = device(broker, "ext-1-b")
        second.publish("devices/ext-1/t", b"12345")
        second.close()
        assert collected.wait_for(lambda ev: any(e.size == 5 for e in ev))
    finally:
        watch.stop()
    assert watch.statistics()["connected"] is False
    assert all(e.device_id == "ext-1" for e in collected.events)


def test_watch_ok_data_plane_reads_messages_only_from_external_brokers(
        broker: Broker, tmp_path: Path) -> None:
    for mode in ("external", "managed"):
        api, http, mtls, psk, own_admin = free_ports(5)
        admin_port = broker.config.admin_port if mode == "external" else own_admin
        settings = Settings(data_dir=tmp_path / mode, port=api, http_port=http,
                            broker_mode=mode, broker_port=mtls, broker_psk_port=psk,
                            broker_admin_port=admin_port, broker_password=broker.password)
        initialize(settings)
        services = build_services(settings)
        plane = start_data_plane(broker_fleet(services), settings, Collected())
        try:
            assert plane is not None and plane.watch is not None
            # external: every message's metadata; managed: the log has them, $SYS only
            assert plane.watch.watches_messages is (mode == "external")
            assert (plane.events is None) is (mode == "external")
            assert eventually(lambda: (broker_statistics() or {}).get("uptime_seconds")
                              is not None)
            stats = broker_statistics()
            assert stats is not None and ("messages" in stats) is (mode == "external")
        finally:
            if plane is not None:
                plane.stop()
            services.close()
        assert broker_statistics() is None


def test_watch_ok_external_admin_made_by_mosquitto_ctrl_keeps_its_role(
        broker: Broker, tmp_path: Path) -> None:
    # an operator's own set-up: `mosquitto_ctrl dynsec init` names the admin's role "admin"
    files = BrokerFiles(tmp_path / "theirs")
    broker.process.stop()
    files.dynsec.unlink()
    subprocess.run([require_binary("mosquitto_ctrl"), "dynsec", "init", str(files.dynsec),
                    ADMIN_USERNAME, "operator-pw"], check=True, capture_output=True)
    broker.process.start()
    api, http, mtls, psk = free_ports(4)
    settings = Settings(data_dir=tmp_path / "iotiam", port=api, http_port=http,
                        broker_mode="external", broker_port=mtls, broker_psk_port=psk,
                        broker_admin_port=broker.config.admin_port,
                        broker_password="operator-pw")
    initialize(settings)
    services = build_services(settings)
    plane = start_data_plane(broker_fleet(services), settings, Collected())
    try:
        assert plane is not None and plane.watch is not None
        assert eventually(lambda: not plane.sync._needs_full)  # a full sync went through
        admin = DynsecAdmin("127.0.0.1", broker.config.admin_port, ADMIN_USERNAME,
                            "operator-pw")
        try:
            (answer,) = admin.check([{"command": "getRole", "rolename": "admin"}])
        finally:
            admin.close()
        topics = {(a["acltype"], a["topic"]) for a in answer["data"]["role"]["acls"]}
        assert {("subscribePattern", "#"), ("subscribePattern", "$SYS/#")} <= topics
        assert eventually(lambda: (broker_statistics() or {}).get("uptime_seconds")
                          is not None)
    finally:
        if plane is not None:
            plane.stop()
        services.close()
