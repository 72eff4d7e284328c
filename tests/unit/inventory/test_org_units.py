"""The org-unit tree: which kind may hang under which, ids, roles and the audit record."""

from __future__ import annotations

import pytest
from expect import assert_problem, audit_records, row_counts
from fleet import add_org_unit

from conftest import Installation


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """The org-unit use cases, on the memory stores."""
    return memory_installation


@pytest.fixture
def tree(installation: Installation) -> Installation:
    """root → acme (tenant) → emea (business unit) → berlin (site); acme → lab (site)."""
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "emea", "business-unit", parent="acme")
    add_org_unit(api, "berlin", "site", parent="emea")
    add_org_unit(api, "lab", "site", parent="acme")
    return installation


def test_create_ok_paths_follow_the_tree(tree: Installation) -> None:
    units = {u["id"]: u for u in tree.api().get("/v1/org-units").json()["items"]}
    assert {i: (u["kind"], u["parent"], u["path"]) for i, u in units.items()} == {
        "root": ("root", None, "/root/"),
        "acme": ("tenant", "root", "/root/acme/"),
        "emea": ("business-unit", "acme", "/root/acme/emea/"),
        "berlin": ("site", "emea", "/root/acme/emea/berlin/"),
        "lab": ("site", "acme", "/root/acme/lab/"),
    }


def test_create_ok_name_defaults_to_id(installation: Installation) -> None:
    api = installation.api()
    named = api.post("/v1/org-units", json={"id": "acme", "name": "ACME Corp.",
                                            "kind": "tenant", "parent": "root"}).json()
    unnamed = api.post("/v1/org-units", json={"id": "globex", "kind": "tenant",
                                              "parent": "root"}).json()
    assert (named["name"], unnamed["name"]) == ("ACME Corp.", "globex")


def test_create_ok_audited(tree: Installation) -> None:
    created = [r for r in audit_records(tree.api()) if r["tag"] == "admin:org-unit:created"]
    assert [(r["subject"], r["org_path"], r["details"]["kind"]) for r in created] == [
        ("org-unit:acme", "/root/acme/", "tenant"),
        ("org-unit:emea", "/root/acme/emea/", "business-unit"),
        ("org-unit:berlin", "/root/acme/emea/berlin/", "site"),
        ("org-unit:lab", "/root/acme/lab/", "site"),
    ]
    assert {r["actor"] for r in created} == {"token:bootstrap-admin"}


@pytest.mark.parametrize(
    ("kind", "parent"),
    [
        ("tenant", "acme"),
        ("tenant", "emea"),
        ("tenant", "berlin"),
        ("business-unit", "root"),
        ("business-unit", "emea"),
        ("business-unit", "berlin"),
        ("site", "root"),
        ("site", "berlin"),
        ("root", "root"),
    ],
)
def test_create_fail_kind_under_parent(tree: Installation, kind: str, parent: str) -> None:
    before = row_counts(tree)
    answer = tree.api().post("/v1/org-units", json={"id": "new-unit", "kind": kind,
                                                    "parent": parent})
    parent_kind = {"root": "root", "acme": "tenant", "emea": "business-unit",
                   "berlin": "site"}[parent]
    assert_problem(answer, 400, f"a {kind} cannot be placed under a {parent_kind}")
    assert row_counts(tree) == before
    refusal = audit_records(tree.api())[-1]
    assert (refusal["tag"], refusal["outcome"]) == ("admin:org-unit:created", "failure")


def test_create_fail_duplicate_id(tree: Installation) -> None:
    before = row_counts(tree)
    answer = tree.api().post("/v1/org-units", json={"id": "lab", "kind": "site",
                                                    "parent": "emea"})
    assert_problem(answer, 409, "org unit id 'lab' is not available")
    assert row_counts(tree) == before


def test_create_fail_unknown_parent(tree: Installation) -> None:
    answer = tree.api().post("/v1/org-units", json={"id": "x", "kind": "site",
                                                    "parent": "nosuch"})
    assert_problem(answer, 404, "org unit 'nosuch' not found")


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_create_fail_below_admin(tree: Installation, role: str) -> None:
    api = tree.api(tree.token(role))
    before = row_counts(tree)
    answer = api.post("/v1/org-units", json={"id": "x", "kind": "site", "parent": "acme"})
    assert_problem(answer, 403, "creating org units needs the admin role")
    assert row_counts(tree) == before
    refusal = audit_records(tree.api())[-1]
    assert (refusal["tag"], refusal["outcome"]) == ("admin:org-unit:created", "denied")


def test_create_ok_tenant_admin_inside_own_tenant(tree: Installation) -> None:
    api = tree.api(tree.token("admin", "acme"))
    created = api.post("/v1/org-units", json={"id": "paris", "kind": "site", "parent": "emea"})
    assert created.status_code == 201, created.text
    assert created.json()["path"] == "/root/acme/emea/paris/"
