"""G9: nothing a tenant's token can do reaches another tenant's objects.

Direct access answers 404 exactly as for an object that does not exist (never 403,
which would confirm it exists); lists, reports and audit exports stop at the subtree.
"""

from __future__ import annotations

import json

import httpx
import pytest
from expect import assert_problem, audit_records, row_counts, snapshot
from fleet import add_device, add_org_unit, issue

from api.tenants import ACME_DEVICES, Tenants
from iotiam.kernel import SYSTEM
from iotiam.testing import make_csr

ROLES = ["viewer", "operator", "admin"]
WRITERS = ["operator", "admin"]


def assert_hidden(foreign: httpx.Response, unknown: httpx.Response, foreign_id: str,
                  unknown_id: str) -> None:
    """A 404 for ``foreign_id`` that is word for word the 404 for a missing object."""
    body = assert_problem(foreign, 404)
    expected = assert_problem(unknown, 404)
    assert body == {**expected, "detail": expected["detail"].replace(unknown_id, foreign_id)}


def test_show_device_fail_other_tenant(tenants: Tenants) -> None:
    for role in ROLES:
        api = tenants.installation.api(tenants.token("acme", role))
        unknown = api.get("/v1/devices/nosuch-d1")
        for foreign in ("globex-d1", "acme2-d1"):
            assert_hidden(api.get(f"/v1/devices/{foreign}"), unknown, foreign, "nosuch-d1")
        assert api.get("/v1/devices/acme-berlin-d1").status_code == 200


def test_show_certificate_fail_other_tenant(tenants: Tenants) -> None:
    for role in ROLES:
        api = tenants.installation.api(tenants.token("acme", role))
        unknown = api.get("/v1/certificates/0badc0ffee")
        for device in ("globex-d1", "acme2-d1"):
            serial = tenants.serials[device]
            assert_hidden(api.get(f"/v1/certificates/{serial}"), unknown, serial, "0badc0ffee")
        assert api.get(f"/v1/certificates/{tenants.serials['acme-d1']}").status_code == 200


@pytest.mark.parametrize("role", WRITERS)
def test_change_fail_other_tenant(tenants: Tenants, role: str) -> None:
    installation = tenants.installation
    api = installation.api(tenants.token("acme", role))
    serial = tenants.serials["globex-d1"]
    before = snapshot(installation)
    attempts = [
        api.post("/v1/devices/globex-d1/state", json={"state": "quarantined"}),
        api.post(f"/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise"}),
        api.post("/v1/devices/globex-d1/revoke-certificates", json={}),
        api.post("/v1/certificates", json={"device": "globex-d1",
                                           "csr": make_csr("globex-d1").decode()}),
        api.post("/v1/groups/acme-g/members", json={"device": "globex-d1"}),
        api.post("/v1/groups/globex-g/members", json={"device": "acme-d1"}),
        api.post("/v1/devices", json={"id": "planted", "type": "sensor", "org": "globex"}),
        api.post("/v1/groups", json={"id": "planted-g", "org": "globex"}),
    ]
    for answer in attempts:
        assert_problem(answer, 404, "not found")
    assert row_counts(installation) == before.rows
    root = installation.api()
    assert root.get("/v1/devices/globex-d1").json()["state"] == "active"
    assert root.get(f"/v1/certificates/{serial}").json()["status"] == "issued"
    # every refusal is audited inside acme's own subtree, never globex's
    refusals = audit_records(root, after=before.seq)
    assert len(refusals) == len(attempts)
    assert {r["outcome"] for r in refusals} == {"denied"}
    assert {r["org_path"] for r in refusals} == {"/root/acme/"}


def test_decommission_fail_other_tenant(tenants: Tenants) -> None:
    api = tenants.installation.api(tenants.token("acme", "admin"))
    answer = api.post("/v1/devices/globex-d1/state", json={"state": "decommissioned"})
    assert_problem(answer, 404, "device 'globex-d1' not found")
    root = tenants.installation.api()
    serial = tenants.serials["globex-d1"]
    assert root.get(f"/v1/certificates/{serial}").json()["status"] == "issued"


def test_lists_stop_at_subtree(tenants: Tenants) -> None:
    for role in ROLES:
        api = tenants.installation.api(tenants.token("acme", role))
        devices = api.get("/v1/devices").json()["items"]
        assert {d["id"] for d in devices} == ACME_DEVICES
        certificates = api.get("/v1/certificates").json()["items"]
        assert {c["device"] for c in certificates} == ACME_DEVICES
        assert api.get("/v1/certificates", params={"device": "globex-d1"}).json()["items"] == []
        assert {g["id"] for g in api.get("/v1/groups").json()["items"]} == {"acme-g"}
        assert {u["id"] for u in api.get("/v1/org-units").json()["items"]} == {"acme",
                                                                               "acme-berlin"}


