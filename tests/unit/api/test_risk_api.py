"""The risk register over the API: contract shapes, G9, and hostile input (G10)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from expect import assert_problem, audit_records

from api.tenants import Tenants

PROBLEM = "application/problem+json"


def make_expiring(tenants: Tenants) -> None:
    """Move the clock past the certificates' renewal point (no renewal follows), rebuild."""
    installation = tenants.installation
    with installation.services.database.reading() as uow:
        cert = next(iter(uow.certificates.iter_device_certificates(org_path="/root/")))
    lifetime = cert.not_after - cert.not_before
    installation.clock.set(cert.not_before + lifetime * 0.8)
    answer = installation.api().post("/v1/risk/rebuild")
    assert answer.status_code == 200, answer.text


def acme_entry(tenants: Tenants) -> dict[str, Any]:
    api = tenants.installation.api(tenants.token("acme", "admin"))
    items = api.get("/v1/risk/entries").json()["items"]
    assert items
    return items[0]


def live_acceptances(tenants: Tenants) -> int:
    installation = tenants.installation
    with installation.services.database.reading() as uow:
        return len(uow.risk.live_acceptances(installation.clock.now().timestamp()))


def test_ok_entries_follow_the_contract(tenants: Tenants) -> None:
    make_expiring(tenants)
    root = tenants.installation.api()
    page = root.get("/v1/risk/entries", params={"limit": 2})
    assert page.status_code == 200
    body = page.json()
    assert set(body) == {"items", "total", "next"} and body["total"] >= 5
    entry = body["items"][0]
    assert set(entry) == {"id", "subject", "subject_id", "org_path", "site", "type", "score",
                          "factors", "accepted"}
    assert set(entry["factors"][0]) == {"factor", "severity", "summary", "evidence"}
    scores = [e["score"] for e in body["items"]]
    assert scores == sorted(scores, reverse=True)
    following = root.get("/v1/risk/entries", params={"limit": 2, "after": body["next"]})
    assert not {e["id"] for e in following.json()["items"]} & {e["id"] for e in body["items"]}
    expiring = root.get("/v1/risk/entries", params={"factor": "expiring-no-renewal",
                                                    "subject": "certificate"}).json()
    assert expiring["total"] == 4
    summary = root.get("/v1/risk/summary").json()
    assert summary["managed"] == 4 and summary["rebuilt_at"].endswith("Z")
    assert summary["by_factor"]["expiring-no-renewal"] == 4
    assert len(root.get("/v1/risk/trend").json()["items"]) == 1
    assert root.get(f"/v1/risk/entries/{entry['id']}").json()["id"] == entry["id"]


