"""Methods at the HTTP edge: HEAD wherever GET is (RFC 9110 §9.3.2), and a 405 with an
``Allow`` header naming the resource's methods (RFC 9110 §15.5.6), on the admin API and
on the public plain-HTTP port alike, the OCSP fast path included."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from expect import assert_problem
from fastapi.testclient import TestClient

from conftest import Installation

Client = Callable[[Installation], TestClient]
APPS: dict[str, Client] = {"public": lambda i: i.public(), "api": lambda i: i.api()}


def allowed(answer: httpx.Response) -> set[str]:
    """The methods of a response's ``Allow`` header."""
    return {m.strip() for m in answer.headers["allow"].split(",")}


# -- OCSP answers 405, not 404, to a method it does not take ----------------------------


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize(("method", "path", "methods"), [
    ("PUT", "/ocsp", {"POST"}),
    ("DELETE", "/ocsp", {"POST"}),
    ("GET", "/ocsp", {"POST"}),
    ("PUT", "/ocsp/abc", {"GET", "HEAD"}),
    ("DELETE", "/ocsp/abc", {"GET", "HEAD"}),
    ("POST", "/ocsp/abc", {"GET", "HEAD"}),
])
def test_ocsp_fail_method_not_allowed(installation: Installation, app: str, method: str,
                                      path: str, methods: set[str]) -> None:
    answer = APPS[app](installation).request(method, path)
    assert_problem(answer, 405)
    assert allowed(answer) == methods


@pytest.mark.parametrize("app", APPS)
def test_ocsp_ok_allowed_methods_still_answer(installation: Installation, app: str) -> None:
    client = APPS[app](installation)
    for answer in (client.post("/ocsp", content=b"junk"), client.get("/ocsp/abc")):
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/ocsp-response"


# -- HEAD wherever GET ------------------------------------------------------------------


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("path", ["/healthz", "/ca/chain.pem", "/ocsp/abc", "/crl/nosuch.crl"])
def test_head_ok_like_get_without_body(installation: Installation, app: str,
                                       path: str) -> None:
    client = APPS[app](installation)
    got, head = client.get(path), client.head(path)
    assert got.content, got
    assert head.status_code == got.status_code, head.text
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))


def test_head_ok_api_route_needs_the_same_token(installation: Installation) -> None:
    api = installation.api()
    got, head = api.get("/v1/devices"), api.head("/v1/devices")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    anonymous = TestClient(api.app, raise_server_exceptions=False)
    refused = anonymous.head("/v1/devices")
    assert refused.status_code == 401 and refused.content == b""


@pytest.mark.parametrize("app", APPS)
def test_head_fail_where_no_get(installation: Installation, app: str) -> None:
    answer = APPS[app](installation).head("/ocsp")
    assert answer.status_code == 405 and answer.content == b""
    assert allowed(answer) == {"POST"}


@pytest.mark.parametrize("path", ["/v1/decisions", "/oauth2/token"])
def test_head_fail_post_only_route(installation: Installation, path: str) -> None:
    answer = installation.api().head(path)
    assert answer.status_code == 405 and answer.content == b""
    assert allowed(answer) == {"POST"}


def test_405_ok_allow_lists_head_with_get(installation: Installation) -> None:
    answer = installation.api().delete("/v1/devices")
    assert_problem(answer, 405)
    assert allowed(answer) == {"GET", "HEAD", "POST"}
    answer = installation.public().post("/healthz")
    assert_problem(answer, 405)
    assert allowed(answer) == {"GET", "HEAD"}


def test_openapi_ok_documents_no_head(installation: Installation) -> None:
    document = installation.api().get("/openapi.json").json()
    methods = {m for operations in document["paths"].values() for m in operations}
    assert "head" not in methods
    assert "get" in methods
