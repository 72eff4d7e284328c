"""G10/G12: JWS headers and payloads nested 1,000 deep or with duplicate names, at every
place a JWS is read (token endpoint, introspection, the resource-server helper), and
batches of token requests where one request is hostile or meets a bug.

A deep header once raised ``RecursionError`` in the JWS decoder; the token batch caught
only ``IamError``, so every other request of the batch got a 500.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from iotiam.errors import InternalError
from iotiam.tokens.models import InvalidClient, IssuedToken
from iotiam.tokens.verify import TokenRejected, TokenVerifier
from tokens.oauthkit import (
    TOKEN,
    DeviceIdentity,
    OAuthKit,
    b64,
    issued_count,
    refused,
    token_fast_path,
)
from tokens.test_token_batches import _http, audit_ok, by_assertion, by_certificate

DEEP = "[" * 1000 + "]" * 1000


def raw_jws(header: str, payload: str, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    """A compact JWS of exactly these header and payload texts, ES256-signed by ``key``."""
    signing_input = f"{b64(header.encode())}.{b64(payload.encode())}"
    signature = b""
    if key is not None:
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input}.{b64(signature)}"


def claims_text(kit: OAuthKit, client_id: str, jti: str, **extra: Any) -> str:
    """The JSON text of a correct assertion's claims."""
    return json.dumps({"iss": client_id, "sub": client_id, "aud": kit.issuer,
                       "exp": kit.now + 60, "iat": kit.now, "jti": jti, **extra})


ASSERTION_HEADER = '{"alg": "ES256", "typ": "client-authentication+jwt"}'


def hostile_assertions(kit: OAuthKit, d1: DeviceIdentity) -> dict[str, tuple[str, str]]:
    """Assertions for d1 (signed with its key where a signature matters), and the reason
    each must be refused for."""
    good_claims = claims_text(kit, "d1", "j-header")
    # the claims a verifier would see if the last of two names won: a good assertion
    duplicate_sub = claims_text(kit, "d1", "j-dup").replace(
        '"sub": "d1"', '"sub": "d2", "sub": "d1"')
    duplicate_alg = '{"alg": "HS256", "alg": "ES256", "typ": "client-authentication+jwt"}'
    return {
        "deep-header": (raw_jws(DEEP, good_claims, d1.key), "nested more than"),
        "deep-object-header": (raw_jws('{"a": ' * 700 + "1" + "}" * 700, good_claims, d1.key),
                               "nested more than"),
        "deep-payload": (raw_jws(ASSERTION_HEADER, DEEP, d1.key), "nested more than"),
        "deep-claim": (raw_jws(ASSERTION_HEADER, claims_text(kit, "d1", "j-deep")[:-1]
                               + ', "x": ' + DEEP + "}", d1.key), "nested more than"),
        "duplicate-claim": (raw_jws(ASSERTION_HEADER, duplicate_sub, d1.key),
                            "the key 'sub' twice"),
        "duplicate-header": (raw_jws(duplicate_alg, good_claims, d1.key),
                             "the key 'alg' twice"),
    }


HOSTILE = ["deep-header", "deep-object-header", "deep-payload", "deep-claim",
           "duplicate-claim", "duplicate-header"]


@pytest.mark.parametrize("case", HOSTILE, ids=[f"fail/{c}" for c in HOSTILE])
def test_token_fail_hostile_assertion(kit: OAuthKit, d1: DeviceIdentity, case: str) -> None:
    """Refused with the OAuth error (invalid_client, 401 as every bad client assertion
    here), no token, and an audited refusal: never a 500."""
    assertion, reason = hostile_assertions(kit, d1)[case]
    refused(kit, assertion, reason)


def test_batch_ok_good_requests_answered_beside_hostile_ones(kit: OAuthKit,
                                                            d1: DeviceIdentity) -> None:
    hostile = hostile_assertions(kit, d1)
    requests = [by_certificate(d1)]
    for case in HOSTILE:
        requests += [by_assertion(hostile[case][0]), by_assertion(kit.assertion("d1", d1.key))]
    before = issued_count(kit)
    outcomes = kit.inst.services.oauth.issue_tokens(requests)
    assert [type(o) for o in outcomes] == [IssuedToken] + [InvalidClient, IssuedToken] * 6
    for case, outcome in zip(HOSTILE, outcomes[1::2], strict=True):
        assert hostile[case][1] in str(outcome)
    assert issued_count(kit) == before + 7
    assert audit_ok(kit)


