"""Issuing-CA rotation and compromise against ``iotiam serve`` with its managed Mosquitto,
checked with stock openssl (``verify -crl_check_all``, ``ocsp``) and MQTT clients
(docs/ca-rotation.md)."""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from iotiam.agent.agent import Agent
from iotiam.testing import require_binary
from iotiam.testing.builders import make_csr
from iotiam.testing.mqtt import MqttDevice, refused_within

from .conftest import serve_live
from .live_server import Server
from .relying_party import run
from .test_dataplane_e2e import connect, enroll

pytestmark = pytest.mark.integration

#: G3 says 1 s; a loaded 2-core host gets some slack before the test calls it a failure
DROP_SECONDS = 5.0
PEM_END = "-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``serve`` with its managed Mosquitto (SQLite)."""
    require_binary("mosquitto")
    yield from serve_live("sqlite", tmp_path_factory.mktemp("ca-rotation"), broker=True)


def cas(server: Server) -> dict[str, dict[str, object]]:
    """``iotiam ca list --json`` by id."""
    items = json.loads(server.cli("ca", "list", "--json").out)
    return {str(c["id"]): c for c in items}


def ca_file(server: Server, ca_id: str) -> Path:
    """A CA certificate as relying parties fetch it (AIA target), PEM."""
    der = httpx.get(f"{server.http_url}/ca/{ca_id}.crt", timeout=10)
    assert der.status_code == 200, der.text
    path = server.work_dir / f"{ca_id}.der"
    path.write_bytes(der.content)
    pem = server.work_dir / f"{ca_id}.pem"
    run("openssl", "x509", "-inform", "DER", "-in", path, "-out", pem)
    return pem


def crls(server: Server, *ca_ids: str) -> Path:
    """The CRLs of ``ca_ids`` from the CDP URLs, PEM, in one file."""
    out = server.work_dir / ("crls-" + "-".join(i[-6:] for i in ca_ids) + ".pem")
    text = ""
    for ca_id in ca_ids:
        der = httpx.get(f"{server.http_url}/crl/{ca_id}.crl", timeout=10)
        assert der.status_code == 200, der.text
        path = server.work_dir / f"{ca_id}.crl"
        path.write_bytes(der.content)
        text += run("openssl", "crl", "-inform", "DER", "-in", path).stdout
    out.write_text(text)
    return out


def verify(server: Server, leaf: Path, untrusted: list[Path], crl_file: Path | None
           ) -> tuple[bool, str]:
    """``openssl verify`` trusting only the root; with ``-crl_check_all`` when given CRLs."""
    bundle = server.work_dir / "untrusted.pem"
    bundle.write_text("".join(p.read_text() for p in untrusted))
    options: list[str | Path] = ["-CAfile", server.root_pem, "-untrusted", bundle]
    if crl_file is not None:
        options += ["-crl_check_all", "-CRLfile", crl_file]
    done = run("openssl", "verify", *options, leaf, check=False)
    return done.returncode == 0, done.stdout + done.stderr


def ocsp_word(server: Server, leaf: Path, issuer: Path) -> str:
    """What ``openssl ocsp`` says of ``leaf``, its response verified up to the root."""
    bundle = server.work_dir / "ocsp-trust.pem"
    bundle.write_text(server.root_pem.read_text() + issuer.read_text())
    done = run("openssl", "ocsp", "-issuer", issuer, "-cert", leaf, "-url",
               f"{server.http_url}/ocsp", "-CAfile", bundle)
    assert "Response verify OK" in done.stderr, done
    match = re.search(rf"^{re.escape(str(leaf))}: (\w+)", done.stdout, re.MULTILINE)
    assert match, done.stdout
    return match.group(1)


def issuer_of(leaf: Path) -> str:
    """The issuer DN openssl prints."""
    return run("openssl", "x509", "-in", leaf, "-noout", "-issuer").stdout.strip()


