"""The device agent with its key in a real SoftHSM2 token (docs/hsm.md, the device side):
``iotiam-agent enroll --key pkcs11:...`` leaves no key file, renewal by a proof of the
token key, an access token by a client assertion signed in the token, and Mosquitto's
own client reaching the key through OpenSSL's pkcs11 engine, until the device is revoked."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.agent import Agent, AgentError
from iotiam.hsm.pkcs11_signer import close_sessions
from iotiam.testing import require_binary
from iotiam.testing.softhsm import SoftHsmToken, create_token, require_pkcs11_engine

from .conftest import serve_live
from .live_server import Server, venv_tool
from .test_hsm_ca import PEM_KEY, _token_public_keys
from .test_oauth import SCOPE, introspect_cli

pytestmark = pytest.mark.integration

KEY = "pkcs11:token=dev;object=device"
#: how long a new device or a revocation may take to reach the broker
SYNC_SECONDS = 10.0


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    return create_token(tmp_path_factory.mktemp("device-softhsm"), label="dev")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_binary("mosquitto")
    require_binary("mosquitto_pub")
    require_pkcs11_engine()
    yield from serve_live("sqlite", tmp_path_factory.mktemp("agent-hsm"), broker=True)


def agent_env(token: SoftHsmToken, **changes: str) -> dict[str, str]:
    """The agent's environment: the token's store, module and PIN (nothing else of iotiam)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTIAM_")}
    return {**env, **token.environment(), **changes}


