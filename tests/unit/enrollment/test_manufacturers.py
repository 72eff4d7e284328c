"""Manufacturer CAs and manufacturing manifests, through the API on every backend."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from expect import assert_problem, snapshot
from fleet import add_device, add_org_unit

from conftest import Installation
from enrollment.zerotouch import (
    idevid,
    import_manifest,
    manufacturer_ca,
    records,
    register_manufacturer,
)
from iotiam.testing import make_key, make_manufacturer_ca


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Manufacturers and manifests are use cases: they run on the memory stores."""
    return memory_installation

#: the tail of every "id not available" answer (docs/tenancy.md)
TAKEN = ": ids are unique across the whole installation; choose another"


def test_register_ok(installation: Installation) -> None:
    add_org_unit(installation.api(), "acme", "tenant")
    ca = manufacturer_ca(installation)
    shown = register_manufacturer(installation, ca, org="acme", device_type="gateway")
    assert (shown["name"], shown["org"], shown["type"], shown["manifest_size"]) == (
        "acme-devices", "acme", "gateway", 0)
    assert "CN=Acme Devices IDevID CA" in shown["subject"]
    listed = installation.api().get("/v1/manufacturers").json()["items"]
    assert [m["name"] for m in listed] == ["acme-devices"]
    (record,) = records(installation, "admin:manufacturer:registered")
    assert (record["outcome"], record["org_path"]) == ("success", "/root/acme/")


@pytest.mark.parametrize(
    ("certificate", "detail"),
    [
        pytest.param("not a pem", "not a PEM certificate", id="fail/garbage"),
        pytest.param("NOT_A_CA", "not a CA certificate", id="fail/not-a-ca"),
        pytest.param("EXPIRED", "expired", id="fail/expired"),
        pytest.param("TWO", "exactly one certificate", id="fail/bundle"),
        pytest.param("OWN", "iotiam's own CAs", id="fail/own-ca"),
    ],
)
def test_register_fail_bad_certificate(installation: Installation, certificate: str,
                                       detail: str) -> None:
    now = installation.clock.now()
    good = manufacturer_ca(installation)
    pem = {
        "NOT_A_CA": make_manufacturer_ca(now=now, ca=False).pem,
        "EXPIRED": make_manufacturer_ca(now=now - timedelta(days=30),
                                        lifetime=timedelta(days=10)).pem,
        "TWO": good.pem + manufacturer_ca(installation, "Other").pem,
        "OWN": installation.services.pki.cas.issuing.certificate.public_bytes(
            serialization.Encoding.PEM).decode(),
    }.get(certificate, certificate)
    before = snapshot(installation)
    answer = installation.api().post("/v1/manufacturers",
                                     json={"name": "m1", "certificate": pem})
    assert_problem(answer, 400, detail)
    assert installation.api().get("/v1/manufacturers").json()["items"] == []
    refused = records(installation, "admin:manufacturer:registered")
    assert [r["outcome"] for r in refused] == ["failure"]
    assert before.seq < refused[0]["seq"]


def test_register_fail_duplicates_and_bad_references(installation: Installation) -> None:
    api = installation.api()
    ca = manufacturer_ca(installation)
    register_manufacturer(installation, ca)
    assert_problem(api.post("/v1/manufacturers", json={"name": "acme-devices",
                                                       "certificate": manufacturer_ca(
                                                           installation).pem}), 409,
                   "manufacturer name 'acme-devices' is not available")
    assert_problem(api.post("/v1/manufacturers", json={"name": "again", "certificate": ca.pem}),
                   409, "already registered")
    other = manufacturer_ca(installation).pem
    assert_problem(api.post("/v1/manufacturers", json={"name": "m2", "certificate": other,
                                                       "type": "toaster"}), 400,
                   "unknown device type 'toaster'")
    assert_problem(api.post("/v1/manufacturers", json={"name": "m2", "certificate": other,
                                                       "org": "nowhere"}), 404)
    assert_problem(api.post("/v1/manufacturers", json={"name": "bad name!",
                                                       "certificate": other}), 400)


