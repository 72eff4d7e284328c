"""Console sign-in through an OpenID Connect provider, on the in-process app with the
provider faked in process (``testing.fakes.identity_provider``; the real one runs in
tests/integration/test_console_sso.py). Every refusal is audited and opens no session."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from api.tenants import Tenants
from expect import audit_records
from joserfc.jwk import ECKey

from iotiam.kernel import Role
from iotiam.sso.models import OidcConfig, RoleGrant
from iotiam.sso.service import SingleSignOn
from iotiam.testing.console import Console
from iotiam.testing.fakes.identity_provider import FakeIdentityProvider, Person

ISSUER = "https://idp.example"
CLIENT = "iotiam-console"
ANNA = Person("anna-sub", "anna@acme.example", ("acme-ops", "everyone"))
ROOT = Person("root-sub", "root@example.com", ("iot-admins",))
NOBODY = Person("eve-sub", "eve@example.com", ("everyone",))
ROLE_MAP = (("iot-admins", RoleGrant(Role.ADMIN, "/root/")),
            ("acme-ops", RoleGrant(Role.OPERATOR, "acme")))


@dataclasses.dataclass
class Sso:
    """The fake provider and a way to open consoles that trust it with a role map."""

    provider: FakeIdentityProvider
    tenants: Tenants
    opened: list[Console]

    def console(self, role_map: tuple[tuple[str, RoleGrant], ...] | None = ROLE_MAP
                ) -> Console:
        """A console app trusting the provider with ``role_map`` (None: no SSO at all)."""
        inst = self.tenants.installation
        sso = None
        if role_map is not None:
            config = OidcConfig(issuer=ISSUER, client_id=CLIENT, role_map=role_map,
                                client_secret="s", display_name="Acme IdP")
            sso = SingleSignOn(config, self.provider, inst.services.database,
                               inst.services.audit, inst.clock)
        console = Console(dataclasses.replace(inst.services, sso=sso), inst.admin_token)
        self.opened.append(console)
        return console

    def start(self, console: Console, next_page: str = "/console/devices") -> str:
        """Click "Sign in with ...": where the browser is sent."""
        answer = console.http.get("/console/sign-in/oidc", params={"next": next_page})
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]

    def sign_in(self, console: Console, person: Person) -> httpx.Response:
        """The whole round trip: start, log in at the provider, come back."""
        code, state = self.provider.log_in(self.start(console), person)
        return callback(console, code=code, state=state)


def callback(console: Console, **query: str) -> httpx.Response:
    answer: httpx.Response = console.http.get("/console/oidc/callback", params=query)
    return answer


def has_session(console: Console) -> bool:
    return console.http.cookies.get("__Host-iotiam-console") is not None


def refusals(tenants: Tenants) -> list[dict[str, Any]]:
    return [r for r in audit_records(tenants.installation.api())
            if r["tag"] == "admin:console-session:refused" and r["details"].get("via") == "oidc"]


@pytest.fixture
def sso(tenants: Tenants) -> Iterator[Sso]:
    made = Sso(FakeIdentityProvider(ISSUER, CLIENT, tenants.installation.clock), tenants, [])
    yield made
    for console in made.opened:
        console.close()


def test_ok_sign_in_maps_groups_to_role_and_org(sso: Sso) -> None:
    console = sso.console()
    page = console.http.get("/console/sign-in")
    assert "Sign in with Acme IdP" in page.text
    location = sso.start(console)
    assert location.startswith(f"{ISSUER}/auth?")
    assert "code_challenge_method=S256" in location and "nonce=" in location
    flow = next(c for c in console.http.cookies.jar if c.name == "__Host-iotiam-oidc")
    assert flow.secure and flow.has_nonstandard_attr("HttpOnly")
    code, state = sso.provider.log_in(location, ANNA)
    landed = callback(console, code=code, state=state)
    assert landed.status_code == 200
    # a page of ours moves on (the Strict session cookie is not sent on a cross-site chain)
    assert '<meta http-equiv="refresh" content="0;url=/console/devices">' in landed.text
    assert has_session(console) and console.http.cookies.get("__Host-iotiam-oidc") is None
    devices = console.page("/console/devices")
    assert "acme-d1" in devices.text and "globex-d1" not in devices.text  # G9
    assert console.page("/console/devices/globex-d1").status_code == 404
    assert "oidc:anna@acme.example · operator · /root/acme/" in devices.text
    opened = [r for r in audit_records(sso.tenants.installation.api())
              if r["tag"] == "admin:console-session:opened"][-1]
    assert opened["actor"] == "oidc:anna@acme.example"
    assert opened["details"] == {"via": "oidc", "sub": "anna-sub", "email": "anna@acme.example",
                                 "group": "acme-ops", "role": "operator", "org": "acme"}
    # an operator's action is recorded as the person
    assert console.post("/console/devices/acme-d1/quarantine",
                        {"reason": "sso test"}).status_code == 303
    quarantined = [r for r in audit_records(sso.tenants.installation.api())
                   if r["subject"] == "device:acme-d1"][-1]
    assert quarantined["actor"] == "oidc:anna@acme.example"


def test_ok_first_mapping_entry_wins_and_sign_out_is_audited(sso: Sso) -> None:
    console = sso.console()
    both = Person("both-sub", "both@example.com", ("acme-ops", "iot-admins"))
    assert sso.sign_in(console, both).status_code == 200
    overview = console.page("/console/")
    assert "admin · /root/" in overview.text
    assert console.post("/console/sign-out").status_code == 303
    closed = [r for r in audit_records(sso.tenants.installation.api())
              if r["tag"] == "admin:console-session:closed"][-1]
    assert closed["details"] == {"via": "oidc", "sub": "both-sub", "email": "both@example.com",
                                 "group": "iot-admins"}


def _refused(sso: Sso, console: Console, answer: httpx.Response, status: int,
             says: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert says in answer.text
    assert "Sign-in refused" in answer.text
    assert not has_session(console)
    assert console.http.get("/console/").status_code == 303  # still sent to sign in
    return refusals(sso.tenants)[-1]


@pytest.mark.parametrize(("bend", "says"), [
    ({"aud": "another-client"}, "not addressed to this console"),
    ({"aud": [CLIENT, "another-client"]}, "issued to another party"),
    ({"iss": "https://evil.example"}, "another issuer"),
    ({"nonce": "replayed-from-another-sign-in"}, "nonce is not this sign-in"),
    ({"nonce": None}, "nonce is not this sign-in"),
    ({"exp": 0}, "has expired"),
    ({"sub": None}, "no subject"),
    ({"groups": {"not": "a list"}}, "not a list of names"),
], ids=["fail/wrong-audience", "fail/azp", "fail/wrong-issuer", "fail/wrong-nonce",
        "fail/no-nonce", "fail/expired", "fail/no-sub", "fail/groups-shape"])
def test_fail_id_token_checks(sso: Sso, bend: dict[str, Any], says: str) -> None:
    console = sso.console()
    sso.provider.claims = bend
    record = _refused(sso, console, sso.sign_in(console, ANNA), 401, says)
    assert record["outcome"] == "denied" and says in record["reason"]


def test_fail_bad_signature(sso: Sso) -> None:
    console = sso.console()
    sso.provider.signer = ECKey.generate_key("P-256", private=True)  # never published
    record = _refused(sso, console, sso.sign_in(console, ANNA), 401, "signature")
    assert record["actor"] == "anonymous"  # nobody is named by a token that does not verify


def test_ok_provider_key_rotation_refetches_its_keys(sso: Sso) -> None:
    assert sso.sign_in(sso.console(), ANNA).status_code == 200
    sso.provider.rotate()
    assert sso.sign_in(sso.console(), ANNA).status_code == 200
    assert sso.provider.fetches == 2


def test_ok_clock_skew_within_the_bound_is_accepted(sso: Sso) -> None:
    """A provider whose clock runs 50 s ahead (leeway 60 s): iat in our future is fine."""
    now = int(sso.tenants.installation.clock.now().timestamp())
    sso.provider.claims = {"iat": now + 50, "exp": now + 50 + 300}
    assert sso.sign_in(sso.console(), ANNA).status_code == 200
    sso.provider.claims = {"iat": now + 120, "exp": now + 420}
    console = sso.console()
    _refused(sso, console, sso.sign_in(console, ANNA), 401, "issued in the future")


def test_fail_no_mapped_group_is_a_403_audited_with_the_person(sso: Sso) -> None:
    console = sso.console()
    record = _refused(sso, console, sso.sign_in(console, NOBODY), 403,
                      "eve@example.com is in no group")
    assert record["actor"] == "oidc:eve@example.com"
    assert record["details"] == {"via": "oidc", "sub": "eve-sub", "email": "eve@example.com"}


def test_fail_state_mismatch(sso: Sso) -> None:
    console = sso.console()
    code, _ = sso.provider.log_in(sso.start(console), ANNA)
    _refused(sso, console, callback(console, code=code, state="forged"), 401, "state mismatch")


def test_fail_callback_without_a_sign_in_under_way(sso: Sso) -> None:
    """No sealed state/nonce/verifier in this browser (cookie gone, or a login CSRF)."""
    console = sso.console()
    code, state = sso.provider.log_in(sso.start(console), ANNA)
    console.http.cookies.clear()
    _refused(sso, console, callback(console, code=code, state=state), 401,
             "no sign-in is under way")


def test_fail_a_code_from_another_browser_lacks_its_pkce_verifier(sso: Sso) -> None:
    """An attacker's code injected into the victim's callback: the victim's verifier does
    not match the challenge the code was issued for, so the provider refuses it."""
    attacker, victim = sso.console(), sso.console()
    stolen_code, _ = sso.provider.log_in(sso.start(attacker), NOBODY)
    _, victim_state = sso.provider.log_in(sso.start(victim), ANNA)
    _refused(sso, victim, callback(victim, code=stolen_code, state=victim_state), 401,
             "invalid_grant")


def test_fail_expired_sign_in_and_provider_error(sso: Sso) -> None:
    console = sso.console()
    code, state = sso.provider.log_in(sso.start(console), ANNA)
    sso.tenants.installation.clock.advance(timedelta(minutes=11))
    _refused(sso, console, callback(console, code=code, state=state), 401, "took too long")
    _, state = sso.provider.log_in(sso.start(console), ANNA)
    _refused(sso, console, callback(console, state=state, error="access_denied",
                                    error_description="the user said no"), 401,
             "access_denied: the user said no")


def test_fail_a_forged_flow_cookie_is_not_a_sign_in(sso: Sso) -> None:
    console = sso.console()
    code, state = sso.provider.log_in(sso.start(console), ANNA)
    console.http.cookies.clear()
    console.http.cookies.set("__Host-iotiam-oidc", "bm90LXNlYWxlZA==", domain="testserver.local")
    answer = callback(console, code=code, state=state)
    assert answer.status_code == 401 and not has_session(console)


@pytest.mark.parametrize("changed", [
    (("iot-admins", RoleGrant(Role.ADMIN, "/root/")),),
    (("acme-ops", RoleGrant(Role.VIEWER, "acme")),),
    (("acme-ops", RoleGrant(Role.OPERATOR, "/root/globex/")),),
    None,
], ids=["fail/mapping-removed", "fail/role-changed", "fail/org-changed", "fail/sso-disabled"])
def test_fail_a_session_ends_when_its_mapping_no_longer_grants_it(
        sso: Sso, changed: tuple[tuple[str, RoleGrant], ...] | None) -> None:
    console = sso.console()
    assert sso.sign_in(console, ANNA).status_code == 200
    assert console.page("/console/devices").status_code == 200
    # the server restarted with another mapping (or without SSO): the same cookie
    later = sso.console(changed)
    later.http.cookies = console.http.cookies
    answer = later.http.get("/console/devices")
    assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"]


def test_ok_sign_in_page_without_sso_has_no_provider_button(sso: Sso) -> None:
    console = sso.console(None)
    assert "Sign in with" not in console.http.get("/console/sign-in").text
    assert console.http.get("/console/sign-in/oidc").status_code == 404
    assert callback(console, code="x", state="y").status_code == 404

