"""The policies, enrollment and compliance pages in real Chromium against a live
``iotiam serve``, and two checks on every console page: axe-core finds no serious or
critical accessibility violation, and Tab alone reaches every action.

Every page is also laid out at a tablet's sizes: no sideways page scroll, wide tables
scrolling in their own box, nothing clipped.

The fleet and the finding are the ones tests/integration/test_console_browser.py builds;
this module adds policies, a held enrollment request and a manufacturer.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import BACKENDS
from iotiam.testing import make_csr, make_key, make_manufacturer_ca

from . import axe_core
from .conftest import serve_live
from .console_chromium import TABLET, chromium, page_opener, require_chromium, shoot, sign_in
from .live_server import Server
from .test_console_browser import _fleet, _raise_finding

pytestmark = pytest.mark.integration

TELEMETRY = """\
name: fleet-telemetry
version: 1
statements:
  - sid: telemetry
    effect: allow
    actions: [mqtt:publish]
    topics: ["telemetry/${device.id}"]
"""
GLOBEX_ONLY = """\
name: globex-private
version: 1
statements:
  - sid: reports
    effect: allow
    actions: [mqtt:publish]
    topics: ["globex/reports"]
"""
GUARDRAIL = """\
name: no-firmware-writes
version: 1
guardrail: true
statements:
  - sid: no-writes
    effect: deny
    actions: [mqtt:publish]
    topics: ["firmware/#"]
"""


@dataclass
class World:
    """The live server, what the tests put in it, and the browser."""

    server: Server
    browser: Any
    shots: Path
    acme_token: str
    finding: str
    held: list[str]
    axe: str
    saved: list[Path] = field(default_factory=list)


def _policies(api: httpx.Client) -> None:
    for source, owner in ((TELEMETRY, None), (GLOBEX_ONLY, "globex"), (GUARDRAIL, None)):
        answer = api.put("/v1/policies", params={"owner": owner} if owner else None,
                         content=source, headers={"content-type": "application/yaml"})
        assert answer.status_code == 201, answer.text


def _held(server: Server, device_id: str) -> str:
    """An anonymous first contact for an unknown device: held for an admin."""
    with httpx.Client(base_url=server.api_url, verify=server.tls_context()) as est:
        answer = est.post("/.well-known/est/simpleenroll",
                          content=base64.b64encode(make_csr(device_id, make_key(), pem=False)),
                          headers={"content-type": "application/pkcs10"})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["request"])


@pytest.fixture(scope="module", params=BACKENDS[-1:])
def pages_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Server]:
    """One live server for the module (judging events at once, as the other console
    module's)."""
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"pages-{request.param}"),
                          {"IOTIAM_DETECTION_LEARNING_SECONDS": "0"})


