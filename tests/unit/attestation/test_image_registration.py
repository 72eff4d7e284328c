"""Registering a firmware image over the admin API (SQLite and PostgreSQL) judges again,
at once, the devices it covers that attested this very build while it matched no live
image (``updated_at``, trust score, audit); every other status is left alone, and a
refused registration changes none."""

from __future__ import annotations

from datetime import timedelta

import pytest
from expect import assert_problem, audit_records, last_seq
from fleet import add_org_unit

from conftest import Installation
from iotiam.attestation.metadata import sign_metadata
from iotiam.serving import trust_scores_refresher
from iotiam.testing import make_key

from .kit import FirmwareKit, firmware, image_hash, stored_state, updated_at

UNKNOWN = "no registered firmware image of sensor version 1.4.0"
NO_MINIMUM = "a registered signed image; no minimum version is set for sensor"


def test_register_ok_devices_that_ran_the_build_become_compliant(
        installation: Installation) -> None:
    kit = FirmwareKit(installation)
    add_org_unit(kit.api, "acme", "tenant")
    add_org_unit(kit.api, "berlin", "site", parent="acme")
    add_org_unit(kit.api, "globex", "tenant")
    vendor = kit.signer("vendor")
    devices = {"dev-a": kit.device("dev-a", org="acme"),
               "dev-b": kit.device("dev-b", org="berlin")}
    assert kit.attest(devices["dev-a"], "1.4.0")["reason"] == UNKNOWN
    # "1.4" is version 1.4.0 (the comparison is the versions', not the texts')
    verdict = kit.attest(devices["dev-b"], "1.4", fw_hash=image_hash("1.4.0"))
    assert verdict["compliant"] is False and verdict["image"] is None
    others = {"dev-globex": ("globex", "sensor", "1.4.0", image_hash("1.4.0")),
              "dev-gateway": ("acme", "gateway", "1.4.0", image_hash("1.4.0")),
              "dev-hash": ("acme", "sensor", "1.4.0", image_hash("tampered")),
              "dev-version": ("acme", "sensor", "1.4.1", image_hash("1.4.0"))}
    for device_id, (org, device_type, version, fw_hash) in others.items():
        device = kit.device(device_id, org=org, device_type=device_type)
        assert kit.attest(device, version, fw_hash=fw_hash)["compliant"] is False
    refresher = trust_scores_refresher(kit.inst.services)
    assert refresher.refresh_once() >= 1
    kit.sink.findings.clear()
    before = stored_state(kit.inst)
    kit.inst.clock.advance(timedelta(minutes=5))
    seq = last_seq(kit.inst)

    image = kit.image(vendor, "1.4.0", org="acme")
    assert image["devices_changed"] == 2 and image["version"] == "1.4.0"

    for device_id in devices:
        status = firmware(kit, device_id)
        assert (status["compliant"], status["reason"], status["image"]) == (
            True, NO_MINIMUM, image["id"])
        assert updated_at(kit, device_id) == kit.inst.clock.now().isoformat()
    after = stored_state(kit.inst)
    for table in ("statuses", "devices"):
        untouched = [row for row in after[table] if row[0] in others]
        assert untouched == [row for row in before[table] if row[0] in others]
    assert kit.sink.findings == []
    (record,) = audit_records(kit.inst.api(), after=seq)
    assert (record["tag"], record["outcome"]) == ("admin:firmware:registered", "success")
    assert record["details"]["devices_changed"] == 2

    # the trust refresher follows updated_at: the firmware factor is gone
    kit.inst.clock.advance(timedelta(seconds=1))
    assert refresher.refresh_once() >= 2
    with kit.inst.services.database.reading() as uow:
        scores = uow.trust.for_devices(["dev-a", "dev-b", "dev-hash"])
    for device_id in devices:
        assert scores[device_id].firmware_compliant is True
        assert [f for f in scores[device_id].factors if f.name == "firmware"] == []
    assert scores["dev-hash"].firmware_compliant is False


