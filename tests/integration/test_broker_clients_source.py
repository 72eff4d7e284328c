"""The ``mosquitto`` discovery source reads what a real Mosquitto's dynamic security answers.

A Mosquitto someone else operates (its own CA, the dynamic-security plugin) gets a few
clients from ``mosquitto_ctrl``; the raw ``listClients`` answer is fetched over MQTT
with paho, exactly as the plugin publishes it on its response topic, and so is
``mosquitto_ctrl dynsec listClients``'s text: every username must come out as a
sighting, known by its client-id identifier, with the broker named in its detail.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iotiam.broker.layout import ADMIN_USERNAME, BrokerConfig
from iotiam.discovery.models import IdentifierKind, Refusal, Sighting, SourceContext
from iotiam.discovery.sources.broker_clients import MosquittoClientsSource
from iotiam.testing import require_binary

from .foreign_broker import foreign_mosquitto

pytestmark = pytest.mark.integration

CONTROL = "$CONTROL/dynamic-security/v1"
DEVICES = {"meter-1": "cid-meter-1", "meter-2": None, "valve-9": "cid-valve-9"}


@pytest.fixture
def their_broker(tmp_path: Path) -> Iterator[tuple[BrokerConfig, str]]:
    """A Mosquitto with the dynamic-security plugin and three clients made by its operator."""
    ctrl = require_binary("mosquitto_ctrl")
    with foreign_mosquitto(tmp_path) as (config, _, password):
        base = [ctrl, "-h", "127.0.0.1", "-p", str(config.admin_port), "-u", ADMIN_USERNAME,
                "-P", password, "dynsec"]
        for username, client_id in DEVICES.items():
            command = [*base, "createClient", username, "-p", f"pw-{username}"]
            if client_id:
                command += ["-c", client_id]
            subprocess.run(command, check=True, capture_output=True, timeout=20)
        subprocess.run([*base, "disableClient", "meter-2"], check=True, capture_output=True,
                       timeout=20)
        yield config, password


def list_clients_over_mqtt(config: BrokerConfig, password: str) -> bytes:
    """The plugin's raw answer to a verbose ``listClients``, as published to its topic."""
    answer: list[bytes] = []
    ready, done = threading.Event(), threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="discovery-test",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(ADMIN_USERNAME, password)
    client.on_subscribe = lambda *_: ready.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        answer.append(message.payload)
        done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", config.admin_port)
    client.loop_start()
    try:
        client.subscribe(f"{CONTROL}/response", qos=1)
        assert ready.wait(10), "the broker did not confirm the subscription"
        client.publish(CONTROL, json.dumps({"commands": [
            {"command": "listClients", "verbose": True, "correlationData": "discovery"}]}),
            qos=1)
        assert done.wait(10), "the dynamic-security plugin did not answer"
    finally:
        client.loop_stop()
        client.disconnect()
    return answer[0]


def read(data: bytes) -> tuple[list[Sighting], list[Refusal]]:
    context = SourceContext(site="their-plant", default_time=1796551200.0,
                            options={"broker": "their-mosquitto"})
    records = list(MosquittoClientsSource().read(io.BytesIO(data), context))
    return ([r for r in records if isinstance(r, Sighting)],
            [r for r in records if isinstance(r, Refusal)])


def test_mosquitto_source_ok_every_dynsec_client_of_a_live_broker(
        their_broker: tuple[BrokerConfig, str]) -> None:
    config, password = their_broker
    sightings, refusals = read(list_clients_over_mqtt(config, password))
    assert refusals == []
    by_user = {s.username: s for s in sightings}
    # the operator's admin is a credential on that broker too
    assert set(by_user) == {*DEVICES, ADMIN_USERNAME}
    for username, client_id in DEVICES.items():
        seen = by_user[username]
        assert (IdentifierKind.CLIENT_ID, username) in seen.identifiers()
        assert seen.client_id == client_id
        assert "their-mosquitto" in (seen.detail or "")
        assert seen.site == "their-plant" and seen.source == "mosquitto"
    assert "(disabled)" in (by_user["meter-2"].detail or "")
    assert "(disabled)" not in (by_user["meter-1"].detail or "")


def test_mosquitto_source_ok_mosquitto_ctrl_listing(
        their_broker: tuple[BrokerConfig, str]) -> None:
    config, password = their_broker
    printed = subprocess.run(
        [require_binary("mosquitto_ctrl"), "-h", "127.0.0.1", "-p", str(config.admin_port),
         "-u", ADMIN_USERNAME, "-P", password, "dynsec", "listClients"],
        check=True, capture_output=True, timeout=20).stdout
    sightings, refusals = read(printed)
    assert refusals == []
    assert {s.username for s in sightings} == {*DEVICES, ADMIN_USERNAME}
