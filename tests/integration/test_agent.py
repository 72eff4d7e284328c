"""The device agent against a live server, with a 30-second certificate lifetime."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest

from iotiam.agent import Agent, AgentError

from .live_server import Server

pytestmark = pytest.mark.integration

#: the shortest lifetime a device type takes (inventory.models.RotationPolicy): the tests
#: below wait for real renewals and a real expiry
LIFETIME = "30s"
LIFETIME_SECONDS = 30
#: the two ``iotiam-agent run`` processes: one renews, one (revoked) fails to
LOGGING = ("agent-logs-ok", "agent-logs-revoked")


def claim(server: Server, device_id: str) -> str:
    """A one-time claim token for ``device_id``."""
    return server.cli("claim", "create", "--device", device_id).out.strip().splitlines()[-1]


def set_rotation(server: Server, *, grace: str) -> None:
    """Short-lived certificates for the ``controller`` type used here."""
    server.cli("device-type", "set-rotation", "controller", "--lifetime", LIFETIME,
               "--grace", grace)


@dataclass
class Fleet:
    """Agents enrolled together, so that the tests' waits for real time overlap: two held
    in-process (one to run, one left offline) and two ``iotiam-agent run`` processes."""

    agents: dict[str, Agent]
    processes: dict[str, subprocess.Popen[str]]
    logs: dict[str, list[str]]
    #: the threads reading the processes' stderr into ``logs``
    readers: list[threading.Thread]


def _collect(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


def stop(processes: dict[str, subprocess.Popen[str]]) -> None:
    """SIGTERM each process still running and wait for it."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        process.wait(15)


