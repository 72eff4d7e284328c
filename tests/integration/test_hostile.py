"""Hostile clients against the live API (issue 12, "How it is checked"): what reaches the
HTTP parser before any route, and schemathesis' generated requests."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import httpx
import pytest

from .live_server import Server

pytestmark = pytest.mark.integration

PROBLEM_JSON = "application/problem+json"


def raw_request(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is over TLS; the status, headers and body of the answer."""
    context = server.tls_context()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(request)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            headers = dict(line.decode().lower().split(": ", 1)
                           for line in head.split(b"\r\n")[1:] if b": " in line)
            if "content-length" in headers and len(body) >= int(headers["content-length"]):
                break
    status = int(data.split(b" ", 2)[1])
    return status, headers, body


@pytest.mark.parametrize("length", [100_000, 1_000_000])
def test_long_url_fail_problem_json(server: Server, length: int) -> None:
    path = "/v1/devices/" + "a" * length
    try:
        status, headers, body = raw_request(
            server, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    except (ConnectionError, ssl.SSLError) as e:
        pytest.fail(f"the server dropped the connection: {e}")
    assert status == 414, body
    assert headers["content-type"] == PROBLEM_JSON, (headers, body)
    assert b"urn:iotiam:problem:" in body


def test_bad_request_line_fail_problem_json(server: Server) -> None:
    status, headers, body = raw_request(server, b"GET /\x01 HTTP/1.1\r\n\r\n")
    assert status == 400
    assert headers["content-type"] == PROBLEM_JSON, (headers, body)


def test_405_ok_allow_header_live(server: Server) -> None:
    with server.api() as api:
        answer = api.delete("/v1/devices")
    assert answer.status_code == 405
    assert answer.headers["content-type"] == PROBLEM_JSON
    # HEAD wherever GET (RFC 9110 §9.3.2), answered by api/head_requests.py
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
    with server.api() as api:
        assert api.get("/v1/whoami").status_code == 200  # the connection pool still works
    assert isinstance(answer, httpx.Response)


def test_head_ok_live(server: Server) -> None:
    """HEAD through the real server (RFC 9110 §9.3.2): GET's status and headers, no body,
    and the connection stays usable."""
    with server.api() as api:
        got, head = api.get("/healthz"), api.head("/healthz")
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert api.get("/v1/whoami").status_code == 200


# -- schemathesis: generated requests against the documented schema ---------------------

#: examples per operation and mode: ~110 operations, most in two modes, near a minute here
EXAMPLES_PER_OPERATION = 3
#: the discovery and risk endpoints take hostile files and filters: more examples each
DISCOVERY_AND_RISK = ("/v1/discovery/", "/v1/risk/")
EXAMPLES_DISCOVERY_AND_RISK = 40


def test_schemathesis_ok_no_5xx_and_as_documented(server: Server) -> None:
    """Every operation, fed valid and invalid requests generated from the OpenAPI document
    (fixed seed), answers without a 5xx and as the document says (status codes, media
    types, response schemas)."""
    document, calls = generated_requests(server, ("/",), EXAMPLES_PER_OPERATION)
    assert len(set(calls)) >= len(document["paths"]), "operations were left out"


def test_schemathesis_ok_discovery_and_risk(server: Server) -> None:
    """The same, with more examples, for ``/v1/discovery`` and ``/v1/risk``."""
    document, calls = generated_requests(server, DISCOVERY_AND_RISK,
                                         EXAMPLES_DISCOVERY_AND_RISK)
    wanted = [p for p in document["paths"] if p.startswith(DISCOVERY_AND_RISK)]
    assert len(wanted) >= 10 and len(set(calls)) >= len(wanted), "operations were left out"


def generated_requests(server: Server, prefixes: tuple[str, ...],
                       examples: int) -> tuple[dict[str, Any], list[str]]:
    """Run schemathesis' generated requests against the operations whose path starts
    with one of ``prefixes``; fail with every operation that broke a check. The OpenAPI
    document and the operations called."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.transport.requests import ManagedCookiesSession

    checks = [schemathesis.checks.not_a_server_error, status_code_conformance,
              content_type_conformance, response_schema_conformance]
    for media in ("application/pkcs10", "application/ocsp-request"):
        schemathesis.serializer.alias(media, "application/octet-stream")
    schemathesis.serializer.alias("application/x-ndjson", "text/plain")
    with server.api() as api:
        document = api.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {server.token}"}
    # one session for every generated request: its connections are kept alive, so that a
    # request costs no TLS handshake, and its cookies are dropped after each request
    session = ManagedCookiesSession()
    failures: list[str] = []
    calls: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(prefixes):
            continue
        documented = document["paths"][operation.path][operation.method.lower()]
        modes = [schemathesis.GenerationMode.POSITIVE]
        # schemathesis cannot make a string path parameter invalid: a query or a body it can
        if documented.get("requestBody") or any(
                p["in"] != "path" for p in documented.get("parameters", [])):
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, derandomize=True, deadline=None,
                      database=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                calls.append(case.operation.label)
                case.call_and_validate(base_url=server.api_url, session=session,
                                       headers=headers,
                                       verify=str(server.tls_ca_file), timeout=30,
                                       checks=checks)

            try:
                call()
            except Unsatisfiable:
                pass  # nothing in this operation can be made invalid
            # schemathesis reports a FailureGroup; every operation is tried, all reported
            except (Exception, BaseExceptionGroup) as e:
                parts = getattr(e, "exceptions", None) or [e]
                failures.append(f"{operation.label} ({mode}): "
                                + "; ".join(str(p) for p in parts)[:2000])
    session.close()
    assert failures == [], "\n\n".join(failures)
    return document, calls