def test_batch_ok_a_bug_in_one_request_fails_that_request_alone(
        kit: OAuthKit, d1: DeviceIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only a refusal: an unexpected exception answers its own request (500
    server_error) and every other request of the same batch is answered as usual."""
    d2 = kit.device("d2")
    oauth = kit.inst.services.oauth
    granted = oauth._granted

    def buggy(reads: Any, client: Any, requested: Any, source: Any) -> Any:
        if client.client.client_id == "d2":
            raise RuntimeError("a bug met by d2's request only")
        return granted(reads, client, requested, source)

    monkeypatch.setattr(oauth, "_granted", buggy)
    before = issued_count(kit)
    outcomes = oauth.issue_tokens([by_certificate(d1), by_certificate(d2),
                                   by_assertion(kit.assertion("d1", d1.key))])
    assert [type(o) for o in outcomes] == [IssuedToken, InternalError, IssuedToken]
    assert "the error was logged" in str(outcomes[1])
    assert "a bug met" not in str(outcomes[1])  # the bug's text stays in the log
    assert issued_count(kit) == before + 2
    assert audit_ok(kit)

    app = token_fast_path(kit)

    async def concurrently() -> list[httpx.Response]:
        async with _http(app) as http:
            return list(await asyncio.gather(*(
                http.post(TOKEN, data={"grant_type": "client_credentials",
                                       "client_id": device.device_id},
                          headers=kit.cert_header(device))
                for device in [d1, d2] * 10)))

    answers = asyncio.run(concurrently())
    assert [a.status_code for a in answers[0::2]] == [200] * 10
    assert [a.status_code for a in answers[1::2]] == [500] * 10
    assert {a.json()["error"] for a in answers[1::2]} == {"server_error"}


def test_batch_ok_concurrent_hostile_requests_spoil_no_one_elses(kit: OAuthKit,
                                                                 d1: DeviceIdentity) -> None:
    """Two attackers' deep assertions among legitimate requests at the live endpoint:
    every legitimate request gets its token, in shared batches."""
    app = token_fast_path(kit)
    batches: list[int] = []
    issue = app.batcher._run
    app.batcher._run = lambda requests: batches.append(len(requests)) or issue(requests)
    deep = hostile_assertions(kit, d1)["deep-header"][0]
    hostile = {"grant_type": "client_credentials", "client_assertion": deep,
               "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    good = {"grant_type": "client_credentials", "client_id": "d1"}

    async def mixed() -> list[httpx.Response]:
        async with _http(app) as http:
            return list(await asyncio.gather(*(
                http.post(TOKEN, data=hostile) if i % 3 == 0 else
                http.post(TOKEN, data=good, headers=kit.cert_header(d1)) for i in range(45))))

    before = issued_count(kit)
    answers = asyncio.run(mixed())
    assert [a.status_code for a in answers[0::3]] == [401] * 15
    assert {a.json()["error"] for a in answers[0::3]} == {"invalid_client"}
    legitimate = [a for i, a in enumerate(answers) if i % 3]
    assert [a.status_code for a in legitimate] == [200] * 30
    assert sum(batches) == 45 and max(batches) > 1  # they did share batches
    assert issued_count(kit) == before + 30
    assert audit_ok(kit)


# -- access tokens: introspection and the resource-server helper ----------------------


def hostile_access_tokens(kit: OAuthKit) -> dict[str, str]:
    """Access tokens with a deep or duplicated header or payload, signed by the issuer."""
    ring = kit.inst.services.oauth.keys.ring()
    key = ring.signing_key.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    header = json.dumps({"alg": "ES256", "kid": ring.signing_kid, "typ": "at+jwt"})
    claims = json.dumps({"iss": kit.issuer, "sub": "d1", "aud": "urn:iotiam:fleet",
                         "exp": kit.now + 300, "iat": kit.now, "jti": "x",
                         "client_id": "d1", "scope": "mqtt:publish:devices/d1/#"})
    return {
        "deep-header": raw_jws(DEEP, claims, key),
        "deep-payload": raw_jws(header, DEEP, key),
        "duplicate-claim": raw_jws(header, claims.replace('"sub": "d1"',
                                                          '"sub": "admin", "sub": "d1"'), key),
    }


ACCESS = ["deep-header", "deep-payload", "duplicate-claim"]


@pytest.mark.parametrize("case", ACCESS, ids=[f"fail/{c}" for c in ACCESS])
def test_access_token_fail_hostile(kit: OAuthKit, d1: DeviceIdentity, case: str) -> None:
    token = hostile_access_tokens(kit)[case]
    verifier = TokenVerifier(issuer=kit.issuer, audience="urn:iotiam:fleet",
                             jwks=kit.inst.services.oauth.keys.jwks, clock=kit.inst.clock)
    with pytest.raises(TokenRejected, match=r"nested more than|twice"):
        verifier.verify(token)
    assert kit.introspect(token) == {"active": False}
    # and the endpoint still answers a real token beside it
    assert kit.introspect(kit.access_token(d1))["active"] is True


def test_batch_ok_failed_housekeeping_fails_no_request(
        kit: OAuthKit, d1: DeviceIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    """The once-a-minute purge of expired jtis runs after a batch committed: its failure
    must not turn the batch's committed tokens into errors."""
    oauth = kit.inst.services.oauth

    def purge_fails() -> None:
        raise RuntimeError("the purge met a bug")

    monkeypatch.setattr(oauth.revocation, "purge", purge_fails)
    monkeypatch.setattr(oauth, "_purged_at", float("-inf"))
    before = issued_count(kit)
    outcomes = oauth.issue_tokens([by_certificate(d1), by_assertion(kit.assertion("d1", d1.key))])
    assert [type(o) for o in outcomes] == [IssuedToken, IssuedToken]
    assert issued_count(kit) == before + 2