def test_rotation_then_compromise(server: Server, openssl: str) -> None:
    first = next(i for i, c in cas(server).items()
                 if c["state"] == "active" and c["role"] == "issuing")
    ca1 = ca_file(server, first)
    old_cert, old_key, _ = enroll(server, "rot-old")

    rotated = json.loads(server.cli("ca", "rotate", "--json").out)
    second = rotated["new"]
    assert rotated["previous"] == first and rotated["moving"] == 1
    listed = cas(server)
    assert (listed[first]["state"], listed[first]["live_certificates"]) == ("retiring", 1)
    assert listed[second]["state"] == "active"
    ca2 = ca_file(server, second)

    # new issuance comes from the new CA at once; the chain served holds both
    new_cert, new_key, _ = enroll(server, "rot-new")
    assert "Issuing CA 2" in issuer_of(new_cert) and "Issuing CA 1" in issuer_of(old_cert)
    chain = httpx.get(f"{server.http_url}/ca/chain.pem", timeout=10).text
    assert chain.count(PEM_END) == 3
    server.chain_pem.write_text(chain)

    # openssl: both generations verify, CRLs of root and both CAs checked
    every_crl = crls(server, listed_root(listed), first, second)
    for leaf in (old_cert, new_cert):
        ok, out = verify(server, leaf, [ca1, ca2], every_crl)
        assert ok, out
    assert ocsp_word(server, old_cert, ca1) == "good"
    assert ocsp_word(server, new_cert, ca2) == "good"

    # the broker accepts both (its cafile gained the new CA)
    old_device = connect(server, old_cert, old_key)
    new_device = connect(server, new_cert, new_key)
    try:
        assert old_device.connect_result == "Success"
        assert new_device.connect_result == "Success"
        new_device.client.reconnect_delay_set(30, 60)
        compromise_active_ca(server, second, ca2, new_cert, new_key, new_device)
        # the retiring CA's device is untouched
        assert not old_device.disconnected.is_set()
        old_device.publish("devices/rot-old/telemetry", b"1")
        assert old_device.received(timeout=3) == ("devices/rot-old/telemetry", b"1")
        ok, out = verify(server, old_cert, [ca1], crls(server, listed_root(listed), first))
        assert ok, out
    finally:
        old_device.close()
        new_device.close()


def listed_root(listed: dict[str, dict[str, object]]) -> str:
    """The root CA's id."""
    return next(i for i, c in listed.items() if c["role"] == "root")


def compromise_active_ca(server: Server, ca_id: str, ca_pem: Path, cert: Path, key: Path,
                         device: MqttDevice) -> None:
    """Dry run, drill, then the real revocation of the active CA and its checks."""
    dry = json.loads(server.cli("ca", "revoke", ca_id, "--dry-run", "--json").out)
    assert (dry["certificates"], dry["devices"], dry["dry_run"]) == (1, 1, True)
    drill = json.loads(server.cli("drill", "ca-compromise", ca_id, "--json").out)
    assert drill["drill"] and drill["left_live"] == 0 and drill["certificates"] == 1
    assert ocsp_word(server, cert, ca_pem) == "good"  # the drill changed nothing
    assert not device.disconnected.is_set()

    done = json.loads(server.cli("ca", "revoke", ca_id, "--reason", "keyCompromise",
                                 "--json").out)
    revoked_at = time.monotonic()
    assert done["certificates"] == 1 and done["successor"]
    # the live session drops through the existing revocation kick path
    assert device.disconnected.wait(DROP_SECONDS), "the session survived the CA's revocation"
    print(f"session dropped {time.monotonic() - revoked_at:.2f} s after the call returned")
    listed = cas(server)
    assert listed[ca_id]["state"] == "revoked"
    assert listed[done["successor"]]["state"] == "active"

    # openssl: the root's CRL lists the CA; the certificate fails -crl_check_all
    root_id = listed_root(listed)
    ok, out = verify(server, cert, [ca_pem], crls(server, root_id, ca_id))
    assert not ok and "revoked" in out, out
    assert ocsp_word(server, cert, ca_pem) == "revoked"
    # EST re-enrollment with it is refused
    context = ssl.create_default_context(cafile=str(server.tls_ca_file))
    context.load_cert_chain(str(cert), str(key))
    with httpx.Client(base_url=server.api_url, verify=context, timeout=30) as http:
        answer = http.post("/.well-known/est/simplereenroll",
                           content=base64.b64encode(make_csr("rot-new", pem=False)),
                           headers={"Content-Type": "application/pkcs10"})
    assert answer.status_code in (401, 403), answer.text
    # the broker refuses a reconnect once its cafile and CRLs are reinstalled
    assert server.broker_ports is not None
    assert refused_within(15, "rot-new-again", server.chain_pem, cert, key,
                          server.broker_ports[0]), "the broker still accepts the revoked CA's cert"
    # new issuance goes on under the successor
    successor_cert, _, _ = enroll(server, "rot-after")
    assert "Issuing CA 3" in issuer_of(successor_cert)
    # the API and the broker present certificates of the successor, valid with CRLs
    assert server.broker_ports is not None
    successor_crls = crls(server, root_id, done["successor"])
    for name, port in (("api", server.port), ("broker", server.broker_ports[0])):
        leaf, intermediates = presented_chain(server, port, "Issuing CA 3")
        ok, out = verify(server, leaf, intermediates, successor_crls)
        assert ok, (name, out)


