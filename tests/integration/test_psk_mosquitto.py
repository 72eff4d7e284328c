"""PSKs issued by iotiam, exported as a psk_file, accepted and then refused by a real Mosquitto."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotiam.testing import free_port, require_binary

from .live_server import Server

pytestmark = pytest.mark.integration


class Broker:
    """A Mosquitto with one TLS-PSK listener reading ``psk_file``."""

    def __init__(self, work: Path, psk_file: Path) -> None:
        self.port = free_port()
        self.conf = work / "mosquitto-psk.conf"
        self.conf.write_text(
            "per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            "psk_hint iotiam\n"
            f"psk_file {psk_file}\n"
            "use_identity_as_username true\n"
            "allow_anonymous false\n"
            "set_tcp_nodelay true\n"
            # started as root, mosquitto would switch to its own user and lose access to
            # the 0600 psk_file in the test's directory
            + (f"user {pwd.getpwuid(os.geteuid()).pw_name}\n" if os.geteuid() == 0 else "")
        )
        self.process = subprocess.Popen([require_binary("mosquitto"), "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def publish(self, identity: str, key_hex: str) -> int:
        """``mosquitto_pub`` over TLS-PSK; the exit code."""
        return subprocess.run(
            [require_binary("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(self.port),
             "--psk", key_hex, "--psk-identity", identity, "-t", f"devices/{identity}/t",
             "-m", "hello", "-q", "1"], capture_output=True, timeout=20, check=False,
        ).returncode

    def reload(self) -> None:
        """psk_file is re-read on SIGHUP."""
        os.kill(self.process.pid, signal.SIGHUP)
        time.sleep(0.5)

    def stop(self) -> None:
        """Terminate the broker."""
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def broker_factory(server: Server) -> Iterator[list[Broker]]:
    brokers: list[Broker] = []
    yield brokers
    for broker in brokers:
        broker.stop()


def test_psk_issue_export_rotate_revoke_with_mosquitto(server: Server,
                                                      broker_factory: list[Broker]) -> None:
    server.register("psk-1", "sensor")
    identity, key = server.cli("psk", "create", "--device", "psk-1").out.strip() \
        .splitlines()[-1].split(":")
    psk_file = server.work_dir / "psk.txt"
    # pending (registered, not yet live): its PSK is kept but opens nothing
    server.cli("psk", "export", "--out", psk_file)
    assert f"{identity}:" not in psk_file.read_text()
    server.cli("device", "set-state", "psk-1", "active")
    server.cli("psk", "export", "--out", psk_file)
    assert f"{identity}:{key}\n" in psk_file.read_text()
    assert psk_file.stat().st_mode & 0o077 == 0
    broker = Broker(server.work_dir, psk_file)
    broker_factory.append(broker)
    assert broker.publish(identity, key) == 0
    assert broker.publish(identity, "00" * 32) != 0  # a wrong key is refused

    _, new_key = server.cli("psk", "rotate", "--device", "psk-1").out.strip() \
        .splitlines()[-1].split(":")
    server.cli("psk", "export", "--out", psk_file)
    broker.reload()
    assert broker.publish(identity, new_key) == 0
    assert broker.publish(identity, key) != 0  # the superseded key no longer works

    server.cli("psk", "revoke", "--device", "psk-1", "--reason", "keyCompromise")
    server.cli("psk", "export", "--out", psk_file)
    broker.reload()
    assert broker.publish(identity, new_key) != 0
    listing = server.cli("credentials", "--device", "psk-1").out
    assert listing.count("revoked") == 2

    # the key is stored encrypted: no hex key in the database
    rows = server.sql("SELECT encrypted_key FROM psks")
    assert rows and all(key.encode() not in bytes(r[0]) and new_key.encode() not in bytes(r[0])
                        for r in rows)


def test_psk_fail_twice_and_decommissioned(server: Server) -> None:
    server.register("psk-2", "sensor")
    server.cli("psk", "create", "--device", "psk-2")
    again = server.cli("psk", "create", "--device", "psk-2", check=False)
    assert again.rc == 1 and again.err.startswith("error:") and "rotate" in again.err
    server.cli("device", "set-state", "psk-2", "decommissioned")
    listing = server.cli("credentials", "--device", "psk-2").out
    assert "revoked" in listing and "active" not in listing
    refused = server.cli("psk", "rotate", "--device", "psk-2", check=False)
    assert refused.rc == 1