def test_fail_g9_tenant_sees_only_its_own(tenants: Tenants) -> None:
    make_expiring(tenants)
    acme = tenants.installation.api(tenants.token("acme", "admin"))
    globex = tenants.installation.api(tenants.token("globex", "admin"))
    mine = acme.get("/v1/risk/entries").json()
    assert {e["org_path"] for e in mine["items"]} <= {"/root/acme/", "/root/acme/acme-berlin/"}
    assert mine["total"] == 2
    summary = acme.get("/v1/risk/summary").json()
    assert summary["total"] == 2 and summary["managed"] == 2
    assert summary["by_factor"] == {"expiring-no-renewal": 2}
    assert acme.get("/v1/risk/trend").json()["items"][0]["counts"] == {
        "managed": 2, "expiring-no-renewal": 2}
    theirs = globex.get("/v1/risk/entries").json()["items"][0]
    assert_problem(acme.get(f"/v1/risk/entries/{theirs['id']}"), 404)
    missing = acme.get("/v1/risk/entries/device-00000000000000000000")
    assert missing.status_code == 404
    answer = acme.post(f"/v1/risk/entries/{theirs['id']}/accept", json={
        "factor": theirs["factors"][0]["factor"], "reason": "mine now", "expires_in_days": 5})
    assert_problem(answer, 404)
    assert live_acceptances(tenants) == 0
    assert acme.get("/v1/risk/entries", params={"org": "/root/globex/"}).json()["total"] == 0
    csv = acme.get("/v1/risk/export", params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "/root/globex/" not in csv.text and len(csv.text.strip().splitlines()) == 3
    assert_problem(acme.post("/v1/risk/rebuild"), 400)


def test_ok_accept_is_audited_and_hides_the_factor(tenants: Tenants) -> None:
    make_expiring(tenants)
    acme = tenants.installation.api(tenants.token("acme", "admin"))
    entry = acme_entry(tenants)
    answer = acme.post(f"/v1/risk/entries/{entry['id']}/accept", json={
        "factor": "expiring-no-renewal", "reason": "replaced next week",
        "expires_in_days": 7})
    assert answer.status_code == 200, answer.text
    accepted = answer.json()
    assert accepted["factors"] == [] and accepted["score"] == 0
    assert accepted["accepted"][0]["reason"] == "replaced next week"
    assert accepted["accepted"][0]["expires_at"].endswith("Z")
    tags = [r["tag"] for r in audit_records(tenants.installation.api())]
    assert "admin:risk-factor:accepted" in tags and "system:risk-register:rebuilt" in tags
    tenants.installation.clock.advance(timedelta(days=8))
    again = acme.get(f"/v1/risk/entries/{entry['id']}").json()
    assert again["accepted"] == [] and again["factors"][0]["factor"] == "expiring-no-renewal"


@pytest.mark.parametrize("params", [
    {"factor": "bogus"}, {"min_score": "-1"}, {"min_score": "abc"}, {"subject": "cat"},
    {"after": "nonsense"}, {"limit": "0"}, {"limit": "5000"}, {"org": "root"}],
    ids=["fail/unknown-factor", "fail/negative-min-score", "fail/text-min-score",
         "fail/unknown-subject", "fail/bad-cursor", "fail/zero-limit", "fail/huge-limit",
         "fail/bad-org"])
def test_fail_bad_list_parameters(tenants: Tenants, params: dict[str, str]) -> None:
    answer = tenants.installation.api().get("/v1/risk/entries", params=params)
    assert answer.status_code in (400, 422), answer.text
    assert answer.headers["content-type"] == PROBLEM and "Traceback" not in answer.text


@pytest.mark.parametrize("path", ["/v1/risk/entries", "/v1/risk/export"])
@pytest.mark.parametrize("name", ["site", "type", "org"])
def test_fail_a_nul_byte_in_a_filter_is_refused_before_any_answer(
        tenants: Tenants, path: str, name: str) -> None:
    """PostgreSQL refuses a NUL byte in text: the export streams, so the filter is
    refused before its answer starts (found by schemathesis on PostgreSQL)."""
    answer = tenants.installation.api().get(path, params={name: "\x90\u00f6\x00\u00a9"})
    assert_problem(answer, 400, "NUL byte")


def test_fail_bad_export_format(tenants: Tenants) -> None:
    answer = tenants.installation.api().get("/v1/risk/export", params={"format": "xml"})
    assert_problem(answer, 400, "csv or json")


@pytest.mark.parametrize(("body", "status"), [
    ({"factor": "expiring-no-renewal", "reason": "", "expires_in_days": 5}, 400),
    ({"factor": "expiring-no-renewal", "reason": "   ", "expires_in_days": 5}, 400),
    ({"factor": "expiring-no-renewal", "reason": "x", "expires_in_days": -1}, 422),
    ({"factor": "expiring-no-renewal", "reason": "x", "expires_in_days": 366}, 422),
    ({"factor": "expiring-no-renewal", "reason": "x", "expires_in_days": "5"}, 422),
    ({"factor": "bogus", "reason": "x", "expires_in_days": 5}, 400),
    ({"factor": "zombie", "reason": "x", "expires_in_days": 5}, 409),
    ({"factor": "expiring-no-renewal", "reason": "x", "expires_in_days": 5, "extra": 1}, 422)],
    ids=["fail/empty-reason", "fail/blank-reason", "fail/negative-expiry",
         "fail/too-long-expiry", "fail/string-expiry", "fail/unknown-factor",
         "fail/factor-not-on-entry", "fail/unknown-field"])
def test_fail_bad_accept_stores_nothing(tenants: Tenants, body: dict[str, Any],
                                        status: int) -> None:
    make_expiring(tenants)
    entry = acme_entry(tenants)
    acme = tenants.installation.api(tenants.token("acme", "admin"))
    answer = acme.post(f"/v1/risk/entries/{entry['id']}/accept", json=body)
    if status == 422:
        assert answer.status_code in (400, 422) and answer.headers["content-type"] == PROBLEM
    else:
        assert_problem(answer, status)
    assert live_acceptances(tenants) == 0


def test_fail_wrong_role(tenants: Tenants) -> None:
    make_expiring(tenants)
    entry = acme_entry(tenants)
    viewer = tenants.installation.api(tenants.token("acme", "viewer"))
    assert viewer.get("/v1/risk/entries").status_code == 200
    answer = viewer.post(f"/v1/risk/entries/{entry['id']}/accept", json={
        "factor": "expiring-no-renewal", "reason": "x", "expires_in_days": 5})
    assert_problem(answer, 403)
    assert_problem(viewer.post("/v1/risk/rebuild"), 403)
    assert live_acceptances(tenants) == 0