def presented_chain(server: Server, port: int, issuer: str) -> tuple[Path, list[Path]]:
    """The chain a fresh handshake to ``port`` presents (``openssl s_client
    -showcerts``) once its leaf's issuer names ``issuer``: the leaf and the rest, PEM."""
    deadline = time.monotonic() + 15
    while True:
        done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                               "-showcerts"], input="", capture_output=True, text=True,
                              timeout=30, check=False)
        blocks = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n",
                            done.stdout, re.DOTALL)
        assert blocks, done.stdout + done.stderr
        leaf = x509.load_pem_x509_certificate(blocks[0].encode())
        if issuer in leaf.issuer.rfc4514_string():
            break
        assert time.monotonic() < deadline, f"port {port} still presents {leaf.issuer}"
        time.sleep(0.3)
    files = []
    for n, block in enumerate(blocks):
        path = server.work_dir / f"presented-{port}-{n}.pem"
        path.write_text(block)
        files.append(path)
    return files[0], files[1:]


def test_ca_revoke_bad_input_is_one_line(server: Server) -> None:
    for args in (("ca", "revoke", "no-such-ca"), ("ca", "revoke", "issuing-000000000000"),
                 ("ca", "revoke", listed_root(cas(server)))):
        result = server.cli(*args, check=False)
        assert result.rc != 0, args
        assert result.err.strip().startswith("error:"), result
        assert result.err.strip().count("\n") == 0, result
    with server.api() as api:
        bad = api.post("/v1/cas/rotate", json={"dry_run": "yes"})
    assert bad.status_code == 422 or bad.status_code == 400, bad.text
    assert bad.headers["content-type"].startswith("application/problem+json")


def test_agent_moves_to_the_active_ca_when_asked(server: Server) -> None:
    """``ca migrate``: an agent on a retiring CA renews onto the active one at its next
    issuer check, long before its usual renewal; its chain.pem follows."""
    server.register("rot-agent")
    token = server.cli("claim", "create", "--device", "rot-agent").out.strip().splitlines()[-1]
    agent = Agent(server.work_dir / "rot-agent", server_url=server.api_url,
                  device_id="rot-agent", server_ca=server.tls_ca_file,
                  issuer_check=timedelta(0), migration_spread=timedelta(0))
    agent.enroll(token)
    server.cli("ca", "rotate")  # the agent's CA retires
    before = agent.files.load_certificate()
    assert before is not None
    assert agent.tick() == "waiting"  # not asked to move yet: renews at its time
    moved = json.loads(server.cli("ca", "migrate", "--json").out)
    assert moved["moving"] >= 1
    assert agent.tick() == "renewed"
    after = agent.files.load_certificate()
    assert after is not None and after.issuer != before.issuer
    assert after.issuer.rfc4514_string() == httpx.get(
        f"{server.http_url}/ca/issuing.json", timeout=10).json()["subject"]
    assert agent.files.chain.read_text().count(PEM_END) >= 2
    first = x509.load_pem_x509_certificate(agent.files.chain.read_bytes())
    assert first.subject == after.issuer
    assert agent.tick() == "waiting"  # on the active CA now: nothing more to do
