"""The agent on a gateway: ``iotiam-agent gateway-keys`` fetches its children's PSKs over
mTLS, opens them with the device key and writes a ``psk_file``; a real Mosquitto reading
that file serves the children over TLS-PSK, and a child moved away is refused there."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from iotiam.agent import Agent

from .live_server import Server, venv_tool
from .test_psk_mosquitto import Broker

pytestmark = pytest.mark.integration


@pytest.fixture
def brokers() -> Iterator[list[Broker]]:
    started: list[Broker] = []
    yield started
    for broker in started:
        broker.stop()


def gateway_keys(server: Server, directory: str) -> subprocess.CompletedProcess[str]:
    out = server.work_dir / "children.psk"
    return subprocess.run([venv_tool("iotiam-agent"), "gateway-keys", "--dir", directory,
                           "--out", str(out)], capture_output=True, text=True, timeout=60,
                          check=False, env=server.env)


def test_gateway_agent_serves_children_over_psk(server: Server,
                                                brokers: list[Broker]) -> None:
    server.register("gw-a", "gateway")
    server.register("gw-b", "gateway")
    token = server.cli("claim", "create", "--device", "gw-a").out.strip().splitlines()[-1]
    directory = server.work_dir / "gw-a"
    Agent(directory, server_url=server.api_url, device_id="gw-a",
          server_ca=server.tls_ca_file).enroll(token)
    server.cli("device", "add", "tag-1", "--type", "sensor", "--via", "gw-a")
    server.cli("device", "add", "tag-2", "--type", "sensor", "--via", "gw-a")

    done = gateway_keys(server, str(directory))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("2 child key(s) written to "
                                        f"{server.work_dir / 'children.psk'}")
    psk_file = server.work_dir / "children.psk"
    assert psk_file.stat().st_mode & 0o077 == 0
    lines = dict(line.split(":") for line in psk_file.read_text().splitlines())
    assert set(lines) == {"tag-1", "tag-2"}
    broker = Broker(server.work_dir, psk_file)
    brokers.append(broker)
    assert broker.publish("tag-1", lines["tag-1"]) == 0
    assert broker.publish("tag-1", lines["tag-2"]) != 0  # another child's key

    # moved to another gateway: re-keyed, and gone from this gateway's listener
    server.cli("device", "move", "tag-1", "--via", "gw-b")
    assert gateway_keys(server, str(directory)).returncode == 0
    assert set(dict(line.split(":") for line in psk_file.read_text().splitlines())) == \
        {"tag-2"}
    broker.reload()
    assert broker.publish("tag-1", lines["tag-1"]) != 0


def test_gateway_agent_fail_not_a_gateway(server: Server) -> None:
    server.register("plain-1", "sensor")
    token = server.cli("claim", "create", "--device", "plain-1").out.strip().splitlines()[-1]
    directory = server.work_dir / "plain-1"
    Agent(directory, server_url=server.api_url, device_id="plain-1",
          server_ca=server.tls_ca_file).enroll(token)
    refused = gateway_keys(server, str(directory))
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error:") and "is not a gateway" in line
