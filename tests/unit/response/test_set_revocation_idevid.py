"""Set revocation of devices a manufacturer vouched for: selected by the manufacturer's
name, its IDevID CA's fingerprint, and the batch its manifest named (docs/revocation.md)."""

from __future__ import annotations

from typing import Any

import pytest
from enrollment.zerotouch import (
    csr_for,
    device_client,
    idevid,
    import_manifest,
    issued,
    manufacturer_ca,
    register_manufacturer,
    simpleenroll,
)
from fleet import add_org_unit

from conftest import Installation

SETS = "/v1/revocations/sets"
#: serial → the batch the manifest names for it
MANIFEST = {"SN-1": "B-2026-07", "SN-2": "B-2026-07", "SN-3": "B-2026-08"}


@pytest.fixture
def enrolled(installation: Installation) -> str:
    """SN-1..SN-3 enrolled through their IDevIDs; the manufacturer CA's fingerprint."""
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    ca = manufacturer_ca(installation)
    register_manufacturer(installation, ca, org="acme", device_type="gateway")
    answer = import_manifest(installation, "acme-devices",
                             [{"serial": s, "batch": b} for s, b in MANIFEST.items()])
    assert answer.json()["failed"] == 0, answer.text
    client = device_client(installation)
    for serial in MANIFEST:
        issued(simpleenroll(client, csr_for(serial), idevid(installation, ca, serial)))
    fingerprint: str = api.get("/v1/manufacturers/acme-devices").json()["sha256"]
    return fingerprint


def preview(installation: Installation, where: str) -> dict[str, Any]:
    answer = installation.api().post(SETS, json={"where": where, "dry_run": True})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_manifest_batch_selects(installation: Installation, enrolled: str) -> None:
    report = preview(installation, "manufacturer=acme-devices and batch=B-2026-07")
    assert (report["sample"], report["certificates"]) == (["SN-1", "SN-2"], 2)


def test_issuer_by_fingerprint_or_name(installation: Installation, enrolled: str) -> None:
    colons = ":".join(enrolled[i:i + 2] for i in range(0, 64, 2)).upper()
    for issuer in (enrolled, colons, "acme-devices"):
        assert preview(installation, f"issuer={issuer}")["sample"] == list(MANIFEST)
    assert preview(installation, f"issuer={enrolled} and batch=B-2026-08")["sample"] == \
        ["SN-3"]
    # another manufacturer's name with this CA selects nothing
    assert preview(installation, f"issuer={enrolled} and manufacturer=globex")[
        "devices"] == 0


def test_revoke_by_issuer(installation: Installation, enrolled: str) -> None:
    answer = installation.api().post(SETS, json={"where": f"issuer={enrolled}",
                                                 "reason": "caCompromise"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["devices"], answer.json()["certificates"]) == (3, 3)
    for serial in MANIFEST:
        certs = installation.api().get("/v1/certificates", params={"device": serial}).json()
        assert [c["status"] for c in certs["items"]] == ["revoked"]
        assert certs["items"][0]["revocation_reason"] == "cACompromise"


def test_manifest_batch_refused_when_unnameable(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    register_manufacturer(installation, manufacturer_ca(installation), org="acme",
                          device_type="gateway")
    answer = import_manifest(installation, "acme-devices",
                             [{"serial": "SN-9", "batch": "2026;07"}])
    assert answer.json()["failed"] == 1
    assert "'batch' must be" in answer.text