def test_lists_stop_at_site(tenants: Tenants) -> None:
    api = tenants.installation.api(tenants.token("acme-berlin", "admin"))
    assert [d["id"] for d in api.get("/v1/devices").json()["items"]] == ["acme-berlin-d1"]
    assert api.get("/v1/devices/acme-d1").status_code == 404
    assert [u["id"] for u in api.get("/v1/org-units").json()["items"]] == ["acme-berlin"]
    assert api.get("/v1/inventory").json()["total"] == 1


def test_report_counts_own_subtree(tenants: Tenants) -> None:
    for role in ROLES:
        report = tenants.installation.api(tenants.token("acme", role)).get("/v1/inventory").json()
        assert report["total"] == 2
        assert report["by_type"] == {"sensor": 2}
        assert report["by_state"] == {"active": 2}
        assert sum(report["by_credential_status"].values()) == 2
        everything = tenants.installation.api().get("/v1/inventory").json()
        assert everything["total"] == 4


def test_audit_records_stop_at_subtree(tenants: Tenants) -> None:
    api = tenants.installation.api(tenants.token("acme", "viewer"))
    records = audit_records(api)
    assert records
    assert all(r["org_path"].startswith("/root/acme/") for r in records)
    subjects = {r["subject"] for r in records}
    assert {"device:acme-d1", "device:acme-berlin-d1"} <= subjects
    text = json.dumps(records)
    for foreign in ("globex", "acme2"):
        assert foreign not in text
    assert tenants.serials["globex-d1"] not in text
    lines = api.get("/v1/audit/export", params={"format": "jsonl"}).text.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [r["seq"] for r in records]


def test_audit_verify_fail_tenant_admin(tenants: Tenants) -> None:
    answer = tenants.installation.api(tenants.token("acme", "admin")).get("/v1/audit/verify")
    assert_problem(answer, 403, "needs an admin token scoped to the root")


def test_tokens_stop_at_subtree(tenants: Tenants) -> None:
    installation = tenants.installation
    globex = installation.api().post("/v1/tokens", json={"name": "globex-ops", "role": "admin",
                                                         "org": "globex"}).json()
    acme_admin = installation.api(tenants.token("acme", "admin"))
    tenants.token("acme-berlin", "viewer")
    listed = acme_admin.get("/v1/tokens").json()["items"]
    assert {t["org"] for t in listed} == {"acme", "acme-berlin"}
    assert globex["id"] not in {t["id"] for t in listed}
    unknown = acme_admin.delete("/v1/tokens/0123456789abcdef")
    assert_hidden(acme_admin.delete(f"/v1/tokens/{globex['id']}"), unknown, globex["id"],
                  "0123456789abcdef")
    # the globex token still works
    assert installation.api(globex["token"]).get("/v1/whoami").json()["org"] == "globex"


@pytest.mark.parametrize("org", ["globex", "root", "acme2", "nosuch"])
def test_token_create_fail_outside_subtree(tenants: Tenants, org: str) -> None:
    installation = tenants.installation
    api = installation.api(tenants.token("acme", "admin"))
    before = row_counts(installation)
    answer = api.post("/v1/tokens", json={"name": "escape", "role": "viewer", "org": org})
    assert_problem(answer, 404, f"org unit {org!r} not found")
    assert row_counts(installation) == before


def test_token_create_ok_narrower_scope(tenants: Tenants) -> None:
    api = tenants.installation.api(tenants.token("acme", "admin"))
    created = api.post("/v1/tokens", json={"name": "berlin", "role": "admin",
                                           "org": "acme-berlin"})
    assert created.status_code == 201, created.text
    assert created.json()["org"] == "acme-berlin"
    whoami = tenants.installation.api(created.json()["token"]).get("/v1/whoami").json()
    assert whoami["org_path"] == "/root/acme/acme-berlin/"


@pytest.mark.parametrize(("role", "wanted"),
                         [("operator", "admin"), ("operator", "operator"),
                          ("viewer", "operator"), ("viewer", "viewer")])
def test_token_create_fail_role(tenants: Tenants, role: str, wanted: str) -> None:
    installation = tenants.installation
    api = installation.api(tenants.token("acme", role))
    before = row_counts(installation)
    answer = api.post("/v1/tokens", json={"name": "escalate", "role": wanted})
    assert_problem(answer, 403, "creating tokens needs the admin role")
    assert row_counts(installation) == before


@pytest.mark.parametrize(("kind", "parent"),
                         [("site", "globex"), ("tenant", "root"), ("business-unit", "acme2")])
