"""Firmware attestation against a live server with the real agent and the CLI.

An operator registers a signer, signs and registers two images and sets a minimum; the
agent attests over mTLS (compliant), then an older image (non-compliant, exit 4);
stale, replayed, wrongly signed evidence and unsigned metadata get clear 4xx answers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from iotiam.agent import Agent
from iotiam.attestation.evidence import sign_evidence
from iotiam.testing import make_key

from .live_server import Server, venv_tool

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def write_signer(directory: Path) -> tuple[Path, Path]:
    key = make_key()
    private = directory / "signer.key"
    public = directory / "signer.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def register_image(server: Server, signer_key: Path, version: str) -> Path:
    image = server.work_dir / f"sensor-{version}.bin"
    image.write_bytes(f"firmware image {version}\n".encode() * 1000)
    metadata = server.work_dir / f"sensor-{version}.jws"
    server.cli("firmware", "sign", "--key", signer_key, "--type", "sensor", "--version",
               version, "--image", image, "--out", metadata)
    added = server.cli("firmware", "add", "--metadata", metadata)
    assert f"sensor {version}" in added.out
    return image


def enrolled_agent(server: Server, device_id: str) -> Agent:
    server.register(device_id, "sensor")
    claim = server.cli("claim", "create", "--device", device_id).out.strip().splitlines()[-1]
    agent = Agent(server.work_dir / device_id, server_url=server.api_url, device_id=device_id,
                  server_ca=server.tls_ca_file)
    agent.enroll(claim)
    return agent


def evidence(agent: Agent, nonce: str, key: object = None) -> str:
    from datetime import UTC, datetime

    return sign_evidence(key or agent.files.load_key(), nonce=nonce,  # type: ignore[arg-type]
                         device_id=agent.device_id, firmware_version="1.4.0",
                         firmware_hash="ab" * 32, measurements=(), now=datetime.now(UTC))


def assert_problem(answer: httpx.Response, status: int, detail: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert detail in answer.json()["detail"], answer.json()


def test_attestation_ok_compliant_then_refusals(server: Server) -> None:
    signer_key, signer_pub = write_signer(server.work_dir)
    out = server.cli("firmware", "signer", "add", "vendor", "--key", signer_pub).out
    assert "vendor (ES256)" in out
    current = register_image(server, signer_key, "1.4.0")
    older = register_image(server, signer_key, "1.2.0")
    server.cli("firmware", "rule", "sensor", "--min-version", "1.3.0")
    assert "minimum 1.3.0" in server.cli("firmware", "rule", "sensor").out
    listed = server.cli("firmware", "list").out
    assert "1.4.0" in listed and "1.2.0" in listed

    agent = enrolled_agent(server, "attest-1")
    verdict = agent.attest("1.4.0", hashlib.sha256(current.read_bytes()).hexdigest(),
                           {"bootloader": "cd" * 32})
    assert verdict["compliant"] is True, verdict
    status = json.loads(server.cli("firmware", "status", "attest-1", "--json").out)
    assert status["compliant"] is True and status["firmware_version"] == "1.4.0"

    # the older image, through the agent's command line: non-compliant, exit 4
    import subprocess

    proc = subprocess.run([venv_tool("iotiam-agent"), "attest", "--dir",
                           str(server.work_dir / "attest-1"), "--firmware-version", "1.2.0",
                           "--firmware-file", str(older)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 4, proc
    assert json.loads(proc.stdout)["compliant"] is False
    assert "below the minimum 1.3.0" in json.loads(proc.stdout)["reason"]
    status = json.loads(server.cli("firmware", "status", "attest-1", "--json").out)
    assert status["compliant"] is False
    # the verdict reaches the response layer: a finding, and the trust score explains it
    findings = json.loads(server.cli("findings", "list", "--device", "attest-1",
                                     "--json").out)
    assert [f["type"] for f in findings] == ["firmware_noncompliant"]
    assert "below the minimum" in findings[0]["summary"]
    trust = json.loads(server.cli("trust", "show", "attest-1", "--json").out)
    assert trust["firmware_compliant"] is False
    assert any(f["factor"] == "firmware" and f["delta"] < 0 for f in trust["factors"])
    with server.api() as api:
        records = api.get("/v1/audit/records", params={"limit": 5000}).json()["items"]
    verified = [r for r in records if r["tag"] == "device:attestation:verified"]
    assert [r["details"]["compliant"] for r in verified] == [True, False]

    # refusals, over the device's own mTLS connection
    with httpx.Client(base_url=server.api_url, verify=agent.ssl_context(), timeout=30) as http:
        nonce = http.post("/v1/attestation/challenge").json()["nonce"]
        token = evidence(agent, nonce)
        assert http.post("/v1/attestation/evidence", json={"evidence": token}
                         ).status_code == 200
        assert_problem(http.post("/v1/attestation/evidence", json={"evidence": token}), 400,
                       "already used")  # replay

        nonce = http.post("/v1/attestation/challenge").json()["nonce"]
        assert_problem(http.post("/v1/attestation/evidence",
                                 json={"evidence": evidence(agent, nonce, make_key())}),
                       400, "not signed by the key of the certificate")  # wrong key

        nonce = http.post("/v1/attestation/challenge").json()["nonce"]
        server.sql("UPDATE attestation_nonces SET expires_at = :past WHERE nonce_hash = :h",
                   past="2001-01-01 00:00:00", h=hashlib.sha256(nonce.encode()).hexdigest())
        assert_problem(http.post("/v1/attestation/evidence",
                                 json={"evidence": evidence(agent, nonce)}),
                       400, "nonce expired")  # stale
    # no client certificate: refused
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(), timeout=30) as http:
        assert_problem(http.post("/v1/attestation/challenge"), 401, "mTLS")

    # unsigned metadata: a one-line error, exit 1, nothing registered
    plain = server.work_dir / "plain.json"
    plain.write_text(json.dumps({"device_type": "sensor", "version": "9.0",
                                 "sha256": "ab" * 32}))
    refused = server.cli("firmware", "add", "--metadata", plain, check=False)
    assert refused.rc == 1
    assert refused.err.startswith("error: ") and refused.err.count("\n") == 1
    assert "unsigned metadata is refused" in refused.err
    assert "9.0" not in server.cli("firmware", "list").out


def test_signer_revoke_ok_through_the_cli(server: Server) -> None:
    directory = server.work_dir / "leaky-signer"
    directory.mkdir()
    signer_key, signer_pub = write_signer(directory)
    server.cli("firmware", "signer", "add", "leaky", "--key", signer_pub)
    image = register_image(server, signer_key, "3.1.0")
    agent = enrolled_agent(server, "attest-leaky")
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert agent.attest("3.1.0", digest, {})["compliant"] is True

    out = server.cli("firmware", "signer", "revoke", "leaky").out
    assert "firmware signer leaky revoked in root: 1 image(s) no longer count, 1 device(s) " \
           "became non-compliant" in out
    status = json.loads(server.cli("firmware", "status", "attest-leaky", "--json").out)
    assert status["compliant"] is False
    assert "revoked firmware signer 'leaky'" in status["reason"]
    signers = json.loads(server.cli("firmware", "signer", "list", "--json").out)
    assert [s["revoked_at"] is not None for s in signers if s["name"] == "leaky"] == [True]
    assert "leaky" in server.cli("firmware", "signer", "list").out

    # the build re-signed with a new key: the device is compliant again at once
    renewed = server.work_dir / "renewed-signer"
    renewed.mkdir()
    renewed_key, renewed_pub = write_signer(renewed)
    server.cli("firmware", "signer", "add", "renewed", "--key", renewed_pub)
    metadata = renewed / "sensor-3.1.0.jws"
    server.cli("firmware", "sign", "--key", renewed_key, "--type", "sensor", "--version",
               "3.1.0", "--image", image, "--out", metadata)
    out = server.cli("firmware", "add", "--metadata", metadata).out
    assert "in root; 1 device(s) that ran it became compliant" in out
    status = json.loads(server.cli("firmware", "status", "attest-leaky", "--json").out)
    assert status["compliant"] is True

    again = server.cli("firmware", "signer", "revoke", "leaky", check=False)
    assert again.rc == 1
    assert again.err.startswith("error: ") and again.err.count("\n") == 1
    assert "already revoked" in again.err
