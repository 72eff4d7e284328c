"""The device agent enrolling zero-touch with an IDevID against a live server.

The server tells held clients to retry after 1 s, so approval while the agent polls
takes a couple of seconds, not minutes.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from conftest import BACKENDS
from iotiam.agent import Agent, AgentError
from iotiam.testing import Issuer, make_idevid, make_manufacturer_ca

from .conftest import serve_live
from .live_server import Server, venv_tool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """The module's live server, telling held clients to retry after 1 s."""
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"agent-zt-{request.param}"),
                          {"IOTIAM_EST_RETRY_AFTER": "1"})


@pytest.fixture(scope="module")
def maker(server: Server) -> Issuer:
    """A manufacturer registered with the CLI; only AZ-1 is in its manifest."""
    ca = make_manufacturer_ca("Agent Zero Touch CA", now=datetime.now(UTC))
    ca_file = server.work_dir / "agent-maker-ca.pem"
    ca_file.write_text(ca.pem)
    server.cli("manufacturer", "add", "az-maker", "--ca", ca_file, "--type", "sensor")
    manifest = server.work_dir / "agent-manifest.csv"
    manifest.write_text("serial,batch\nAZ-1,b1\n")
    assert "imported 1, failed 0" in server.cli("manufacturer", "manifest", "az-maker",
                                                manifest).out
    return ca


def idevid_files(server: Server, ca: Issuer, serial: str) -> tuple[Path, Path]:
    """The IDevID certificate and key files a device of ``serial`` ships with."""
    identity = make_idevid(ca, serial, not_before=datetime.now(UTC) - timedelta(days=1))
    cert, key = server.work_dir / f"{serial}-idevid.pem", server.work_dir / f"{serial}.key"
    cert.write_text(identity.pem)
    key.write_bytes(identity.key_pem())
    return cert, key


def agent_cli(server: Server, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``iotiam-agent ARGS``."""
    return subprocess.run([venv_tool("iotiam-agent"), *map(str, args)], capture_output=True,
                          text=True, timeout=60, check=False)


def enroll_args(server: Server, serial: str, cert: Path, key: Path) -> list[str | Path]:
    """``enroll`` with an IDevID, the device id taken from it."""
    return ["enroll", "--dir", server.work_dir / f"agent-{serial}", "--server", server.api_url,
            "--ca", server.tls_ca_file, "--idevid-cert", cert, "--idevid-key", key]


def held_request(server: Server, serial: str, timeout: float = 15) -> str:
    """The id of the request held for ``serial``, once the server has one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.api() as api:
            held = [r for r in api.get("/v1/enrollment-requests").json()["items"]
                    if r["device"] == serial]
        if held:
            return str(held[0]["id"])
        time.sleep(0.2)
    raise AssertionError(f"no request held for {serial}")


def test_cli_manifest_serial_enrolls_at_once(server: Server, maker: Issuer) -> None:
    cert, key = idevid_files(server, maker, "AZ-1")
    done = agent_cli(server, *enroll_args(server, "AZ-1", cert, key), "--wait", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("enrolled AZ-1: serial ")
    status = agent_cli(server, "status", "--dir", server.work_dir / "agent-AZ-1")
    assert '"device": "AZ-1"' in status.stdout
    leaf = x509.load_pem_x509_certificate((server.work_dir / "agent-AZ-1/cert.pem").read_bytes())
    assert leaf.subject.rfc4514_string() == "CN=AZ-1,OU=root"
    assert "active" in server.cli("device", "show", "AZ-1").out


def test_held_agent_polls_until_approved(server: Server, maker: Issuer) -> None:
    cert, key = idevid_files(server, maker, "AZ-2")
    agent = Agent(server.work_dir / "agent-AZ-2", server_url=server.api_url, device_id="AZ-2",
                  server_ca=server.tls_ca_file)
    outcome: list[x509.Certificate | Exception] = []

    def enroll() -> None:
        try:
            outcome.append(agent.enroll_with_idevid(cert, key, wait=30))
        except Exception as e:  # handed to the test thread
            outcome.append(e)

    waiting = threading.Thread(target=enroll, daemon=True)
    waiting.start()
    request_id = held_request(server, "AZ-2")
    time.sleep(1.5)  # let the agent poll at least once more
    assert waiting.is_alive() and not outcome
    assert f"approved {request_id}" in server.cli("enrollment", "approve", request_id).out
    waiting.join(20)
    assert not waiting.is_alive()
    (leaf,) = outcome
    assert isinstance(leaf, x509.Certificate), leaf
    assert leaf.subject.rfc4514_string() == "CN=AZ-2,OU=root"
    assert agent.files.load_key().public_key() == leaf.public_key()
    assert not agent.files.pending_csr.exists()
    # every poll sent the same CSR: the server holds one request for the device
    with server.api() as api:
        requests = [r for r in api.get("/v1/enrollment-requests",
                                       params={"status": "all"}).json()["items"]
                    if r["device"] == "AZ-2"]
    assert [r["id"] for r in requests] == [request_id]


def test_cli_pending_exit_3_then_rejected_fails_clearly(server: Server, maker: Issuer
                                                        ) -> None:
    cert, key = idevid_files(server, maker, "AZ-3")
    args = enroll_args(server, "AZ-3", cert, key)
    pending = agent_cli(server, *args, "--wait", "0")
    assert pending.returncode == 3, pending.stderr
    assert pending.stderr.startswith("error: enrollment request ")
    assert "waiting for an administrator's approval" in pending.stderr
    assert len(pending.stderr.strip().splitlines()) == 1
    request_id = held_request(server, "AZ-3")
    assert request_id in pending.stderr

    server.cli("enrollment", "reject", request_id, "--reason", "not ours")
    # a restarted agent continues the same request, and learns it was rejected
    rejected = agent_cli(server, *args, "--wait", "10")
    assert rejected.returncode == 1, rejected.stderr
    assert rejected.stderr.startswith("error: enrollment refused: HTTP 403")
    assert "rejected by an administrator" in rejected.stderr
    assert len(rejected.stderr.strip().splitlines()) == 1

    agent = Agent(server.work_dir / "agent-AZ-3")
    assert agent.files.load_certificate() is None
    with pytest.raises(AgentError, match="not enrolled yet"):
        agent.renew()


def test_cli_usage_errors(server: Server, maker: Issuer) -> None:
    cert, key = idevid_files(server, maker, "AZ-4")
    both = agent_cli(server, *enroll_args(server, "AZ-4", cert, key), "--claim", "iotc_x")
    assert both.returncode == 2 and both.stderr.startswith("error: give either --claim")
    half = agent_cli(server, "enroll", "--dir", server.work_dir / "agent-AZ-4", "--server",
                     server.api_url, "--ca", server.tls_ca_file, "--idevid-cert", cert)
    assert half.returncode == 2 and "go together" in half.stderr
    wrong = agent_cli(server, *enroll_args(server, "AZ-4", cert, key), "--device", "AZ-9")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "error: the IDevID names device 'AZ-4', not 'AZ-9'"
