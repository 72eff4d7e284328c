"""A private ``nats-server -js`` for tests and benchmarks: its own port and store, so no
two runs share stream state."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from iotiam.testing.environment import free_port, require

#: Debian's package installs the server outside a normal user's PATH
DEBIAN_NATS_SERVER = "/usr/sbin/nats-server"


def nats_server_binary() -> str | None:
    """The ``nats-server`` executable, if installed."""
    found = shutil.which("nats-server")
    if found is None and Path(DEBIAN_NATS_SERVER).exists():
        found = DEBIAN_NATS_SERVER
    return found


@contextmanager
def nats_jetstream(binary: str | None = None) -> Iterator[str]:
    """Run a JetStream-enabled server on a free port; yields its ``nats://`` URL."""
    binary = binary or nats_server_binary()
    require(binary is not None, "the 'nats-server' binary is not installed")
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="iotiam-nats-") as store:
        port = free_port()
        server = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("nats-server did not start") from None
                    time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=10)