@pytest.fixture(scope="module")
def world(pages_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The fleet, policies, held requests, a manufacturer, a finding, and Chromium."""
    server = pages_server
    require_chromium()
    engine = axe_core.script()
    with server.api() as api:
        acme_token, _, _ = _fleet(server, api)
        finding = _raise_finding(api)
        _policies(api)
        maker = api.post("/v1/manufacturers", json={
            "name": "acme-devices", "org": "acme",
            "certificate": make_manufacturer_ca().pem})
        assert maker.status_code == 201, maker.text
        held = [_held(server, "meter-1"), _held(server, "meter-2")]
        assert api.post("/v1/risk/rebuild").status_code == 200
    with chromium() as browser:
        world = World(server, browser, tmp_path_factory.mktemp("console-pages-screenshots"),
                      acme_token, finding, held, engine)
        try:
            yield world
        finally:
            print("\nconsole screenshots:\n" + "\n".join(map(str, world.saved)))


@pytest.fixture
def open_page(world: World, record_property: Callable[[str, object], None]
              ) -> Iterator[Callable[..., Any]]:
    """A page in a fresh browser context (``console_chromium.page_opener``)."""
    yield from page_opener(world, record_property)


def go(world: World, page: Any, path: str) -> None:
    """Load a console page and wait for its heading."""
    answer = page.goto(f"{world.server.api_url}{path}")
    assert answer is not None and answer.status == 200, (path, answer and answer.status)
    page.wait_for_selector("h1")


# -- policies --------------------------------------------------------------------------


def test_ok_policies_filter_attach_and_simulate(world: World,
                                                open_page: Callable[[], Any]) -> None:
    page = open_page()
    sign_in(world, page)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Policies").click()
    page.wait_for_selector("h1:text-is('Policies')")
    shoot(world, page, "policies")
    page.get_by_label("Kind").select_option("guardrail")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/policies?*kind=guardrail*")
    assert page.locator("p.total").inner_text() == "1 policy matches."
    assert page.locator("tbody a").all_inner_texts() == ["no-firmware-writes"]

    page.goto(f"{world.server.api_url}/console/policies/fleet-telemetry")
    page.get_by_label("Target kind").select_option("device")
    page.get_by_label("Target id").fill("acme-cam")
    page.get_by_role("button", name="Attach").click()
    page.wait_for_selector("p.notice:text('Policy attached.')")
    shoot(world, page, "policy")
    with world.server.api() as api:
        shown = api.get("/v1/policies/fleet-telemetry").json()
    assert [(a["target"]["kind"], a["target"]["id"]) for a in shown["attachments"]] \
        == [("device", "acme-cam")]

    page.goto(f"{world.server.api_url}/console/policies/simulate")
    page.get_by_label("Device").fill("acme-cam")
    page.get_by_label("Topic or resource").fill("telemetry/acme-cam")
    page.get_by_role("button", name="Ask").click()
    page.wait_for_selector("#decision")
    assert page.locator("#decision").inner_text() == "permit"
    assert "fleet-telemetry" in page.locator("#explanation").inner_text()
    shoot(world, page, "policy-simulator")
    page.goto(f"{world.server.api_url}/console/policies/who-can?action=mqtt:publish"
              "&topic=telemetry/acme-cam")
    assert page.locator("tbody a").all_inner_texts() == ["acme-cam"]
    shoot(world, page, "policy-who-can")


def test_fail_a_business_unit_admin_sees_only_its_policies(
        world: World, open_page: Callable[..., Any]) -> None:
    page = open_page(expect_404=True)
    sign_in(world, page, world.acme_token)
    page.goto(f"{world.server.api_url}/console/policies")
    names = page.locator("tbody a").all_inner_texts()
    assert "fleet-telemetry" in names and "globex-private" not in names
    answer = page.goto(f"{world.server.api_url}/console/policies/globex-private")
    assert answer is not None and answer.status == 404


# -- enrollment ------------------------------------------------------------------------


def test_ok_enrollment_filter_approve_and_claim(world: World,
                                                open_page: Callable[[], Any]) -> None:
    page = open_page()
    sign_in(world, page)
    page.goto(f"{world.server.api_url}/console/enrollment")
    shoot(world, page, "enrollment")
    assert "acme-devices" in page.locator("#manufacturers ~ .table-scroll table").first.inner_text()
    page.get_by_label("Device contains").fill("meter-1")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/enrollment?*device=meter-1*")
    assert page.locator("p.total").inner_text() == "1 request matches."
    page.get_by_role("link", name=world.held[0]).click()
    page.wait_for_selector("h1:text('Enrollment request')")
    page.get_by_label("Type (a new device)").select_option("sensor")
    page.get_by_label("Org unit (a new device)").fill("acme")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_selector("p.notice:text('Enrollment approved')")
    assert page.locator("#request-status").inner_text() == "approved"
    shoot(world, page, "enrollment-request")
    with world.server.api() as api:
        assert api.get("/v1/devices/meter-1").json()["org"] == "acme"
        assert api.post("/v1/devices", json={"id": "new-cam", "type": "sensor",
                                             "org": "acme"}).status_code == 201
    page.goto(f"{world.server.api_url}/console/enrollment#claims")
    page.get_by_label("Device", exact=True).fill("new-cam")
    page.get_by_role("button", name="Issue a claim").click()
    page.wait_for_selector("h1:text('Claim issued')")
    assert len(page.locator("#claim-token").inner_text()) >= 20
    shoot(world, page, "claim")


def test_fail_a_business_unit_admin_sees_no_unscoped_request(
        world: World, open_page: Callable[..., Any]) -> None:
    page = open_page(expect_404=True)
    sign_in(world, page, world.acme_token)
    page.goto(f"{world.server.api_url}/console/enrollment?status=all")
    assert world.held[1] not in page.locator("main").inner_text()
    answer = page.goto(f"{world.server.api_url}/console/enrollment/requests/{world.held[1]}")
    assert answer is not None and answer.status == 404


# -- compliance ------------------------------------------------------------------------


def test_ok_compliance_filter_and_export(world: World, open_page: Callable[[], Any]) -> None:
    page = open_page()
    sign_in(world, page)
    page.goto(f"{world.server.api_url}/console/compliance")
    shoot(world, page, "compliance")
    page.get_by_label("Framework").select_option("NIST IR 8259A")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/compliance?*framework=NIST*")
    frameworks = {t.strip() for t in page.locator("tbody tr td:first-child").all_inner_texts()}
    assert frameworks == {"NIST IR 8259A"}
    with page.expect_download() as download:
        page.get_by_role("link", name="Export for an auditor (one HTML file)").click()
    saved = world.shots / "compliance-report.html"
    download.value.save_as(saved)
    world.saved.append(saved)
    html = saved.read_text()
    assert "5.1-1" in html and "Part I (2)(d)" in html and "<style>" in html
    assert not re.search(r"<link|<script|<img|src=|href=|@import|url\(", html)
    # the file opened on its own shows the report, loading nothing
    local = open_page()
    local.goto(saved.as_uri())
    assert "Compliance report" in local.locator("h1").inner_text()
    # printed to PDF as an auditor's browser would: every requirement is a heading of
    # the PDF's outline, each framework starts a new page
    pdf = local.pdf(format="A4", outline=True, tagged=True, print_background=True)
    printed = world.shots / "compliance-report.pdf"
    printed.write_bytes(pdf)
    world.saved.append(printed)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    with world.server.api() as api:
        report = api.get("/v1/compliance/report").json()
    headings = {f"{r['clause']} · {r['title']}" for r in report["requirements"]}
    frameworks = {r["framework"] for r in report["requirements"]}
    assert len(headings) == len(report["requirements"]) >= 15
    # Chromium drops the space where a long heading wraps: compared without spaces
    assert {squeezed(t) for t in outline_titles(pdf)} >= {
        squeezed(t) for t in headings | frameworks}
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) > len(frameworks)


def squeezed(text: str) -> str:
    """``text`` without whitespace."""
    return "".join(text.split())


def outline_titles(pdf: bytes) -> list[str]:
    """The ``/Title`` strings of a PDF's dictionaries (its outline's entries and the
    document's title): literal strings and UTF-16 hex strings, as Chromium writes them."""
    found = []
    for raw in re.findall(rb"/Title\s*(<[0-9A-Fa-f\s]*>|\((?:\\.|[^\\)])*\))", pdf):
        if raw.startswith(b"<"):
            data = bytes.fromhex(raw[1:-1].decode())
            found.append(data[2:].decode("utf-16-be") if data.startswith(b"\xfe\xff")
                         else data.decode("latin-1"))
        else:
            found.append(re.sub(rb"\\(.)", rb"\1", raw[1:-1]).decode("latin-1"))
    return found


def test_fail_a_business_unit_admins_report_is_its_subtree(
        world: World, open_page: Callable[[], Any]) -> None:
    page = open_page()
    sign_in(world, page, world.acme_token)
    with world.server.api(world.acme_token) as api:
        mine = api.get("/v1/compliance/report").json()
    with world.server.api() as api:
        everyone = api.get("/v1/compliance/report").json()
    assert mine["org_path"] == "/root/acme/" and mine["devices"] < everyone["devices"]
    page.goto(f"{world.server.api_url}/console/compliance")
    assert f"/root/acme/ · {mine['devices']} devices" in page.locator("main").inner_text()


# -- every page: axe-core and the keyboard -----------------------------------------------

#: every console page, with a query where the page has more to show with one
PAGES = ("/console/", "/console/devices", "/console/devices/acme-cam", "/console/risk",
         "/console/assets", "/console/findings", "/console/findings/{finding}",
         "/console/audit", "/console/policies", "/console/policies/fleet-telemetry",
         "/console/policies/simulate?device=acme-cam&action=mqtt:publish"
         "&topic=telemetry/acme-cam",
         "/console/policies/who-can?action=mqtt:publish&topic=telemetry/acme-cam",
         "/console/enrollment?status=all", "/console/enrollment/requests/{held}",
         "/console/enrollment/manufacturers/acme-devices", "/console/compliance",
         "/console/detection")

#: what a person can act on (a radio group is one Tab stop: its checked button)
_ACTIONS = """() => {
  const all = [...document.querySelectorAll(
      'a[href], button, input:not([type=hidden]), select, textarea')]
    .filter(e => !e.disabled && e.getClientRects().length > 0)
    .filter(e => e.type !== 'radio' || e.checked);
  all.forEach((e, i) => e.setAttribute('data-walk', String(i)));
  return all.length;
}"""


def not_reached_by_tab(page: Any) -> list[str]:
    """The actions of the page that Tab from the top never focuses."""
    count = page.evaluate(_ACTIONS)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    reached: set[int] = set()
    # a date-time field takes a Tab stop per part (day, month, year, hours, minutes)
    for _ in range(count * 2 + 12):
        page.keyboard.press("Tab")
        walked = page.evaluate("document.activeElement?.getAttribute('data-walk') ?? null")
        if walked is not None:
            reached.add(int(walked))
    missed: list[str] = page.evaluate("""(reached) => [...document.querySelectorAll(
        '[data-walk]')].filter(e => !reached.includes(Number(e.getAttribute('data-walk'))))
        .map(e => e.outerHTML.slice(0, 160))""", sorted(reached))
    return missed


def test_ok_every_page_passes_axe_and_the_keyboard_reaches_every_action(
        world: World, open_page: Callable[[], Any]) -> None:
    page = open_page()
    page.goto(f"{world.server.api_url}/console/sign-in")
    problems = {"/console/sign-in": axe_core.violations(page, world.axe)}
    sign_in(world, page)
    missed: dict[str, list[str]] = {}
    for template in PAGES:
        path = template.format(finding=world.finding, held=world.held[1])
        go(world, page, path)
        if path == "/console/":  # enrollments and revocations over time: two charts
            assert page.locator("figure.daily svg[role=img]").count() == 2
        problems[path] = axe_core.violations(page, world.axe)
        missed[path] = not_reached_by_tab(page)
    assert not any(problems.values()), {p: v for p, v in problems.items() if v}
    assert not any(missed.values()), {p: m for p, m in missed.items() if m}


# -- every page on a tablet -------------------------------------------------------------

#: what is wrong with the layout: the page wider than the screen, a console link off the
#: screen, a table that widens the page instead of scrolling in its own box, clipped text;
#: and how many tables scroll in their box
_LAYOUT = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  const scrollWidth = document.documentElement.scrollWidth;
  if (scrollWidth > width + 1) problems.push(`the page is ${scrollWidth}px wide in ${width}px`);
  const links = [...document.querySelectorAll('nav[aria-label=Console] a')];
  if (links.length === 0) problems.push('no console navigation');
  for (const a of links) {
    const r = a.getBoundingClientRect();
    if (r.width === 0 || r.left < 0 || r.right > width + 1)
      problems.push(`console link ${a.textContent} at ${r.left}..${r.right}`);
  }
  const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
  let scrolling = 0;
  for (const table of document.querySelectorAll('main table')) {
    let box = table.parentElement;
    while (box !== document.body && !scrolls(box)) box = box.parentElement;
    if (box === document.body) box = table;
    else if (box.scrollWidth > box.clientWidth + 1) scrolling += 1;
    const r = box.getBoundingClientRect();
    if (r.right > width + 1) problems.push(`a table's box ends at ${r.right}px`);
  }
  for (const e of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(e);
    const hides = [style.overflowX, style.overflowY].some(o => o === 'hidden' || o === 'clip')
      || style.textOverflow === 'ellipsis';
    if (hides && (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1))
      problems.push(`clipped: ${e.outerHTML.slice(0, 120)}`);
  }
  return {problems, scrolling};
}"""


@pytest.mark.parametrize("orientation", sorted(TABLET))
def test_ok_every_page_fits_a_tablet(world: World, open_page: Callable[..., Any],
                                     orientation: str) -> None:
    page = open_page(viewport=TABLET[orientation])
    sign_in(world, page)
    problems: dict[str, list[str]] = {}
    scrolling = 0
    for template in PAGES:
        path = template.format(finding=world.finding, held=world.held[1])
        go(world, page, path)
        layout = page.evaluate(_LAYOUT)
        # axe too: a table that scrolls must scroll from the keyboard
        problems[path] = layout["problems"] + axe_core.violations(page, world.axe)
        scrolling += layout["scrolling"]
        slug = re.sub(r"[^a-z0-9]+", "-", path.split("?")[0].removeprefix("/console")).strip("-")
        shoot(world, page, f"tablet-{orientation}-{slug or 'overview'}")
    assert not any(problems.values()), {p: v for p, v in problems.items() if v}
    if orientation == "portrait":
        # the audit trail and the device page's tables are wider than a portrait tablet
        assert scrolling > 0