def test_register_fail_scope_and_role(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    acme_admin = installation.token("admin", "acme")
    ca = manufacturer_ca(installation)
    answer = installation.api(acme_admin).post(
        "/v1/manufacturers", json={"name": "m1", "certificate": ca.pem, "org": "globex"})
    assert_problem(answer, 404, "org unit 'globex' not found")
    operator = installation.token("operator")
    answer = installation.api(operator).post("/v1/manufacturers",
                                             json={"name": "m1", "certificate": ca.pem})
    assert_problem(answer, 403, "needs the admin role")
    # a tenant admin registers into its own tenant by default, and sees only its own
    register_manufacturer(installation, ca, "acme-m", token=acme_admin)
    register_manufacturer(installation, manufacturer_ca(installation), "globex-m", org="globex")
    assert [m["name"] for m in installation.api(acme_admin).get(
        "/v1/manufacturers").json()["items"]] == ["acme-m"]
    assert_problem(installation.api(acme_admin).get("/v1/manufacturers/globex-m"), 404)
    assert_problem(import_manifest(installation, "globex-m", [{"serial": "x"}], acme_admin),
                   404)


def test_manifest_ok_per_row_report(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    register_manufacturer(installation, manufacturer_ca(installation), org="acme")
    register_manufacturer(installation, manufacturer_ca(installation), "other-maker")
    assert import_manifest(installation, "other-maker", [{"serial": "SN-OTHER"}]).json()[
        "imported"] == 1
    add_device(api, "SN-ELSEWHERE", org="globex")
    add_device(api, "SN-0003", org="acme")  # pre-registered in the manufacturer's org: fine
    device_key = make_key()
    spki = device_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    key_hash = hashlib.sha256(device_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    rows = [
        {"serial": "SN-0001"},
        {"serial_number": "SN-0002", "public_key": spki, "batch": "B7"},
        {"hardware_id": "SN-0003", "public_key_sha256": key_hash.upper()},
        {"serial": ""},
        {"serial": "bad serial!"},
        {"serial": "admin"},
        {"serial": "SN-0004", "public_key": "garbage"},
        {"serial": "SN-0005", "public_key_sha256": "abc"},
        {"serial": "SN-0006", "pubkey": "oops"},
        {"serial": "SN-OTHER"},
        {"__invalid__": 5},
        {"serial": "SN-0007", "__extra_columns__": ["x"]},
        {"serial": "SN-0001"},
        {"serial": "SN-ELSEWHERE"},
        {"serial": "SN-0008", "serial_number": "SN-0009"},
    ]
    answer = import_manifest(installation, "acme-devices", rows)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["imported"], body["failed"]) == (4, 11), body["results"]
    errors = {r["row"]: r["error"] for r in body["results"] if not r["ok"]}
    assert errors == {
        4: "missing 'serial' (or 'serial_number' / 'hardware_id')",
        5: errors[5],
        6: "serial 'admin' is reserved; it can never name a device",
        7: "'public_key' is not a PEM or base64 DER public key",
        8: "'public_key_sha256' must be 64 hex digits",
        9: errors[9],
        10: "device id 'SN-OTHER' is not available" + TAKEN,
        11: "row is not a JSON object",
        12: "row has more columns than the header",
        14: "device id 'SN-ELSEWHERE' is not available" + TAKEN,
        15: errors[15],
    }
    assert "is not valid" in errors[5]
    assert "unknown column 'pubkey'" in errors[9]
    assert "several serials" in errors[15]
    shown = installation.api().get("/v1/manufacturers/acme-devices").json()
    assert shown["manifest_size"] == 3
    record = records(installation, "admin:manufacturer:manifest-imported")[-1]
    assert (record["org_path"], record["details"]["added"], record["details"]["failed"]) == (
        "/root/acme/", 3, 11)
    assert record["details"]["serials"] == ["SN-0001", "SN-0002", "SN-0003"]


def test_manifest_reimport_is_idempotent_and_keys_stick(installation: Installation) -> None:
    register_manufacturer(installation, manufacturer_ca(installation))
    first = import_manifest(installation, "acme-devices", [{"serial": "SN-1"}])
    assert first.json()["imported"] == 1
    again = import_manifest(installation, "acme-devices", [{"serial": "SN-1"}])
    assert (again.json()["imported"], again.json()["failed"]) == (1, 0)
    # a key may be added to an entry without one, but never changed afterwards
    assert import_manifest(installation, "acme-devices",
                           [{"serial": "SN-1", "public_key_sha256": "a" * 64}]).json()[
        "failed"] == 0
    changed = import_manifest(installation, "acme-devices",
                              [{"serial": "SN-1", "public_key_sha256": "b" * 64}]).json()
    assert changed["results"][0]["error"] == ("serial 'SN-1' is already in this manifest "
                                              "with another key")
    assert installation.api().get("/v1/manufacturers/acme-devices").json()["manifest_size"] == 1


def test_manifest_fail_request_level(installation: Installation) -> None:
    api = installation.api()
    assert_problem(import_manifest(installation, "nobody", [{"serial": "x"}]), 404,
                   "manufacturer 'nobody' not found")
    register_manufacturer(installation, manufacturer_ca(installation))
    assert_problem(api.post("/v1/manufacturers/acme-devices/manifest", json={"rows": []}), 400)
    viewer = installation.token("viewer")
    assert_problem(import_manifest(installation, "acme-devices", [{"serial": "x"}], viewer),
                   403)


def test_idevid_builder_valid_on_clock(installation: Installation) -> None:
    """The builders the other tests rely on make what an 802.1AR device carries."""
    ca = manufacturer_ca(installation)
    cert = idevid(installation, ca, "SN-9").certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.not_valid_before_utc < installation.clock.now()