def agent_cli(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([venv_tool("iotiam-agent"), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def enroll_args(plane: Server, directory: Path, device: str, claim: str,
                key: str = KEY) -> list[str | Path]:
    return ["enroll", "--dir", directory, "--server", plane.api_url, "--ca",
            plane.tls_ca_file, "--device", device, "--claim", claim, "--key", key]


def new_claim(plane: Server, device: str) -> str:
    return plane.cli("claim", "create", "--device", device).out.strip().splitlines()[-1]


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def publish(plane: Server, status: dict[str, Any], env: dict[str, str]
            ) -> subprocess.CompletedProcess[str]:
    """The command ``iotiam-agent status`` prints, pointed at the managed broker."""
    assert plane.broker_ports is not None
    command = status["mqtt"]["command"].replace("-h BROKER -p 8883",
                                                f"-h 127.0.0.1 -p {plane.broker_ports[0]}")
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True,
                          timeout=30)


def until(check: Any, seconds: float = SYNC_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_token_key_ok_enroll_renew_token_mqtt_then_revoked(plane, token, tmp_path, openssl):
    device = "hsm-dev-1"
    plane.register(device, "sensor")
    directory = tmp_path / "agent"
    env = agent_env(token)
    enrolled = agent_cli(env, *enroll_args(plane, directory, device, new_claim(plane, device)))
    assert enrolled.returncode == 0, enrolled.stderr

    # only the key's URI is kept: no key file, no private key anywhere in the directory
    state = json.loads((directory / "state.json").read_text())
    assert state["key_uri"].startswith("pkcs11:token=dev;object=device;") and ";id=" in \
        state["key_uri"]
    assert not (directory / "key.pem").exists()
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert not [p for p in files if PEM_KEY.search(p.read_bytes())]
    assert not [p for p in files if b"PRIVATE" in p.read_bytes()]
    cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
    assert _token_public_keys(token, tmp_path) == {spki(cert)}
    verified = subprocess.run([openssl, "verify", "-CAfile", plane.chain_pem,
                               directory / "cert.pem"], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Mosquitto's client with the engine, as `status` says, on a broker requiring certs
    status = json.loads(agent_cli(env, "status", "--dir", directory).stdout)
    assert status["key"] == state["key_uri"]
    assert status["mqtt"]["engine_key"].endswith(";type=private")
    assert until(lambda: publish(plane, status, env).returncode == 0), \
        publish(plane, status, env).stderr
    # without the token's PIN the engine cannot use the key: the handshake fails
    assert publish(plane, status, {**env, "IOTIAM_PKCS11_PIN": "0000"}).returncode != 0

    # renewal: a new key pair in the token, proven by the old one; the old one is deleted
    renewed = agent_cli(env, "renew", "--dir", directory)
    assert renewed.returncode == 0, renewed.stderr
    new_state = json.loads((directory / "state.json").read_text())
    assert new_state["key_uri"] != state["key_uri"]
    assert new_state["serial"] != state["serial"]
    new_cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
    assert spki(new_cert) != spki(cert)
    assert _token_public_keys(token, tmp_path) == {spki(new_cert)}
    assert not (directory / "key.pem").exists()
    assert subprocess.run([openssl, "verify", "-CAfile", plane.chain_pem,
                           directory / "cert.pem"], capture_output=True).returncode == 0
    with plane.api() as api:
        records = api.get("/v1/audit/records", params={"limit": 1000}).json()["items"]
    assert [r["details"]["before_expiry"] for r in records
            if r["tag"] == "device:recovery:succeeded" and r["subject"] == f"device:{device}"
            ] == [True]
    status = json.loads(agent_cli(env, "status", "--dir", directory).stdout)
    assert until(lambda: publish(plane, status, env).returncode == 0)

    # an access token from a client assertion signed in the token (private_key_jwt)
    plane.cli("client", "create", "--device", device)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in token.environment().items():  # SoftHSM2 reads its conf at load
            patch.setenv(name, value)
        close_sessions()
        try:
            agent = Agent(directory)
            access = agent.access_token(SCOPE.format(device))
            assert introspect_cli(plane, access)["active"]
            with pytest.raises(AgentError, match="PKCS#11 token"):
                agent.ssl_context()
        finally:
            close_sessions()

    # revoked: the broker refuses the engine's handshake, and renewal is refused
    plane.cli("cert", "revoke", "--device", device, "--reason", "keyCompromise")
    assert until(lambda: publish(plane, status, env).returncode != 0), \
        "the broker still accepts a revoked device's token key"
    line = one_error_line(agent_cli(env, "renew", "--dir", directory))
    assert "refused" in line
    # the refused renewal's new key pair did not stay in the token
    assert _token_public_keys(token, tmp_path) == {spki(new_cert)}


def test_token_key_fail_wrong_pin_missing_token_or_module(plane, token, tmp_path):
    device = "hsm-dev-2"
    plane.register(device, "sensor")
    claim = new_claim(plane, device)
    key = "pkcs11:token=dev;object=device-2"
    attempts = {
        "the PIN for the PKCS#11 token 'dev' is wrong": (
            agent_env(token, IOTIAM_PKCS11_PIN="wrong-pin"), key),
        "no PKCS#11 token 'absent'": (agent_env(token), "pkcs11:token=absent;object=device"),
        "no PKCS#11 module at /nonexistent/p11.so": (
            agent_env(token, IOTIAM_PKCS11_MODULE="/nonexistent/p11.so"), key),
        "no pin-value in the URI": (agent_env(token), key + "?pin-value=1234"),
    }
    for number, (expected, (env, given)) in enumerate(attempts.items()):
        directory = tmp_path / f"attempt-{number}"
        line = one_error_line(agent_cli(env, *enroll_args(plane, directory, device, claim,
                                                          given)))
        assert expected in line, line
        assert not (directory / "cert.pem").exists()
        assert not (directory / "key.pem").exists()
    # none of them spent the one-time claim
    directory = tmp_path / "ok"
    ok = agent_cli(agent_env(token), *enroll_args(plane, directory, device, claim, key))
    assert ok.returncode == 0, ok.stderr
    # a key another device's certificate names is not enrolled again
    plane.register("hsm-dev-3", "sensor")
    again = agent_cli(agent_env(token), *enroll_args(
        plane, tmp_path / "reused", "hsm-dev-3", new_claim(plane, "hsm-dev-3"), key))
    assert "already certified" in one_error_line(again)
