"""Console single sign-on through a real OpenID Connect provider, in real Chromium.

The provider is panva/oidc-provider on Node (``oidc_provider.py``), with people in three
groups; the server maps ``iot-admins`` to admin of ``/root/`` and ``plant-a`` to operator
of ``/root/plant-a/``, and nothing else. A person signs in as one would: the console's
"Sign in with Test IdP" button, the provider's login form, back on the overview.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import BACKENDS
from iotiam.sso.models import CALLBACK_PATH
from iotiam.testing import free_port

from . import oidc_provider
from .conftest import serve_live
from .console_chromium import VIEWPORT, chromium, heading
from .live_server import Server
from .oidc_provider import ALICE, BOB, CAROL, RunningProvider

pytestmark = pytest.mark.integration

ROLE_MAP = {"iot-admins": {"role": "admin", "org": "/root/"},
            "plant-a": {"role": "operator", "org": "/root/plant-a/"}}


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, RunningProvider]]:
    """A live server trusting a live provider, with a device in plant-a and in plant-b."""
    base = tmp_path_factory.mktemp("console-sso")
    provider_port, secret = free_port(), secrets.token_urlsafe(24)
    secret_file = base / "oidc-client-secret"
    secret_file.write_text(secret + "\n")
    env = {"IOTIAM_OIDC_ISSUER": f"http://127.0.0.1:{provider_port}",
           "IOTIAM_OIDC_CLIENT_ID": oidc_provider.CLIENT_ID,
           "IOTIAM_OIDC_CLIENT_SECRET_FILE": str(secret_file),
           "IOTIAM_OIDC_NAME": "Test IdP", "IOTIAM_OIDC_SCOPES": "openid email groups",
           "IOTIAM_OIDC_ROLE_MAP": json.dumps(ROLE_MAP)}
    for server in serve_live(BACKENDS[-1], base, env):
        provider = oidc_provider.start(provider_port, server.api_url + CALLBACK_PATH, secret,
                                       base / "provider.log")
        try:
            with server.api() as api:
                for unit in ("plant-a", "plant-b"):
                    made = api.post("/v1/org-units", json={"id": unit, "kind": "tenant",
                                                           "parent": "root"})
                    assert made.status_code == 201, made.text
                    made = api.post("/v1/devices", json={"id": f"{unit}-cam", "type": "sensor",
                                                         "org": unit, "site": "s1"})
                    assert made.status_code == 201, made.text
            yield server, provider
        finally:
            provider.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium for the module (``console_chromium.chromium``)."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Screenshots of what the browser showed, listed at the end of the module."""
    saved: list[Path] = []
    yield saved
    print("\nsingle sign-on screenshots:\n" + "\n".join(map(str, saved)))


@pytest.fixture
def page(browser: Any, shots: list[Path], tmp_path: Path, request: pytest.FixtureRequest,
         record_property: Callable[[str, object], None]) -> Iterator[Any]:
    """A fresh browser context (its own cookies); script errors on our pages fail the test.
    Each page the test waited on is saved as a screenshot (``page.shoot(name)``)."""
    context = browser.new_context(ignore_https_errors=True, viewport=VIEWPORT)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))

    def shoot(name: str) -> None:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    page.shoot = shoot
    yield page
    context.close()
    record_property("screenshots", [str(p) for p in shots])
    assert not problems, problems


def sign_in_through_provider(server: Server, page: Any, person: tuple[str, ...],
                             start: str = "/console/") -> None:
    """From a console page to the provider's login form and back, as a person would."""
    page.goto(server.api_url + start)
    assert "/console/sign-in" in page.url
    page.shoot(f"{person[0]}-sign-in")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_selector("h1:text('Test IdP')")  # the provider's own page
    page.get_by_label("Username").fill(person[0])
    page.get_by_label("Password").fill(person[1])
    page.shoot(f"{person[0]}-provider-login")
    page.get_by_role("button", name="Log in").click()


def newest_record(server: Server, tag: str, sub: str) -> dict[str, Any]:
    """The newest audit record with ``tag`` about the person ``sub``."""
    with server.api() as api:
        items: list[dict[str, Any]] = api.get("/v1/audit/records",
                                              params={"limit": 5000}).json()["items"]
    found = [r for r in items if r["tag"] == tag and r["details"].get("sub") == sub]
    assert found, f"no {tag} record for {sub}"
    return found[-1]


