"""G10: hostile client assertion signatures and headers, each refused with invalid_client.

Every refusal is an RFC 6749 §5.2 error (never a 5xx), issues no token and is audited.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import ECKey
from sqlalchemy import func, select

from iotiam.storage.tables.tokens import oauth_clients
from iotiam.testing import make_key
from tokens.oauthkit import DeviceIdentity, OAuthKit, forge, forge_hs256, refused


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A local port that would notice any fetch of a jku/x5u URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/keys", sock
    finally:
        sock.close()


def nothing_fetched(sock: socket.socket) -> bool:
    """No connection reached the listener."""
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_fail_alg_none_in_any_case(kit: OAuthKit, d1: DeviceIdentity, alg: str) -> None:
    claims = {"iss": "d1", "sub": "d1", "aud": kit.issuer, "exp": kit.now + 60, "jti": alg}
    refused(kit, forge({"alg": alg, "typ": "JWT"}, claims), "is not accepted")


@pytest.mark.parametrize("encoding", ["pem", "der"])
def test_fail_hs256_signed_with_the_public_key(kit: OAuthKit, d1: DeviceIdentity,
                                               encoding: str) -> None:
    public = d1.certificate.public_key()
    secret = public.public_bytes(
        serialization.Encoding.PEM if encoding == "pem" else serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = {"iss": "d1", "sub": "d1", "aud": kit.issuer, "exp": kit.now + 60, "jti": "h"}
    refused(kit, forge_hs256({"alg": "HS256", "typ": "JWT"}, claims, secret), "HS256")


def test_fail_embedded_jwk_with_the_attackers_key(kit: OAuthKit, d1: DeviceIdentity) -> None:
    attacker = make_key()
    jwk = ECKey.import_key(attacker).as_dict(private=False)
    refused(kit, kit.assertion("d1", attacker, header={"jwk": jwk}), "does not verify")


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_fail_jku_x5u_never_fetched(kit: OAuthKit, d1: DeviceIdentity, header: str,
                                    listener: tuple[str, socket.socket]) -> None:
    url, sock = listener
    refused(kit, kit.assertion("d1", make_key(), header={header: url}), "does not verify")
    assert nothing_fetched(sock)


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_ok_jku_x5u_ignored_on_a_correct_assertion(kit: OAuthKit, d1: DeviceIdentity,
                                                   header: str,
                                                   listener: tuple[str, socket.socket]) -> None:
    url, sock = listener
    answer = kit.token(assertion=kit.assertion("d1", d1.key, header={header: url}))
    assert answer.status_code == 200, answer.text
    assert nothing_fetched(sock)


@pytest.mark.parametrize("kid", ["../../../etc/passwd", "..\\..\\keys", "' OR '1'='1",
                                 "1; DROP TABLE oauth_clients; --", "x" * 500])
def test_fail_kid_path_traversal_or_sql(kit: OAuthKit, d1: DeviceIdentity, kid: str) -> None:
    refused(kit, kit.assertion("d1", d1.key, header={"kid": kid}), "kid")
    with kit.inst.services.database.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(oauth_clients)
                            ).scalar_one() == 1
