"""``--broker external``: iotiam drives a Mosquitto it did not start, over dynsec only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotiam.broker.dynsec import DynsecAdmin
from iotiam.broker.layout import ADMIN_USERNAME, BrokerConfig
from iotiam.testing import free_ports, make_csr

from .foreign_broker import foreign_mosquitto
from .live_server import Server, launch

pytestmark = pytest.mark.integration


@pytest.fixture
def foreign_broker(tmp_path: Path) -> Iterator[tuple[BrokerConfig, str]]:
    """A Mosquitto with the dynamic-security plugin that someone else operates."""
    with foreign_mosquitto(tmp_path) as (config, _, password):
        yield config, password


def test_external_ok_devices_synced_over_dynsec(
        foreign_broker: tuple[BrokerConfig, str], tmp_path: Path) -> None:
    config, password = foreign_broker
    (tmp_path / "iotiam").mkdir()
    server: Server = launch("sqlite", tmp_path / "iotiam", None,
                            {"IOTIAM_BROKER_PASSWORD": password},
                            external_broker=(config.mtls_port, config.psk_port,
                                             config.admin_port))
    admin = DynsecAdmin("127.0.0.1", config.admin_port, ADMIN_USERNAME, password)
    try:
        server.register("ext-1")
        with server.api() as api:
            assert api.post("/v1/certificates", json={
                "device": "ext-1", "csr": make_csr("ext-1").decode()}).status_code == 201
        deadline = time.monotonic() + 5
        while True:
            (answer,) = admin.check([{"command": "getClient", "username": "ext-1"}],
                                    tolerate=("not found",))
            if not answer.get("error"):
                break
            if time.monotonic() > deadline:
                pytest.fail("iotiam did not create the device on the external broker")
            time.sleep(0.2)
        roles = [r["rolename"] for r in answer["data"]["client"]["roles"]]
        # its class's denies, its own role, its class's allows (iotiam.broker.roles)
        assert len(roles) == 3 and "device:ext-1" in roles
        assert sum(r.startswith("class:") for r in roles) == 2
        with server.api() as api:
            assert api.post("/v1/devices/ext-1/state",
                            json={"state": "suspended"}).status_code == 200
        deadline = time.monotonic() + 5
        while not admin.check([{"command": "getClient", "username": "ext-1"}],
                              tolerate=("not found",))[0].get("error"):
            if time.monotonic() > deadline:
                pytest.fail("a suspended device kept its client on the external broker")
            time.sleep(0.2)
    finally:
        admin.close()
        server.stop()
    assert "Traceback" not in server.log_text()


def test_external_fail_without_password(tmp_path: Path) -> None:
    mtls, psk, admin = free_ports(3)
    ports = (mtls, psk, admin)
    (tmp_path / "iotiam").mkdir()
    with pytest.raises(AssertionError, match="IOTIAM_BROKER_PASSWORD"):
        launch("sqlite", tmp_path / "iotiam", None, external_broker=ports)