def test_register_ok_below_the_minimum_names_the_image(installation: Installation) -> None:
    kit = FirmwareKit(installation)
    vendor = kit.signer("vendor")
    assert kit.rule("2.0").status_code == 200
    device = kit.device("dev-a")
    assert kit.attest(device, "1.4.0")["reason"] == UNKNOWN
    assert len(kit.sink.findings) == 1  # raised once, when it attested
    kit.sink.findings.clear()
    before = updated_at(kit, "dev-a")
    kit.inst.clock.advance(timedelta(minutes=5))
    seq = last_seq(kit.inst)

    image = kit.image(vendor, "1.4.0")
    # re-judged, but still non-compliant: no flip to count, no second finding
    assert image["devices_changed"] == 0
    status = firmware(kit, "dev-a")
    assert (status["compliant"], status["reason"], status["image"]) == (
        False, "version 1.4.0 is below the minimum 2.0 for sensor", image["id"])
    assert updated_at(kit, "dev-a") == before
    assert kit.sink.findings == []
    (record,) = audit_records(kit.inst.api(), after=seq)
    assert record["details"]["devices_changed"] == 0
    # now naming the image, a lower minimum makes it compliant
    assert kit.rule("1.0").status_code == 200
    assert firmware(kit, "dev-a")["compliant"] is True


def test_register_ok_leaves_statuses_naming_an_image_alone(
        installation: Installation) -> None:
    kit = FirmwareKit(installation)
    add_org_unit(kit.api, "acme", "tenant")
    vendor = kit.signer("vendor")
    platform = kit.image(vendor, "1.4.0")
    assert kit.attest(kit.device("dev-a", org="acme"), "1.4.0")["image"] == platform["id"]
    before = stored_state(kit.inst)["statuses"]

    # the same build registered again below: the device keeps the image it matched
    image = kit.image(vendor, "1.4.0", org="acme")
    assert image["id"] != platform["id"] and image["devices_changed"] == 0
    assert stored_state(kit.inst)["statuses"] == before


def test_register_ok_resigned_build_counts_at_once(installation: Installation) -> None:
    kit = FirmwareKit(installation)
    vendor = kit.signer("vendor")
    old = kit.image(vendor, "1.4.0")
    for device_id in ("dev-a", "dev-b"):
        assert kit.attest(kit.device(device_id), "1.4.0")["compliant"] is True
    assert kit.revoke("vendor").json()["devices_changed"] == 2
    assert firmware(kit, "dev-a")["image"] is None
    kit.sink.findings.clear()
    kit.inst.clock.advance(timedelta(minutes=5))

    image = kit.image(kit.signer("vendor-2"), "1.4.0")
    assert image["id"] == old["id"] and image["devices_changed"] == 2
    for device_id in ("dev-a", "dev-b"):
        status = firmware(kit, device_id)
        assert (status["compliant"], status["reason"], status["image"]) == (
            True, NO_MINIMUM, image["id"])
        assert updated_at(kit, device_id) == kit.inst.clock.now().isoformat()
    assert kit.sink.findings == []


REFUSALS = [("unknown-key", 400, "not signed by a firmware signer registered"),
            ("bad-signature", 400, "does not verify"),
            ("revoked-signer", 400, "revoked"),
            ("unknown-type", 404, "device type 'toaster' not found")]


@pytest.mark.parametrize(("case", "status", "detail"), REFUSALS,
                         ids=[f"fail/{case}" for case, _, _ in REFUSALS])
def test_register_fail_refused_judges_nothing(installation: Installation, case: str,
                                              status: int, detail: str) -> None:
    kit = FirmwareKit(installation)
    vendor = kit.signer("vendor")
    assert kit.attest(kit.device("dev-a"), "1.4.0")["reason"] == UNKNOWN
    device_type = "sensor"
    if case == "unknown-key":
        vendor = make_key()
    elif case == "revoked-signer":
        assert kit.revoke("vendor").status_code == 200
    elif case == "unknown-type":
        device_type = "toaster"
    metadata = sign_metadata(vendor, device_type=device_type, version="1.4.0",
                             sha256=image_hash("1.4.0"))
    if case == "bad-signature":  # the vendor signed 1.4.1; the payload says 1.4.0
        signed = sign_metadata(vendor, device_type="sensor", version="1.4.1",
                               sha256=image_hash("1.4.1")).split(".")
        metadata = ".".join([signed[0], metadata.split(".")[1], signed[2]])
    kit.sink.findings.clear()
    before, seq = stored_state(kit.inst), last_seq(kit.inst)
    kit.inst.clock.advance(timedelta(minutes=5))

    assert_problem(kit.add_image(metadata), status, detail)
    assert stored_state(kit.inst) == before
    assert [r["tag"] for r in audit_records(kit.inst.api(), after=seq)] == [
        "admin:firmware:refused"]
    assert kit.sink.findings == []
