"""The CA rotation routes on the SQL installation (SQLite, and PostgreSQL when set):
problem+json on bad input, nothing changed by a refused call (docs/ca-rotation.md)."""

from __future__ import annotations

from fleet import add_device, certificate_of, issue

from conftest import Installation


def test_ca_rotate_list_and_revoke_ok(sql_installation: Installation) -> None:
    api = sql_installation.api()
    add_device(api, "r1")
    old = certificate_of(issue(api, "r1"))
    first = sql_installation.services.pki.issuing_id
    rotated = api.post("/v1/cas/rotate", json={})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["new"]
    listed = {c["id"]: c for c in api.get("/v1/cas").json()["items"]}
    assert (listed[first]["state"], listed[first]["live_certificates"]) == ("retiring", 1)
    assert listed[second]["state"] == "active" and listed[second]["key"] == "database"
    new = certificate_of(issue(api, "r1"))
    assert new.issuer != old.issuer
    # a second process on the same database loads both CAs: the newest is active
    assert sql_installation.services.pki.cas.state_of(first).value == "retiring"
    migrate = api.post("/v1/cas/migrate", json={})
    assert migrate.status_code == 200 and migrate.json()["moving"] == 1
    assert api.get("/ca/issuing.json").json() == {
        "id": second, "subject": new.issuer.rfc4514_string(), "migrate": True}
    revoked = api.post(f"/v1/cas/{first}/revoke", json={"reason": "cACompromise"})
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["certificates"], revoked.json()["successor"]) == (1, None)
    again = api.post(f"/v1/cas/{first}/revoke", json={})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


def test_ca_routes_fail_bad_input(sql_installation: Installation) -> None:
    api = sql_installation.api()
    issuing = sql_installation.services.pki.issuing_id
    root = sql_installation.services.pki.cas.root_id
    for path, body, status in (
            ("/v1/cas/rotate", {"dry_run": "yes"}, 422),
            ("/v1/cas/rotate", {"extra": 1}, 422),
            (f"/v1/cas/{issuing}/revoke", {"reason": "sunspots"}, 400),
            (f"/v1/cas/{root}/revoke", {}, 400),
            ("/v1/cas/issuing-000000000000/revoke", {}, 404),
            ("/v1/cas/..%2F..%2Fetc/revoke", {}, 404),
            (f"/v1/cas/{issuing}/revoke/drill", {"reason": "x" * 65}, 422)):
        answer = api.post(path, json=body)
        assert answer.status_code in (status, 400 if status == 422 else status), (path,
                                                                                  answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), path
    assert sql_installation.services.pki.issuing_id == issuing
    listed = api.get("/v1/cas").json()["items"]
    assert [c["state"] for c in listed] == ["active", "active"]
