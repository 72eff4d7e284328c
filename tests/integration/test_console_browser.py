"""The web console in real Chromium against a live ``iotiam serve``.

One server and one browser for the module; each test opens its own browser context (its
own cookies). Debian's ``chromium`` is driven by Playwright (``executable_path``; never
``playwright install``). Every page visited is saved as a screenshot under the module's
temporary directory; the paths are printed and recorded as test properties.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import BACKENDS
from iotiam.testing import require_binary
from iotiam.testing.builders import make_csr

from .conftest import serve_live
from .console_chromium import chromium, heading, page_opener, require_chromium, shoot, sign_in
from .live_server import Server
from .relying_party import ocsp, ocsp_status

pytestmark = pytest.mark.integration

FINDING_SECONDS = 15.0


@dataclass
class World:
    """The live server, what the tests put in it, and the browser."""

    server: Server
    browser: Any
    shots: Path
    acme_token: str
    leaf: Path
    serial: str
    finding: str
    saved: list[Path] = field(default_factory=list)


def _fleet(server: Server, api: httpx.Client) -> tuple[str, Path, str]:
    """Two tenants, a device in each, a certificate, unmanaged assets; the acme admin."""
    for tenant in ("acme", "globex"):
        answer = api.post("/v1/org-units", json={"id": tenant, "kind": "tenant",
                                                 "parent": "root"})
        assert answer.status_code == 201, answer.text
    for device, org in (("acme-cam", "acme"), ("globex-cam", "globex")):
        answer = api.post("/v1/devices", json={"id": device, "type": "sensor", "org": org,
                                               "site": "plant-1"})
        assert answer.status_code == 201, answer.text
    issued = api.post("/v1/certificates", json={"device": "acme-cam",
                                                "csr": make_csr("acme-cam").decode()})
    assert issued.status_code == 201, issued.text
    leaf = server.work_dir / "acme-cam.pem"
    leaf.write_text(issued.json()["pem"])
    sightings = b"".join(json.dumps({"mac": f"02:00:00:00:00:{n:02x}",
                                     "ip": f"10.9.0.{n}"}).encode() + b"\n" for n in (1, 2, 3))
    imported = api.post("/v1/discovery/imports", params={"source": "jsonl", "site": "plant-1"},
                        content=sightings,
                        headers={"content-type": "application/octet-stream"})
    assert imported.status_code == 200, imported.text
    token = api.post("/v1/tokens", json={"name": "acme-lead", "role": "admin", "org": "acme"})
    assert token.status_code == 201, token.text
    return token.json()["token"], leaf, issued.json()["serial"]


def _raise_finding(api: httpx.Client) -> str:
    """A burst of refused connections from one device: the auth-failure detector fires."""
    # learn mode stores nothing; monitor raises findings and takes no action
    mode = api.put("/v1/detection/modes/sensor", json={"mode": "monitor"})
    assert mode.status_code == 200, mode.text
    now = time.time()
    events = b"".join(json.dumps({
        "kind": "auth_failure", "ts": now - 30 + n, "device_id": "acme-cam",
        "source_ip": "10.9.9.9"}).encode() + b"\n" for n in range(10))
    sent = api.post("/v1/events", content=events,
                    headers={"content-type": "application/x-ndjson"})
    assert sent.status_code == 200, sent.text
    deadline = time.monotonic() + FINDING_SECONDS
    while time.monotonic() < deadline:
        items = api.get("/v1/findings", params={"device": "acme-cam"}).json()["items"]
        if items:
            return str(items[0]["id"])
        time.sleep(0.2)
    raise AssertionError(f"no finding was raised for acme-cam: {sent.text}")


@pytest.fixture(scope="module", params=BACKENDS[-1:])
def console_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Server]:
    """One live server for the module, judging events from the first one (no hour of
    learning), so that a burst of events raises a finding. One backend (PostgreSQL when
    the suite has it): the pages call the services, whose unit tests (tests/unit/web)
    run on both."""
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"console-{request.param}"),
                          {"IOTIAM_DETECTION_LEARNING_SECONDS": "0"})


@pytest.fixture(scope="module")
def world(console_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The fleet, a rebuilt risk register, a finding, and Chromium."""
    server = console_server
    require_binary("openssl")
    require_chromium()
    with server.api() as api:
        acme_token, leaf, serial = _fleet(server, api)
        finding = _raise_finding(api)
        assert api.post("/v1/risk/rebuild").status_code == 200
    with chromium() as browser:
        shots = tmp_path_factory.mktemp("console-screenshots")
        world = World(server, browser, shots, acme_token, leaf, serial, finding)
        try:
            yield world
        finally:
            print("\nconsole screenshots:\n" + "\n".join(map(str, world.saved)))


@pytest.fixture
def open_page(world: World, record_property: Callable[[str, object], None]
              ) -> Iterator[Callable[..., Any]]:
    """A page in a fresh browser context (``console_chromium.page_opener``)."""
    yield from page_opener(world, record_property)


