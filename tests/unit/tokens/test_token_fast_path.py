"""The token endpoint's fast path answers exactly as the FastAPI route behind it would.

Both read the same requests here: the whole app (fast path in front) and the app behind
the fast path (the route, with the same size limit). Bad input gets the same RFC 6749
§5.2 error (or the same 413 problem), never a 5xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from iotiam.tokens.models import CLIENT_ASSERTION_TYPE
from tokens.oauthkit import TOKEN, DeviceIdentity, OAuthKit, token_fast_path

FORM = {"content-type": "application/x-www-form-urlencoded"}
#: headers an OAuth client reads
_COMPARED = ("content-type", "cache-control", "pragma", "www-authenticate", "retry-after")


@dataclass
class BadInput:
    """A request body, its headers, and the RFC 6749 error both paths must answer."""

    body: bytes
    headers: dict[str, str]
    error: str | None
    status: int


CASES: dict[str, BadInput] = {
    "fail/json-body": BadInput(b'{"grant_type":"client_credentials"}',
                               {"content-type": "application/json"}, "invalid_request", 400),
    "fail/no-content-type": BadInput(b"grant_type=client_credentials", {}, "invalid_request",
                                     400),
    "fail/multipart": BadInput(b"--x--", {"content-type": "multipart/form-data; boundary=x"},
                               "invalid_request", 400),
    "fail/empty-body": BadInput(b"", FORM, "invalid_request", 400),
    "fail/no-grant-type": BadInput(b"client_id=d1", FORM, "invalid_request", 400),
    "fail/repeated-parameter": BadInput(b"grant_type=client_credentials&grant_type=x", FORM,
                                        "invalid_request", 400),
    "fail/too-many-parameters": BadInput(
        "&".join(f"p{i}=1" for i in range(21)).encode(), FORM, "invalid_request", 400),
    "fail/nul-byte": BadInput(b"grant_type=client_credentials&scope=a%00b", FORM,
                              "invalid_request", 400),
    "fail/long-value": BadInput(b"grant_type=client_credentials&scope=" + b"a" * 9000, FORM,
                                "invalid_request", 400),
    "fail/not-utf8": BadInput(b"grant_type=\xff\xfe%ff", FORM, "unsupported_grant_type", 400),
    "fail/unsupported-grant": BadInput(b"grant_type=password&username=a&password=b", FORM,
                                       "unsupported_grant_type", 400),
    "fail/client-secret": BadInput(
        b"grant_type=client_credentials&client_id=d1&client_secret=hunter2", FORM,
        "invalid_client", 401),
    "fail/basic-auth": BadInput(b"grant_type=client_credentials", {
        **FORM, "authorization": "Basic ZDE6aHVudGVyMg=="}, "invalid_client", 401),
    "fail/no-client-authentication": BadInput(b"grant_type=client_credentials&client_id=d1",
                                              FORM, "invalid_client", 401),
    "fail/unknown-client": BadInput(
        b"grant_type=client_credentials&client_assertion_type="
        + CLIENT_ASSERTION_TYPE.encode() + b"&client_assertion=a.b.c", FORM,
        "invalid_client", 401),
    "fail/garbage-assertion-type": BadInput(
        b"grant_type=client_credentials&client_assertion_type=x&client_assertion=y", FORM,
        "invalid_client", 401),
    "fail/device-code-missing": BadInput(
        b"grant_type=urn:ietf:params:oauth:grant-type:device_code", FORM,
        "invalid_request", 400),
    "fail/too-large": BadInput(b"grant_type=client_credentials&scope=" + b"a" * (1024 * 1024 + 1),
                               FORM, None, 413),
}


def both(kit: OAuthKit) -> tuple[TestClient, TestClient]:
    """A client of the whole app and one of the app behind its token fast path."""
    fast = kit.http
    app = token_fast_path(kit)
    route = TestClient(app.app, raise_server_exceptions=False, client=("127.0.0.1", 50000))
    kit.inst._clients.append(route)
    return fast, route


def comparable(answer: httpx.Response) -> tuple[int, Any, dict[str, str | None]]:
    """What a client sees of an answer: status, JSON body and the headers it reads."""
    return (answer.status_code, answer.json(),
            {name: answer.headers.get(name) for name in _COMPARED})


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_fail_bad_input_answered_as_the_route_does(kit: OAuthKit, d1: DeviceIdentity,
                                                   case: BadInput) -> None:
    fast, route = both(kit)
    answers = [client.post(TOKEN, content=case.body, headers=case.headers)
               for client in (fast, route)]
    assert comparable(answers[0]) == comparable(answers[1])
    answer = answers[0]
    assert answer.status_code == case.status, answer.text
    if case.error is None:
        assert answer.headers["content-type"] == "application/problem+json"
        return
    kit.assert_oauth_error(answer, case.error, case.status)
    assert answer.headers["cache-control"] == "no-store"


def test_ok_both_paths_issue_the_same_kind_of_token(kit: OAuthKit, d1: DeviceIdentity) -> None:
    fast, route = both(kit)
    app = token_fast_path(kit)
    batches: list[int] = []
    issue = app.batcher._run
    app.batcher._run = lambda requests: batches.append(len(requests)) or issue(requests)
    data = {"grant_type": "client_credentials", "client_id": "d1",
            "scope": "mqtt:publish:devices/d1/#"}
    answers = [client.post(TOKEN, data=data, headers=kit.cert_header(d1))
               for client in (fast, route)]
    assert batches == [1]  # the fast path answered the first, the route the second
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
    bodies = [answer.json() for answer in answers]
    assert bodies[0].keys() == bodies[1].keys() == {"access_token", "token_type",
                                                    "expires_in", "scope"}
    assert [{k: v for k, v in b.items() if k != "access_token"} for b in bodies] == \
        [{"token_type": "Bearer", "expires_in": 600, "scope": "mqtt:publish:devices/d1/#"}] * 2
    # certificate-bound on both paths (RFC 8705 §3.1)
    assert all(kit.introspect(b["access_token"])["cnf"] for b in bodies)


def test_ok_a_proxy_header_from_an_untrusted_peer_is_ignored(kit: OAuthKit,
                                                             d1: DeviceIdentity) -> None:
    services = kit.inst.services  # no trusted proxies: the header is anyone's claim
    from iotiam.api.app import create_api_app

    client = TestClient(create_api_app(services), raise_server_exceptions=False,
                        client=("127.0.0.1", 50000))
    kit.inst._clients.append(client)
    answer = client.post(TOKEN, data={"grant_type": "client_credentials", "client_id": "d1"},
                         headers=kit.cert_header(d1))
    kit.assert_oauth_error(answer, "invalid_client", 401)
