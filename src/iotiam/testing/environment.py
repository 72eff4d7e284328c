"""Skip-or-fail rules for tests that need real binaries or databases.

With ``IOTIAM_REQUIRE_INTEGRATION=1`` (set by CI) a missing dependency fails the
test instead of skipping it, so a green CI run really exercised everything.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def integration_required() -> bool:
    """Whether missing integration dependencies are errors."""
    return os.environ.get("IOTIAM_REQUIRE_INTEGRATION", "") not in ("", "0", "false")


def require(condition: bool, reason: str) -> None:
    """Skip (or, when integration is required, fail) unless ``condition`` holds."""
    if condition:
        return
    if integration_required():
        pytest.fail(f"IOTIAM_REQUIRE_INTEGRATION is set but {reason}")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """Path of an executable, or skip/fail."""
    path = shutil.which(name)
    require(path is not None, f"the {name!r} binary is not installed")
    assert path is not None
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that were free a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports
