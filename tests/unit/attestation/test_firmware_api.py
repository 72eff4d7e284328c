"""Firmware signers, images and rules over the admin API (SQLite and PostgreSQL):
refusals are clear, store nothing and are audited (G10); tenants stay apart (G9)."""

from __future__ import annotations

import pytest
from expect import assert_problem, audit_records, last_seq
from fleet import add_org_unit
from sqlalchemy import func, select

from conftest import Installation
from iotiam.attestation.metadata import sign_metadata
from iotiam.storage.tables.attestation import firmware_images, firmware_rules, firmware_signers
from iotiam.testing import make_key

from .forge import forge
from .kit import FirmwareKit, image_hash


def firmware_rows(inst: Installation) -> dict[str, int]:
    tables = (firmware_signers, firmware_images, firmware_rules)
    with inst.services.database.engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in tables}


def assert_refused(kit: FirmwareKit, answer: object, status: int, detail: str,
                   before: dict[str, int], seq: int) -> None:
    assert_problem(answer, status, detail)  # type: ignore[arg-type]
    assert firmware_rows(kit.inst) == before
    new = audit_records(kit.inst.api(), after=seq)
    assert [r["tag"] for r in new] == ["admin:firmware:refused"], new


def test_signer_and_image_ok(installation: Installation) -> None:
    kit = FirmwareKit(installation)
    seq = last_seq(installation)
    key = kit.signer("vendor", make_key("ed25519"))
    signers = kit.api.get("/v1/firmware/signers").json()["items"]
    assert [(s["name"], s["algorithm"], s["org"]) for s in signers] == [
        ("vendor", "EdDSA", "root")]
    image = kit.image(key, "2.0.0-rc.1")
    assert (image["device_type"], image["version"], image["sha256"]) == (
        "sensor", "2.0.0-rc.1", image_hash("2.0.0-rc.1"))
    listed = kit.api.get("/v1/firmware/images", params={"type": "sensor"}).json()["items"]
    assert [i["id"] for i in listed] == [image["id"]]
    assert kit.api.get("/v1/firmware/images", params={"type": "gateway"}).json()["items"] == []
    tags = [r["tag"] for r in audit_records(installation.api(), after=seq)]
    assert tags == ["admin:firmware-signer:registered", "admin:firmware:registered"]


def test_image_fail_duplicate_version(installation: Installation) -> None:
    kit = FirmwareKit(installation)
    key = kit.signer()
    kit.image(key, "1.0")
    again = sign_metadata(key, device_type="sensor", version="1.0.0", sha256=image_hash("x"))
    before, seq = firmware_rows(installation), last_seq(installation)
    assert_refused(kit, kit.add_image(again), 409, "another hash", before, seq)


@pytest.mark.parametrize("case", ["unsigned-object", "unsigned-text", "alg-none",
                                  "unregistered-key", "malformed-hash", "unknown-type",
                                  "tampered"], ids=lambda c: f"fail/{c}")
def test_image_fail_refused(installation: Installation, case: str) -> None:
    kit = FirmwareKit(installation)
    key = kit.signer()
    good = {"device_type": "sensor", "version": "1.0", "sha256": image_hash("1.0")}
    metadata: object
    if case == "unsigned-object":
        metadata, detail = good, "unsigned metadata is refused"
    elif case == "unsigned-text":
        metadata, detail = '{"device_type": "sensor"}', "unsigned metadata is refused"
    elif case == "alg-none":
        metadata, detail = forge({"alg": "none"}, good), "not accepted"
    elif case == "unregistered-key":
        metadata = sign_metadata(make_key(), device_type="sensor", version="1.0",
                                 sha256=image_hash("1.0"))
        detail = "not signed by a firmware signer registered"
    elif case == "malformed-hash":
        from joserfc import jwt
        from joserfc.jwk import ECKey

        metadata = jwt.encode({"alg": "ES256"}, {**good, "sha256": "1234"},
                              ECKey.import_key(key), algorithms=["ES256"])
        detail = "64 hex digits"
    elif case == "unknown-type":
        metadata = sign_metadata(key, device_type="toaster", version="1.0",
                                 sha256=image_hash("1.0"))
        detail = "device type 'toaster' not found"
    else:
        token = sign_metadata(key, device_type="sensor", version="1.0",
                              sha256=image_hash("1.0"))
        head, _, sig = token.split(".")
        metadata = ".".join([head, forge({}, {**good, "version": "9"}).split(".")[1], sig])
        detail = "does not verify"
    before, seq = firmware_rows(installation), last_seq(installation)
    status = 404 if case == "unknown-type" else 400
    assert_refused(kit, kit.add_image(metadata), status, detail, before, seq)


@pytest.mark.parametrize(("kind", "detail"), [("rsa-2048", "3072"), ("ec-p384", "P-256")],
                         ids=["fail/rsa-2048", "fail/p-384"])
def test_signer_fail_weak_key(installation: Installation, kind: str, detail: str) -> None:
    kit = FirmwareKit(installation)
    before, seq = firmware_rows(installation), last_seq(installation)
    assert_refused(kit, kit.add_signer("weak", make_key(kind)), 400, detail, before, seq)


def test_signer_fail_duplicate(installation: Installation) -> None:
    kit = FirmwareKit(installation)
    key = kit.signer("vendor")
    before, seq = firmware_rows(installation), last_seq(installation)
    assert_refused(kit, kit.add_signer("vendor", make_key()), 409, "already exists", before,
                   seq)
    seq = last_seq(installation)
    assert_refused(kit, kit.add_signer("again", key), 409, "already a firmware signer",
                   before, seq)


def test_register_fail_viewer(installation: Installation) -> None:
    kit = FirmwareKit(installation)
    viewer = installation.token("viewer")
    before, seq = firmware_rows(installation), last_seq(installation)
    assert_refused(kit, kit.add_signer("v", make_key(), token=viewer), 403, "admin role",
                   before, seq)
    seq = last_seq(installation)
    assert_refused(kit, kit.rule("1.0", token=viewer), 403, "admin role", before, seq)


@pytest.mark.parametrize("version", ["latest", "1..2", ""], ids=lambda v: f"fail/{v!r}")
def test_rule_fail_bad_version(installation: Installation, version: str) -> None:
    kit = FirmwareKit(installation)
    before, seq = firmware_rows(installation), last_seq(installation)
    assert_refused(kit, kit.rule(version), 400, "not valid", before, seq)


def test_rule_fail_unknown_type(installation: Installation) -> None:
    kit = FirmwareKit(installation)
    before, seq = firmware_rows(installation), last_seq(installation)
    assert_refused(kit, kit.rule("1.0", device_type="toaster"), 404, "not found", before, seq)


def test_tenants_ok_isolated(installation: Installation) -> None:
    """G9: each tenant sees its own; another tenant's key is an unknown key; a root signer
    and a root rule cover every tenant; a tenant can raise the minimum, never lower it."""
    kit = FirmwareKit(installation)
    api = installation.api()
    for tenant in ("acme", "globex"):
        add_org_unit(api, tenant, "tenant")
    acme, globex = installation.token("admin", "acme"), installation.token("admin", "globex")
    acme_key = kit.signer("acme-signer", token=acme)
    globex_key = kit.signer("globex-signer", token=globex)
    root_key = kit.signer("platform")
    kit.image(acme_key, "1.0", token=acme)

    # globex signs, acme registers: refused like any unknown key
    before, seq = firmware_rows(installation), last_seq(installation)
    foreign = sign_metadata(globex_key, device_type="sensor", version="2.0",
                            sha256=image_hash("2.0"))
    assert_refused(kit, kit.add_image(foreign, token=acme), 400,
                   "not signed by a firmware signer registered", before, seq)
    # acme cannot put anything into globex's org unit
    before, seq = firmware_rows(installation), last_seq(installation)
    assert_refused(kit, kit.add_image(foreign, org="globex", token=acme), 404, "not found",
                   before, seq)
    seq = last_seq(installation)
    assert_refused(kit, kit.rule("9.0", org="globex", token=acme), 404, "not found", before,
                   seq)
    # the platform's signer covers acme's subtree
    kit.image(root_key, "1.1", token=acme)

    names = {s["name"] for s in kit.inst.api(acme).get("/v1/firmware/signers").json()["items"]}
    assert names == {"acme-signer"}
    images = kit.inst.api(globex).get("/v1/firmware/images").json()["items"]
    assert images == []
    assert len(kit.inst.api(acme).get("/v1/firmware/images").json()["items"]) == 2

    # minimums: root 1.0, acme raises to 1.1; globex cannot see acme's rule
    assert kit.rule("1.0").status_code == 200
    assert kit.rule("1.1", token=acme).status_code == 200
    assert kit.inst.api(acme).get("/v1/firmware/rules/sensor").json()["min_version"] == "1.1"
    globex_view = kit.inst.api(globex).get("/v1/firmware/rules/sensor").json()
    assert globex_view["min_version"] == "1.0" and globex_view["items"] == []
    # acme lowering below the root's minimum changes nothing in force
    assert kit.rule("0.5", token=acme).status_code == 200
    assert kit.inst.api(acme).get("/v1/firmware/rules/sensor").json()["min_version"] == "1.0"

    # device firmware status across tenants: 404
    kit.device("globex-dev", org="globex")
    assert_problem(kit.inst.api(acme).get("/v1/devices/globex-dev/firmware"), 404)
    status = kit.inst.api(globex).get("/v1/devices/globex-dev/firmware").json()
    assert status["attested"] is False and status["compliant"] is None