def test_ok_plant_a_operator_signs_in_and_sees_only_plant_a(
        sso: tuple[Server, RunningProvider], page: Any) -> None:
    server, _ = sso
    sign_in_through_provider(server, page, ALICE, "/console/devices")
    page.wait_for_selector("h1:text-is('Inventory')")
    page.shoot("alice-inventory")
    assert "oidc:alice@plant-a.example · operator · /root/plant-a/" in page.inner_text("header")
    assert page.locator("tbody a").all_inner_texts() == ["plant-a-cam"]
    # G9: another tenant's device answers as a missing one
    answer = page.goto(f"{server.api_url}/console/devices/plant-b-cam")
    assert answer is not None and answer.status == 404 and heading(page) == "Not found"
    page.shoot("alice-other-tenant-not-found")
    page.goto(f"{server.api_url}/console/devices/plant-a-cam")
    assert heading(page) == "Device plant-a-cam"
    opened = newest_record(server, "admin:console-session:opened", "alice")
    assert opened["actor"] == "oidc:alice@plant-a.example"
    assert opened["details"].items() >= {
        "via": "oidc", "email": "alice@plant-a.example", "group": "plant-a",
        "role": "operator"}.items()
    cookie = next(c for c in page.context.cookies() if c["name"] == "__Host-iotiam-console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    # the sign-in's state/nonce/verifier cookie is gone once used
    assert all(c["name"] != "__Host-iotiam-oidc" for c in page.context.cookies())


def test_ok_admin_group_sees_every_tenant_and_signs_out(
        sso: tuple[Server, RunningProvider], page: Any) -> None:
    server, _ = sso
    sign_in_through_provider(server, page, BOB)
    page.wait_for_selector("h1:text('Overview')")
    page.goto(f"{server.api_url}/console/devices")
    assert sorted(page.locator("tbody a").all_inner_texts()) == ["plant-a-cam", "plant-b-cam"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("h1:text('Sign in')")
    assert "Signed out" in page.inner_text("main")
    # the session is over: the console sends the browser to sign in again
    page.goto(f"{server.api_url}/console/devices")
    assert "/console/sign-in" in page.url
    closed = newest_record(server, "admin:console-session:closed", "bob")
    assert closed["actor"] == "oidc:bob@example.com"
    assert closed["details"]["email"] == "bob@example.com"


def test_fail_a_person_in_no_mapped_group_is_refused(
        sso: tuple[Server, RunningProvider], page: Any) -> None:
    server, _ = sso
    responses: list[int] = []
    page.on("response", lambda r: responses.append(r.status)
            if CALLBACK_PATH in r.url else None)
    sign_in_through_provider(server, page, CAROL)
    page.wait_for_selector("h1:text('Sign-in refused')")
    page.shoot("carol-refused")
    assert responses == [403]
    assert "carol@example.com is in no group" in page.inner_text("main")
    assert all(c["name"] != "__Host-iotiam-console" for c in page.context.cookies())
    refused = newest_record(server, "admin:console-session:refused", "carol")
    assert refused["outcome"] == "denied" and refused["actor"] == "oidc:carol@example.com"
    assert refused["details"]["email"] == "carol@example.com"


def test_fail_a_forged_provider_answer_is_refused(
        sso: tuple[Server, RunningProvider], page: Any) -> None:
    """A callback this browser did not start (login CSRF) opens no session."""
    server, _ = sso
    answer = page.goto(f"{server.api_url}{CALLBACK_PATH}?code=stolen&state=whatever")
    assert answer is not None and answer.status == 401
    assert "no sign-in is under way" in page.inner_text("main")
    assert all(c["name"] != "__Host-iotiam-console" for c in page.context.cookies())


def test_ok_token_endpoint_insists_on_pkce(sso: tuple[Server, RunningProvider]) -> None:
    """The provider itself refuses a code exchange without a verifier (defence in depth:
    the console always sends one)."""
    _, provider = sso
    answer = httpx.post(f"{provider.issuer}/token", data={
        "grant_type": "authorization_code", "code": "x", "redirect_uri": "https://x/"},
        auth=(oidc_provider.CLIENT_ID, provider.client_secret))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"