def test_org_unit_create_fail_outside_subtree(tenants: Tenants, kind: str, parent: str) -> None:
    installation = tenants.installation
    api = installation.api(tenants.token("acme", "admin"))
    before = row_counts(installation)
    answer = api.post("/v1/org-units", json={"id": "planted", "kind": kind, "parent": parent})
    assert_problem(answer, 404, f"org unit {parent!r} not found")
    assert row_counts(installation) == before


def test_device_type_create_fail_tenant_admin(tenants: Tenants) -> None:
    api = tenants.installation.api(tenants.token("acme", "admin"))
    answer = api.post("/v1/device-types", json={"name": "kettle", "device_class": "sensor"})
    assert_problem(answer, 403, "device types are fleet-wide")


def test_prefix_tenant_sees_only_itself(tenants: Tenants) -> None:
    """``acme2`` is not inside ``acme`` because its id starts with ``acme`` (nor the reverse)."""
    api = tenants.installation.api(tenants.token("acme2", "admin"))
    assert [d["id"] for d in api.get("/v1/devices").json()["items"]] == ["acme2-d1"]
    assert api.get("/v1/devices/acme-d1").status_code == 404
    assert api.get(f"/v1/certificates/{tenants.serials['acme-d1']}").status_code == 404
    assert api.get("/v1/inventory").json()["total"] == 1
    assert all(r["org_path"].startswith("/root/acme2/") for r in audit_records(api))


@pytest.mark.parametrize("tenant", ["ac_e", "acm_", "ACME"])
def test_lookalike_tenant_sees_nothing(tenants: Tenants, tenant: str) -> None:
    """``_`` is not a LIKE wildcard and case matters: ``ac_e`` and ``ACME`` see none of acme."""
    installation = tenants.installation
    add_org_unit(installation.api(), tenant, "tenant")
    tenants.token("acme", "viewer")
    api = installation.api(tenants.token(tenant, "admin"))
    assert api.get("/v1/devices").json()["items"] == []
    assert api.get("/v1/certificates").json()["items"] == []
    assert api.get("/v1/groups").json()["items"] == []
    assert [u["id"] for u in api.get("/v1/org-units").json()["items"]] == [tenant]
    assert {t["org"] for t in api.get("/v1/tokens").json()["items"]} == {tenant}
    assert api.get("/v1/inventory").json()["total"] == 0
    assert all(r["org_path"] == f"/root/{tenant}/" for r in audit_records(api))
    assert api.get("/v1/devices/acme-d1").status_code == 404


@pytest.mark.parametrize("unit_id", ["ac%", "%", "acme/globex", "..", "a b"])
def test_org_unit_create_fail_path_characters(tenants: Tenants, unit_id: str) -> None:
    installation = tenants.installation
    before = row_counts(installation)
    answer = installation.api().post("/v1/org-units", json={"id": unit_id, "kind": "tenant",
                                                            "parent": "root"})
    assert_problem(answer, 400, "org unit id")
    assert row_counts(installation) == before


def test_wildcard_device_filters_match_literally(tenants: Tenants) -> None:
    installation = tenants.installation
    api = installation.api()
    add_device(api, "acme_d1", org="acme")
    issue(api, "acme_d1")
    listed = api.get("/v1/certificates", params={"device": "acme_d1"}).json()["items"]
    assert [c["device"] for c in listed] == ["acme_d1"]
    assert api.get("/v1/devices", params={"type": "sens%"}).json()["items"] == []


def test_activity_report_counts_own_subtree(tenants: Tenants) -> None:
    services = tenants.installation.services
    for device_id in ("acme-d1", "globex-d1", "acme2-d1"):
        services.pki.revoke_certificate(SYSTEM, tenants.serials[device_id], "superseded")
    services.activity.catch_up()
    mine = tenants.installation.api(tenants.token("acme", "viewer")).get(
        "/v1/inventory/activity", params={"days": 7}).json()
    assert len(mine["days"]) == 7
    assert mine["totals"] == {"enrollments": 0, "reenrollments": 0, "revocations": 1}
    today = services.clock.now().date().isoformat()
    assert mine["days"][-1] == {"day": today, "enrollments": 0, "reenrollments": 0,
                                "revocations": 1}
    everything = tenants.installation.api().get("/v1/inventory/activity").json()
    assert len(everything["days"]) == 30 and everything["totals"]["revocations"] == 3


@pytest.mark.parametrize("days", ["0", "367", "a", "-1"])
def test_activity_report_fail_bad_days(tenants: Tenants, days: str) -> None:
    answer = tenants.installation.api().get("/v1/inventory/activity", params={"days": days})
    assert_problem(answer, 400, "query.days")