def test_ok_walk_every_page(world: World, open_page: Callable[[], Any]) -> None:
    page = open_page()
    page.goto(f"{world.server.api_url}/console/sign-in")
    shoot(world, page, "sign-in")
    sign_in(world, page)
    shoot(world, page, "overview")
    for link, title, name in (("Inventory", "Inventory", "inventory"),
                              ("Risk register", "Risk register", "risk-register"),
                              ("Discovered assets", "Discovered assets", "assets"),
                              ("Findings", "Findings", "findings"),
                              ("Audit", "Audit", "audit")):
        page.get_by_role("navigation", name="Console").get_by_role("link", name=link).click()
        page.wait_for_selector(f"h1:text-is('{title}')")
        assert page.locator("a[aria-current='page']").inner_text() == link
        shoot(world, page, name)
    page.goto(f"{world.server.api_url}/console/devices/acme-cam")
    assert heading(page) == "Device acme-cam"
    shoot(world, page, "device")
    page.goto(f"{world.server.api_url}/console/findings/{world.finding}")
    assert "Finding" in heading(page)
    shoot(world, page, "finding")
    page.goto(f"{world.server.api_url}/console/risk")
    page.locator("table a").first.click()
    page.wait_for_selector("h1:text-matches('^Risk: ')")
    shoot(world, page, "risk-entry")
    page.goto(f"{world.server.api_url}/console/assets")
    page.locator("table a").first.click()
    page.wait_for_selector("h1:text-matches('^Asset ')")
    shoot(world, page, "asset")
    page.goto(f"{world.server.api_url}/console/audit?verify=yes")
    assert "The chain verifies" in page.locator(".chain").inner_text()
    # nothing came from another origin: every request stayed on the server
    origins = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(world.server.api_url) for u in origins), origins


def test_ok_revoke_from_the_device_page_and_ocsp_says_revoked(
        world: World, open_page: Callable[[], Any], openssl: str) -> None:
    assert ocsp_status(ocsp(openssl, world.server, world.leaf), world.leaf) == "good"
    page = open_page()
    sign_in(world, page, world.acme_token)
    page.goto(f"{world.server.api_url}/console/devices/acme-cam")
    row = page.locator("tr", has=page.get_by_role(
        "button", name=f"Revoke certificate {world.serial}"))
    row.get_by_label("Reason").select_option("keyCompromise")
    row.get_by_role("button", name=f"Revoke certificate {world.serial}").click()
    page.wait_for_selector("p.notice:text('Certificate revoked')")
    shoot(world, page, "device-after-revoke")
    assert ocsp_status(ocsp(openssl, world.server, world.leaf), world.leaf) == "revoked"
    with world.server.api() as api:
        records = api.get("/v1/audit/records", params={"limit": 5000}).json()
    revoked = [r for r in records["items"] if r["tag"] == "device:certificate:revoked"]
    assert revoked and revoked[-1]["actor"] == "token:acme-lead"


def test_ok_acknowledge_a_finding(world: World, open_page: Callable[[], Any]) -> None:
    page = open_page()
    sign_in(world, page)
    page.goto(f"{world.server.api_url}/console/findings?state=open")
    page.get_by_role("link", name=world.finding).click()
    page.get_by_label("Note").first.fill("on it")
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_selector("p.notice:text('Finding acknowledged')")
    assert page.locator("#finding-state").inner_text() == "acknowledged"
    shoot(world, page, "finding-acknowledged")
    with world.server.api() as api:
        stored = api.get(f"/v1/findings/{world.finding}").json()
    assert stored["state"] == "acknowledged" and stored["note"] == "on it"


def test_ok_filter_the_risk_register(world: World, open_page: Callable[[], Any]) -> None:
    page = open_page()
    sign_in(world, page)
    page.goto(f"{world.server.api_url}/console/risk")
    page.get_by_label("Factor").select_option("unmanaged")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/risk?*factor=unmanaged*")
    assert page.locator("p.total").inner_text() == "3 entries match."
    rows = page.locator("tbody tr")
    assert rows.count() == 3
    assert all("unmanaged" in rows.nth(i).inner_text() for i in range(3))
    shoot(world, page, "risk-register-filtered")


def test_fail_an_org_admin_cannot_see_another_tenants_device(
        world: World, open_page: Callable[..., Any]) -> None:
    page = open_page(expect_404=True)
    sign_in(world, page, world.acme_token)
    page.goto(f"{world.server.api_url}/console/devices")
    listed = page.locator("tbody a").all_inner_texts()
    assert listed == ["acme-cam"]
    answer = page.goto(f"{world.server.api_url}/console/devices/globex-cam")
    assert answer is not None and answer.status == 404
    assert heading(page) == "Not found"
    shoot(world, page, "other-tenant-not-found")


def test_ok_keyboard_only_sign_in_to_inventory_to_device(
        world: World, open_page: Callable[[], Any]) -> None:
    page = open_page()
    page.goto(f"{world.server.api_url}/console/")
    page.wait_for_selector("h1:text('Sign in')")
    assert page.evaluate("document.activeElement.id") == "token"  # autofocus
    page.keyboard.type(world.server.token)
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:text('Overview')")

    def tab_to(text: str) -> None:
        for _ in range(80):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == text:
                return
        raise AssertionError(f"Tab never reached {text!r}")

    tab_to("Inventory")
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:text-is('Inventory')")
    tab_to("acme-cam")
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:text('Device')")
    assert heading(page) == "Device acme-cam"
    shoot(world, page, "keyboard-device")


def test_fail_a_stolen_sign_in_cannot_be_replayed_cross_site(
        world: World, open_page: Callable[[], Any]) -> None:
    """The session cookie is not readable by script and a form from elsewhere is refused."""
    page = open_page()
    sign_in(world, page)
    assert page.evaluate("document.cookie") == ""  # HttpOnly
    cookie = next(c for c in page.context.cookies() if c["name"] == "__Host-iotiam-console")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    probe = secrets.token_hex(4)
    answer = page.request.post(
        f"{world.server.api_url}/console/devices/acme-cam/quarantine",
        form={"reason": probe, "csrf": "not-the-token"})
    assert answer.status == 403
    with world.server.api() as api:
        device = api.get("/v1/devices/acme-cam").json()
    assert device["state"] != "quarantined"
