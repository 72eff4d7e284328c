"""Revoking a firmware signer over the admin API (SQLite and PostgreSQL): its devices are
judged again at once (finding, ``updated_at``, trust score), its metadata and images no
longer count, refusals store nothing and are audited (G10), tenants stay apart (G9)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from expect import assert_problem, audit_records, last_seq
from fleet import add_org_unit

from conftest import Installation
from iotiam.attestation.metadata import sign_metadata
from iotiam.detection.models import FindingType, Severity
from iotiam.pki.keys import PrivateKey
from iotiam.serving import trust_scores_refresher

from .forge import header_of, payload_of
from .kit import FirmwareKit, firmware, image_hash, stored_state, updated_at

REVOKED = "was signed by revoked firmware signer 'vendor'"


@dataclass(frozen=True)
class Signed:
    """A kit with signer ``vendor`` (images 1.2.0, 1.4.0) and signer ``other`` (2.0.0)."""

    kit: FirmwareKit
    vendor: PrivateKey
    other: PrivateKey


@pytest.fixture
def signed(installation: Installation) -> Iterator[Signed]:
    """Two signers and their images; minimum 1.3.0."""
    kit = FirmwareKit(installation)
    vendor, other = kit.signer("vendor"), kit.signer("other")
    kit.image(vendor, "1.2.0")
    kit.image(vendor, "1.4.0")
    kit.image(other, "2.0.0")
    assert kit.rule("1.3.0").status_code == 200
    yield Signed(kit, vendor, other)


def test_revoke_ok_judges_devices_again(signed: Signed) -> None:
    kit = signed.kit
    on_vendor, on_other, below = kit.device("dev-v"), kit.device("dev-o"), kit.device("dev-b")
    assert kit.attest(on_vendor, "1.4.0")["compliant"] is True
    assert kit.attest(on_other, "2.0.0")["compliant"] is True
    assert kit.attest(below, "1.2.0")["compliant"] is False
    kit.sink.findings.clear()
    refresher = trust_scores_refresher(kit.inst.services)
    before = {d: updated_at(kit, d) for d in ("dev-v", "dev-o", "dev-b")}
    kit.inst.clock.advance(timedelta(minutes=5))
    seq = last_seq(kit.inst)

    answer = kit.revoke("vendor")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["name"], body["revoked_at"]) == ("vendor", kit.inst.clock.now().isoformat())
    assert (body["images_affected"], body["devices_changed"]) == (2, 1)

    # compliant on the revoked signer's image: no longer, and updated_at moved
    status = firmware(kit, "dev-v")
    assert status["compliant"] is False and REVOKED in status["reason"]
    assert status["image"] is None
    assert updated_at(kit, "dev-v") != before["dev-v"]
    # already non-compliant: the reason says why now, the flag and updated_at stay
    status = firmware(kit, "dev-b")
    assert status["compliant"] is False and REVOKED in status["reason"]
    assert updated_at(kit, "dev-b") == before["dev-b"]
    # the other signer's image: untouched
    assert firmware(kit, "dev-o")["compliant"] is True
    assert updated_at(kit, "dev-o") == before["dev-o"]

    (finding,) = kit.sink.findings
    assert finding.type is FindingType.FIRMWARE_NONCOMPLIANT
    assert (finding.device_id, finding.severity) == ("dev-v", Severity.HIGH)
    assert REVOKED in finding.summary
    (record,) = audit_records(kit.inst.api(), after=seq)
    assert (record["tag"], record["outcome"]) == ("admin:firmware-signer:revoked", "success")
    assert record["actor"] == body["revoked_by"]
    assert record["details"] == {"name": "vendor", "org": "root", "key_id": body["key_id"],
                                 "images_affected": 2, "devices_changed": 1}
    signers = kit.api.get("/v1/firmware/signers").json()["items"]
    assert {s["name"]: s["revoked_at"] for s in signers} == {"vendor": body["revoked_at"],
                                                             "other": None}

    # the trust refresher follows updated_at; the firmware factor says why
    kit.inst.clock.advance(timedelta(seconds=1))
    assert refresher.refresh_once() >= 1
    with kit.inst.services.database.reading() as uow:
        scores = uow.trust.for_devices(["dev-v", "dev-o"])
    assert scores["dev-o"].firmware_compliant is True
    assert scores["dev-v"].firmware_compliant is False
    (factor,) = [f for f in scores["dev-v"].factors if f.name == "firmware"]
    assert factor.delta < 0 and REVOKED in factor.detail

    # a later rule change judges the image as no longer registered
    assert kit.rule("1.0").status_code == 200
    assert firmware(kit, "dev-v")["compliant"] is False


def test_revoke_ok_its_metadata_and_images_no_longer_count(signed: Signed) -> None:
    kit = signed.kit
    assert kit.revoke("vendor").status_code == 200
    kit.sink.findings.clear()
    for kid in (True, False):
        metadata = sign_metadata(signed.vendor, device_type="sensor", version="1.5.0",
                                 sha256=image_hash("1.5.0"))
        if not kid:
            from joserfc import jwt
            from joserfc.jwk import ECKey

            header = header_of(metadata)
            del header["kid"]
            metadata = jwt.encode(header, payload_of(metadata),
                                  ECKey.import_key(signed.vendor), algorithms=["ES256"])
        before, seq = stored_state(kit.inst), last_seq(kit.inst)
        body = assert_problem(kit.add_image(metadata), 400, "firmware signer 'vendor', "
                                                            "revoked at")
        assert body["type"] == "urn:iotiam:problem:invalid-firmware-metadata"
        assert stored_state(kit.inst) == before
        assert [r["tag"] for r in audit_records(kit.inst.api(), after=seq)] == [
            "admin:firmware:refused"]

    # new evidence naming its image: non-compliant (high); another signer's: compliant
    verdict = kit.attest(kit.device("dev-new"), "1.4.0")
    assert verdict["compliant"] is False and REVOKED in verdict["reason"]
    assert verdict["image"] is None
    (finding,) = kit.sink.findings
    assert finding.severity is Severity.HIGH
    assert kit.attest(kit.device("dev-live"), "2.0.0")["compliant"] is True


def test_revoke_ok_resigned_build_takes_the_revoked_image_place(signed: Signed) -> None:
    kit = signed.kit
    device = kit.device("dev-v")
    assert kit.attest(device, "1.4.0")["compliant"] is True
    (old,) = [i for i in kit.api.get("/v1/firmware/images").json()["items"]
              if i["version"] == "1.4.0"]
    assert kit.revoke("vendor").status_code == 200
    assert kit.attest(device, "1.4.0")["compliant"] is False

    renewed = kit.signer("vendor-2")
    seq = last_seq(kit.inst)
    image = kit.image(renewed, "1.4.0")
    assert image["id"] == old["id"] and image["signer"] != old["signer"]
    versions = [i["version"] for i in kit.api.get("/v1/firmware/images").json()["items"]]
    assert versions.count("1.4.0") == 1
    (record,) = audit_records(kit.inst.api(), after=seq)
    assert record["details"]["replaced"] == {"sha256": image_hash("1.4.0"), "signer": "vendor"}
    assert kit.attest(device, "1.4.0")["compliant"] is True
    # a live signer's image is never replaced
    again = sign_metadata(renewed, device_type="sensor", version="1.4.0",
                          sha256=image_hash("1.4.0"))
    assert_problem(kit.add_image(again), 409, "already registered")


def test_revoke_ok_in_an_org_unit_below(installation: Installation) -> None:
    kit = FirmwareKit(installation)
    add_org_unit(kit.api, "acme", "tenant")
    acme = installation.token("admin", "acme")
    kit.signer("vendor")
    kit.signer("vendor", org="acme")  # the same name, another org unit
    kit.signer("acme-own", token=acme)
    answer = kit.revoke("vendor", org="acme")
    assert answer.status_code == 200, answer.text
    assert answer.json()["org"] == "acme"
    assert kit.revoke("acme-own", token=acme).status_code == 200
    signers = kit.api.get("/v1/firmware/signers").json()["items"]
    assert {(s["org"], s["name"]): s["revoked_at"] is not None for s in signers} == {
        ("root", "vendor"): False, ("acme", "vendor"): True, ("acme", "acme-own"): True}


def test_revoke_fail_a_revoked_key_is_never_registered_again(signed: Signed) -> None:
    kit = signed.kit
    add_org_unit(kit.api, "acme", "tenant")
    acme = kit.inst.token("admin", "acme")
    assert kit.revoke("vendor").status_code == 200
    before = stored_state(kit.inst)
    for org, token in ((None, None), ("acme", None), (None, acme)):
        answer = kit.add_signer("vendor-again", signed.vendor, org=org, token=token)
        assert_problem(answer, 409, "was revoked as firmware signer 'vendor'")
    assert stored_state(kit.inst) == before
    # another key under the new name is fine
    kit.signer("vendor-again", org="acme")


REFUSALS = [
    ("viewer", 403, "admin role"),
    ("unknown", 404, "firmware signer 'nope' not found"),
    ("bad-name", 400, "not valid"),
    ("twice", 409, "already revoked"),
    ("tenant-by-name", 404, "firmware signer 'vendor' not found in org unit 'acme'"),
    ("tenant-by-org", 404, "org unit 'root' not found"),
    ("other-tenant", 404, "org unit 'globex' not found"),
]


@pytest.mark.parametrize(("case", "status", "detail"), REFUSALS,
                         ids=[f"fail/{case}" for case, _, _ in REFUSALS])
def test_revoke_fail_refused(signed: Signed, case: str, status: int, detail: str) -> None:
    """G9/G10: a 4xx, nothing revoked or re-judged, one refusal record."""
    kit = signed.kit
    for tenant in ("acme", "globex"):
        add_org_unit(kit.api, tenant, "tenant")
    kit.signer("globex-signer", token=kit.inst.token("admin", "globex"))
    assert kit.attest(kit.device("dev-v"), "1.4.0")["compliant"] is True
    acme = kit.inst.token("admin", "acme")
    name, org, token = "vendor", None, None
    if case == "viewer":
        token = kit.inst.token("viewer")
    elif case == "unknown":
        name = "nope"
    elif case == "bad-name":
        name = "no%20spaces"
    elif case == "twice":
        assert kit.revoke("vendor").status_code == 200
    elif case == "tenant-by-name":
        token = acme
    elif case == "tenant-by-org":
        org, token = "root", acme
    else:
        name, org, token = "globex-signer", "globex", acme
    kit.sink.findings.clear()
    before, seq = stored_state(kit.inst), last_seq(kit.inst)
    assert_problem(kit.revoke(name, org, token), status, detail)
    assert stored_state(kit.inst) == before
    (record,) = audit_records(kit.inst.api(), after=seq)
    assert record["tag"] == "admin:firmware:refused" and record["outcome"] != "success"
    assert record["details"]["action"] == "revoke-signer"
    assert kit.sink.findings == []
