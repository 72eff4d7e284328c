"""A real OpenID Connect provider for the console's sign-in tests: panva/oidc-provider on
Node (``tests/integration/oidc/provider.mjs``, its version pinned by the lock file).

``npm ci`` runs once into a cache directory named by the lock file's hash (nothing is
installed into the repository); each test module then starts the provider on its own
port. Node and npm missing: a skip, or a failure under IOTIAM_REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from iotiam.testing import require, require_binary

SOURCE = Path(__file__).with_name("oidc")
START_SECONDS = 30.0
INSTALL_SECONDS = 600
CLIENT_ID = "iotiam-console"
#: the people provider.mjs knows: (username, password, email, groups)
ALICE = ("alice", "alice-pw", "alice@plant-a.example", ("plant-a",))
BOB = ("bob", "bob-pw", "bob@example.com", ("iot-admins",))
CAROL = ("carol", "carol-pw", "carol@example.com", ("marketing",))


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iotiam-tests"


def installed() -> Path:
    """A directory holding provider.mjs and its node_modules (``npm ci`` the first time)."""
    node, npm = require_binary("node"), require_binary("npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    require(int(version.stdout.strip().lstrip("v").split(".")[0]) >= 20,
            f"oidc-provider needs Node 20 or later, not {version.stdout.strip()}")
    lock = (SOURCE / "package-lock.json").read_bytes()
    target = _cache_root() / f"oidc-provider-{hashlib.sha256(lock).hexdigest()[:16]}"
    target.mkdir(parents=True, exist_ok=True)
    # one installer at a time (parallel test workers share the cache)
    with (target / ".lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (target / "node_modules" / "oidc-provider" / "package.json").exists():
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(SOURCE / name, target / name)
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--omit=dev"],
                                  cwd=target, capture_output=True, text=True,
                                  timeout=INSTALL_SECONDS)
            require(done.returncode == 0, f"npm ci of oidc-provider failed: {done.stderr[-2000:]}")
        shutil.copyfile(SOURCE / "provider.mjs", target / "provider.mjs")
    return target


@dataclass
class RunningProvider:
    """A started provider and what the console needs to trust it."""

    issuer: str
    client_secret: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM and reap it (it is in its own process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


def start(port: int, redirect_uri: str, client_secret: str, log: Path) -> RunningProvider:
    """Run the provider on ``port`` until it says it listens."""
    directory = installed()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [require_binary("node"), "provider.mjs", str(port), redirect_uri, client_secret],
            cwd=directory, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    provider = RunningProvider(f"http://127.0.0.1:{port}", client_secret, process, log)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if "listening " in log.read_text(errors="replace"):
            return provider
        if process.poll() is not None:
            break
        time.sleep(0.1)
    provider.stop()
    raise AssertionError(f"the OIDC provider did not start:\n{log.read_text(errors='replace')}")
