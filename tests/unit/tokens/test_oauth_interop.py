"""RFC conformance that third-party OAuth clients rely on, on both token paths.

Certificate binding (RFC 8705), RFC 8414 metadata, RFC 6749 §3.2 / §5.2 wire details,
RFC 6750 §3 challenges, RFC 8707 resources, and what a quarantined device is told.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from iotiam.api.oauth_token_path import OAuthTokenFastPath
from iotiam.tokens.models import CLIENT_ASSERTION_TYPE
from tokens.oauthkit import INTROSPECT, TOKEN, DeviceIdentity, OAuthKit

PATHS = ("fast-path", "route")


def token_client(kit: OAuthKit, path: str) -> TestClient:
    """The whole app (the fast path answers) or the app behind the fast path (the route)."""
    if path == "fast-path":
        return kit.http
    app = kit.http.app
    assert isinstance(app, OAuthTokenFastPath)
    route = TestClient(app.app, raise_server_exceptions=False, client=("127.0.0.1", 50000))
    kit.inst._clients.append(route)
    return route


def post_token(kit: OAuthKit, path: str, data: dict[str, str] | list[tuple[str, str]], *,
               cert: DeviceIdentity | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    """POST the token endpoint through one path."""
    return token_client(kit, path).post(TOKEN, data=data,  # type: ignore[arg-type]
                                        headers={**kit.cert_header(cert), **(headers or {})})


def signed(kit: OAuthKit, device: DeviceIdentity) -> dict[str, str]:
    """client_credentials with a private_key_jwt assertion of ``device``."""
    return {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": kit.assertion(device.device_id, device.key)}


# -- item 6: a presented certificate must be the client's -----------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_fail_private_key_jwt_with_another_devices_certificate(
        kit: OAuthKit, d1: DeviceIdentity, path: str) -> None:
    d2 = kit.device("d2")
    answer = post_token(kit, path, signed(kit, d1), cert=d2)
    kit.assert_oauth_error(answer, "invalid_client", 401, "does not belong to client 'd1'")


@pytest.mark.parametrize("path", PATHS)
def test_ok_private_key_jwt_with_its_own_certificate_is_bound(
        kit: OAuthKit, d1: DeviceIdentity, path: str) -> None:
    answer = post_token(kit, path, signed(kit, d1), cert=d1)
    assert answer.status_code == 200, answer.text
    assert "x5t#S256" in kit.introspect(answer.json()["access_token"])["cnf"]
