"""Skip-or-fail rules for tests that need real binaries or databases.

With ``IOTIAM_REQUIRE_INTEGRATION=1`` (set by CI) a missing dependency fails the
test instead of skipping it, so a green CI run really exercised everything.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

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


def join_replica(first_data_dir: Path, data_dir: Path) -> None:
    """Give a second replica's new data directory what docs/deployment.md says another
    host takes from the first: its secrets (CA passphrase, audit, data and checkpoint
    keys) and the checkpoint key's verifier key."""
    shutil.copytree(first_data_dir / "secrets", data_dir / "secrets")
    (data_dir / "audit").mkdir(mode=0o700)
    shutil.copy2(first_data_dir / "audit" / "checkpoint.vkey",
                 data_dir / "audit" / "checkpoint.vkey")