@pytest.fixture(scope="module")
def fleet(server: Server) -> Iterator[Fleet]:
    """Every short-lived agent of this module, enrolled at once: their certificates'
    lifetimes run down while the first test waits, not one test after another."""
    set_rotation(server, grace="10m")
    agents = {}

    def enroll(name: str) -> None:
        server.register(name, "controller")
        agents[name] = Agent(server.work_dir / name, server_url=server.api_url, device_id=name,
                             server_ca=server.tls_ca_file)
        agents[name].enroll(claim(server, name))

    for name in ("agent-offline", *LOGGING):
        enroll(name)
    # a revoked certificate cannot be renewed (RFC 7030 §4.2.2 authenticates with it)
    server.cli("cert", "revoke", "--device", LOGGING[1], "--reason", "keyCompromise")
    tool = str(Path(sys.executable).with_name("iotiam-agent"))
    logs: dict[str, list[str]] = {name: [] for name in LOGGING}
    running, readers = {}, []
    try:
        for name in LOGGING:
            process = subprocess.Popen([tool, "run", "--dir", str(server.work_dir / name)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
            running[name] = process
            readers.append(threading.Thread(target=_collect, args=(process.stderr, logs[name]),
                                            daemon=True))
            readers[-1].start()
        # last, so that a slow set-up on a busy machine cannot eat its renewal window
        # before the first test starts it running
        enroll("agent-live")
        yield Fleet(agents=agents, processes=running, logs=logs, readers=readers)
    finally:
        stop(running)


# real certificate lifetimes: run once. The server side of renewal and recovery is
# backend-specific only in storage, which the unit tests run on both backends
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_agent_renews_then_recovers_only_inside_grace(server: Server, fleet: Fleet) -> None:
    agents = fleet.agents
    live = agents["agent-live"]
    key_mode = stat.S_IMODE((live.files.key).stat().st_mode)
    assert key_mode == 0o600
    first = live.files.load_certificate()
    assert first is not None
    lifetime = first.not_valid_after_utc - first.not_valid_before_utc
    assert LIFETIME_SECONDS * 5 / 6 <= lifetime.total_seconds() <= LIFETIME_SECONDS
    renew_at = live.next_action_at()
    assert first.not_valid_before_utc + lifetime * 0.6 <= renew_at
    assert renew_at <= first.not_valid_before_utc + lifetime * 0.72

    # the live agent renews on its own, before expiry, onto a new key
    stop = threading.Event()
    runner = threading.Thread(target=live.run, args=(stop,), daemon=True)
    runner.start()
    deadline = time.monotonic() + 90
    renewed = first
    while time.monotonic() < deadline:
        renewed = live.files.load_certificate() or first
        if renewed.serial_number != first.serial_number:
            break
        time.sleep(0.5)
    stop.set()
    runner.join(10)
    assert renewed.serial_number != first.serial_number, live.status()
    # renewed before the old certificate expired (notBefore is backdated by lifetime/10)
    assert renewed.not_valid_before_utc + lifetime / 10 < first.not_valid_after_utc
    assert renewed.public_key() != first.public_key()

    # the offline agent was not running: wait until its certificate has expired
    offline = agents["agent-offline"]
    held = offline.files.load_certificate()
    assert held is not None
    while datetime.now(UTC) < held.not_valid_after_utc + (lifetime / 30):
        time.sleep(0.5)

    set_rotation(server, grace="0s")  # outside the grace window: refused
    with pytest.raises(AgentError, match="grace window"):
        offline.recover()
    set_rotation(server, grace="10m")  # inside: recovered onto a new key
    recovered = offline.renew()
    assert recovered.serial_number != held.serial_number
    assert recovered.not_valid_after_utc > datetime.now(UTC)
    with server.api() as api:
        audit = api.get("/v1/audit/records", params={"limit": 5000}).json()["items"]
    outcomes = [(r["tag"], r["outcome"]) for r in audit
                if r["tag"].startswith("device:recovery")]
    assert ("device:recovery:refused", "failure") in outcomes or \
        ("device:recovery:refused", "denied") in outcomes
    assert ("device:recovery:succeeded", "success") in outcomes


def test_agent_cli_enroll_status_fail(server: Server) -> None:
    import subprocess
    import sys
    from pathlib import Path

    tool = str(Path(sys.executable).with_name("iotiam-agent"))
    server.register("agent-cli")
    token = claim(server, "agent-cli")
    directory = server.work_dir / "agent-cli"
    base = [tool]
    ok = subprocess.run([*base, "enroll", "--dir", str(directory), "--server", server.api_url,
                         "--device", "agent-cli", "--claim", token, "--ca",
                         str(server.tls_ca_file)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "enrolled agent-cli" in ok.stdout
    again = subprocess.run([*base, "enroll", "--dir", str(directory), "--server",
                            server.api_url, "--device", "agent-cli", "--claim", token, "--ca",
                            str(server.tls_ca_file)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1
    assert again.stderr.startswith("error: enrollment refused")
    assert len(again.stderr.strip().splitlines()) == 1
    status = subprocess.run([*base, "status", "--dir", str(directory)], capture_output=True,
                            text=True, timeout=60)
    assert '"device": "agent-cli"' in status.stdout


RENEWED = re.compile(r"iotiam-agent INFO renewed: serial (?P<serial>[0-9a-f]+), valid until "
                     r"(?P<until>\S+), next renewal at (?P<next>\S+)$")
FAILED = re.compile(r"iotiam-agent WARNING renewal failed \(attempt 1\): (?P<reason>.+); "
                    r"retrying at (?P<retry>\S+)$")


# like the test above: real lifetimes, run once
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_agent_run_logs_each_renewal_and_failure(server: Server, fleet: Fleet) -> None:
    """``iotiam-agent run`` says on stderr what it renewed and why a renewal failed."""
    names, logs, running = LOGGING, fleet.logs, fleet.processes
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (
            any(RENEWED.search(line) for line in logs[names[0]])
            and any(FAILED.search(line) for line in logs[names[1]])):
        time.sleep(0.2)
    stop(running)
    for reader in fleet.readers:  # every line up to the exit
        reader.join(10)
    ok, revoked = (logs[name] for name in names)
    assert "Traceback" not in "\n".join(ok + revoked)
    assert ok, "iotiam-agent run printed nothing"
    assert "running for agent-logs-ok: serial" in ok[0], ok
    # stopped, the agent holds the certificate of the last renewal it logged (it renews
    # every 20 s, so it may have renewed more than once by now)
    renewed = next((m for m in map(RENEWED.search, reversed(ok)) if m), None)
    assert renewed is not None, ok
    cert = Agent(server.work_dir / names[0]).files.load_certificate()
    assert cert is not None and renewed["serial"] == f"{cert.serial_number:x}"
    assert datetime.fromisoformat(renewed["until"]) == cert.not_valid_after_utc.replace(
        microsecond=0)
    assert datetime.fromisoformat(renewed["next"]) < cert.not_valid_after_utc
    failed = next((m for m in map(FAILED.search, revoked) if m), None)
    assert failed is not None, revoked
    assert "revoked" in failed["reason"] or "refused" in failed["reason"], failed["reason"]
    assert datetime.fromisoformat(failed["retry"]) > datetime.now(UTC) - timedelta(minutes=1)
    for process in running.values():
        assert process.returncode in (0, -signal.SIGTERM)
