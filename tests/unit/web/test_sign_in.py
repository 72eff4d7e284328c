"""Console sign-in and sessions: the cookie's attributes, expiry, revocation, CSRF, CSP."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from api.tenants import Tenants

from iotiam.audit.models import AuditTag
from iotiam.config import Settings
from iotiam.kernel import SYSTEM
from iotiam.local_keys import console_session_key
from iotiam.testing.console import Console

PAGES = ("/console/", "/console/devices", "/console/devices/acme-d1", "/console/risk",
         "/console/assets", "/console/findings", "/console/audit")


def signed_out(tenants: Tenants) -> Console:
    """A browser with no session yet (the root admin's token at hand)."""
    return Console(tenants.installation.services, tenants.installation.admin_token)


def audit_tags(tenants: Tenants) -> list[str]:
    return [r.tag for r in tenants.installation.services.audit.export(SYSTEM, limit=100000)]


def test_ok_sign_in_sets_a_host_only_secure_strict_cookie(tenants: Tenants) -> None:
    console = signed_out(tenants)
    answer = console.sign_in()
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = next(c for c in answer.headers.get_list("set-cookie")
                  if c.startswith("__Host-iotiam-console="))
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    assert tenants.installation.admin_token not in cookie  # only its id, encrypted
    assert AuditTag.CONSOLE_SIGNED_IN in audit_tags(tenants)
    console.close()


@pytest.mark.parametrize("token", ["iotiam_0123456789abcdef_" + "x" * 40, "", "junk"],
                         ids=["fail_unknown", "fail_empty", "fail_malformed"])
def test_fail_a_bad_token_opens_no_session_and_is_audited(tenants: Tenants, token: str
                                                          ) -> None:
    console = signed_out(tenants)
    form = console.http.get("/console/sign-in")
    binding = re.search(r'name="binding" value="([^"]+)"', form.text)
    assert binding is not None
    answer = console.http.post("/console/sign-in", data={"token": token,
                                                         "binding": binding.group(1)})
    assert answer.status_code == 401 and 'role="alert"' in answer.text
    assert "__Host-iotiam-console=" not in answer.headers.get("set-cookie", "")
    assert audit_tags(tenants)[-1] == AuditTag.CONSOLE_SIGN_IN_REFUSED
    assert console.http.get("/console/devices").status_code == 303
    console.close()


def test_fail_sign_in_without_the_forms_binding(tenants: Tenants) -> None:
    """A cross-site page cannot sign a browser in (login CSRF)."""
    console = signed_out(tenants)
    answer = console.http.post("/console/sign-in", data={
        "token": tenants.installation.admin_token, "binding": "forged"})
    assert answer.status_code == 401
    assert console.http.get("/console/devices").status_code == 303
    console.close()


def test_fail_no_session_goes_to_sign_in_and_comes_back(tenants: Tenants) -> None:
    console = signed_out(tenants)
    answer = console.http.get("/console/devices", params={"state": "active"})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(
        "/console/sign-in?next=%2Fconsole%2Fdevices%3Fstate%3Dactive")
    console.close()


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/v1/tokens",
                                    "/console\\@evil"],
                         ids=["fail_other_host", "fail_scheme_relative", "fail_api",
                              "fail_backslash"])
def test_fail_sign_in_never_redirects_out_of_the_console(tenants: Tenants, target: str
                                                         ) -> None:
    console = signed_out(tenants)
    binding = re.search(r'name="binding" value="([^"]+)"',
                        console.http.get("/console/sign-in").text)
    assert binding is not None
    answer = console.http.post("/console/sign-in", data={
        "token": tenants.installation.admin_token, "binding": binding.group(1),
        "next": target})
    assert answer.headers["location"] == "/console/"
    console.close()


def test_fail_forged_cookie_is_no_session(tenants: Tenants, console: Console) -> None:
    value = console.http.cookies.get("__Host-iotiam-console")
    assert value
    console.http.cookies.clear()
    flipped = value[:-6] + ("A" if value[-6] != "A" else "B") + value[-5:]
    for forged in (flipped, "bm90IGEgc2Vzc2lvbg==", "%%%"):
        answer = console.http.get("/console/",
                                  headers={"cookie": f"__Host-iotiam-console={forged}"})
        assert answer.status_code == 303, forged
    assert console.http.get("/console/", headers={
        "cookie": f"__Host-iotiam-console={value}"}).status_code == 200


def test_fail_idle_session_expires(tenants: Tenants, console: Console) -> None:
    clock = tenants.installation.clock
    clock.advance(timedelta(minutes=14))
    assert console.http.get("/console/").status_code == 200  # use slides the idle window
    clock.advance(timedelta(minutes=14))
    assert console.http.get("/console/").status_code == 200
    clock.advance(timedelta(minutes=16))
    answer = console.http.get("/console/")
    assert answer.status_code == 303 and "idle" in answer.headers["location"]


def test_fail_revoking_the_token_ends_its_sessions(
        tenants: Tenants, browsers: Callable[[str | None], Console]) -> None:
    token = tenants.token("acme", "admin")
    console = browsers(token)
    assert console.http.get("/console/devices").status_code == 200
    token_id = token.split("_")[1]
    assert tenants.installation.api().delete(f"/v1/tokens/{token_id}").status_code == 204
    assert console.http.get("/console/devices").status_code == 303


def test_ok_sign_out_is_audited_and_drops_the_cookie(tenants: Tenants, console: Console
                                                     ) -> None:
    answer = console.post("/console/sign-out")
    assert answer.status_code == 303
    assert AuditTag.CONSOLE_SIGNED_OUT in audit_tags(tenants)
    assert console.http.get("/console/").status_code == 303


def test_fail_a_form_without_the_csrf_token_changes_nothing(tenants: Tenants,
                                                            console: Console) -> None:
    serial = tenants.serials["acme-d1"]
    path = f"/console/devices/acme-d1/certificates/{serial}/revoke"
    for csrf in (None, "wrong"):
        answer = (console.post(path, {"reason": "keyCompromise"}, csrf=False) if csrf is None
                  else console.http.post(path, data={"reason": "keyCompromise", "csrf": csrf}))
        assert answer.status_code == 403
    record = tenants.installation.services.pki.get_certificate(SYSTEM, serial)
    assert str(record.status) == "issued"
    assert audit_tags(tenants)[-1] == AuditTag.ACCESS_DENIED


def test_ok_every_page_has_the_strict_headers_and_no_inline_code(console: Console) -> None:
    for path in (*PAGES, "/console/sign-in", "/console/no-such-page"):
        answer = console.page(path)
        assert answer.status_code in (200, 404), (path, answer.text)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        html = answer.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert "<style" not in html and " style=" not in html and " on" + "click" not in html
        assert "http://" not in html and "https://" not in html, path  # nothing off-site


def test_ok_workers_starting_together_share_one_session_key(tmp_path: Path) -> None:
    """``serve --workers N``: each process makes the key if missing; all read one."""
    settings = Settings(data_dir=tmp_path / "data")
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: console_session_key(settings), range(32)))
    assert len(keys) == 1
    assert (settings.secrets_dir / "console-session.key").stat().st_mode & 0o077 == 0
    assert [p.name for p in settings.secrets_dir.iterdir()] == ["console-session.key"]
