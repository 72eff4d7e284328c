"""The ``peers`` benchmark's parts that need neither cfssl nor step-ca."""

from __future__ import annotations

import asyncio
import math
import stat
from pathlib import Path

import pytest
from benchmarks import peers
from benchmarks.harness import CpuMeter, Measured
from benchmarks.loadgen import KeepAlivePool, encode_request
from benchmarks.peer_servers import (
    PROVISIONER,
    STEP_CA_ENV,
    make_pki,
    provisioner_key,
    sign_token,
    step_ca_binary,
    step_ca_config,
)
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidClaimError
from joserfc.jwk import ECKey

URL = "https://127.0.0.1:4443"
NOW = 1_800_000_000


def _ca_json(tmp_path: Path, key: ECKey) -> dict[str, object]:
    return step_ca_config(make_pki().write(tmp_path), tmp_path, 4443, key)


def test_ok_ca_json_has_one_public_jwk_provisioner_and_badger(tmp_path: Path) -> None:
    key = provisioner_key()
    config = _ca_json(tmp_path, key)
    [provisioner] = config["authority"]["provisioners"]  # type: ignore[index]
    assert provisioner["type"] == "JWK" and provisioner["name"] == PROVISIONER
    assert "d" not in provisioner["key"]  # the private half stays with the token maker
    assert provisioner["key"]["kid"] == key.thumbprint()
    assert config["db"] == {"type": "badgerv2", "dataSource": str(tmp_path / "db")}
    assert config["address"] == "127.0.0.1:4443" and config["dnsNames"] == ["127.0.0.1"]
    for name in ("root", "crt", "key"):
        assert Path(str(config[name])).is_file()


def test_ok_token_verifies_against_the_provisioner_key_in_ca_json(tmp_path: Path) -> None:
    key = provisioner_key()
    published = ECKey.import_key(
        _ca_json(tmp_path, key)["authority"]["provisioners"][0]["key"])  # type: ignore[index]
    token = jwt.decode(sign_token(key, URL, "bench-000001", now=NOW), published)
    assert token.header["kid"] == published.kid and token.header["alg"] == "ES256"
    registry = jwt.JWTClaimsRegistry(
        now=NOW + 10, iss={"essential": True, "value": PROVISIONER},
        aud={"essential": True, "value": f"{URL}/1.0/sign"},
        sub={"essential": True, "value": "bench-000001"})
    registry.validate(token.claims)
    assert token.claims["sans"] == ["bench-000001"]
    assert token.claims["exp"] - token.claims["nbf"] == 300


def test_fail_token_of_another_key_or_for_another_device(tmp_path: Path) -> None:
    key = provisioner_key()
    published = ECKey.import_key(key.as_dict(private=False))
    with pytest.raises(BadSignatureError):
        jwt.decode(sign_token(provisioner_key(), URL, "bench-000001", now=NOW), published)
    token = jwt.decode(sign_token(key, URL, "bench-000002", now=NOW), published)
    with pytest.raises(InvalidClaimError):
        jwt.JWTClaimsRegistry(now=NOW, sub={"essential": True, "value": "bench-000001"}
                              ).validate(token.claims)


def test_ok_tokens_are_one_time() -> None:
    key = provisioner_key()
    jtis = {jwt.decode(sign_token(key, URL, "d", now=NOW), key).claims["jti"]
            for _ in range(20)}
    assert len(jtis) == 20


def test_ok_issuing_ca_and_tls_certificate_chain_to_the_root() -> None:
    pki = make_pki()
    pki.issuing.verify_directly_issued_by(pki.root)
    pki.tls.verify_directly_issued_by(pki.root)


def test_ok_step_ca_binary_from_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "step-ca"
    binary.write_text("#!/bin/sh\n")
    monkeypatch.setenv(STEP_CA_ENV, str(binary))
    assert step_ca_binary() is None  # not executable
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    assert step_ca_binary() == str(binary)


def test_ok_missing_peers_are_skipped_rows_saying_how_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(STEP_CA_ENV, raising=False)
    work = peers.Workload([], [], 0, 0.0, [], [], 0, 0.0)
    rows = [row for server in (peers.cfssl_server(work), peers.step_ca_server(work))
            for row in peers.server_rows(server)]
    assert [r.verdict for r in rows] == ["info", "info"]
    assert all(math.isnan(r.value) for r in rows)
    assert "apt-get install golang-cfssl" in rows[0].notes
    assert STEP_CA_ENV in rows[1].notes and "benchmarks/README.md" in rows[1].notes


def _run(ms_per_cert: float, done: int = 100) -> peers.Run:
    cpu = CpuMeter(0)
    cpu.server_seconds = ms_per_cert * done / 1000
    return peers.Run(Measured(done, 1.0, [0.01] * done), cpu)


def test_ok_ratios_only_against_peers_that_ran() -> None:
    ours = peers.Server("iotiam --workers 1", {peers.KEEP_ALIVE: _run(2.0),
                                                peers.FRESH: _run(6.0)})
    step_ca = peers.Server("step-ca", {peers.KEEP_ALIVE: _run(1.0), peers.FRESH: _run(2.0)})
    cfssl = peers.Server("cfssl", {}, skipped="not installed")
    rows = peers.ratio_rows([ours], [cfssl, step_ca])
    assert [(r.name, r.value) for r in rows] == [
        ("ratio iotiam --workers 1 / step-ca, sign, keep-alive", pytest.approx(2.0)),
        ("ratio iotiam --workers 1 / step-ca, sign, new TLS connection each",
         pytest.approx(3.0)),
    ]


def test_ok_chunked_answer_is_read_whole() -> None:
    async def scenario() -> bytes:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\n{\"a\":\r\n3;x=y\r\n 1}\r\n0\r\n\r\n")
            await writer.drain()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, KeepAlivePool(f"http://127.0.0.1:{port}", 1) as pool:
            got = await pool.send(encode_request("GET", f"http://127.0.0.1:{port}/", b""))
        assert got.status == 201
        return got.body

    assert asyncio.run(scenario()) == b'{"a": 1}'
