"""The SQL firmware store on SQLite and PostgreSQL: subtree queries, single-use nonces,
status upserts that move a device's ``updated_at`` only when compliance changes, signer
revocation that happens once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from fleet import add_device, add_org_unit

from conftest import Installation
from iotiam.attestation.models import (
    AttestationNonce,
    FirmwareImage,
    FirmwareRule,
    FirmwareSigner,
    FirmwareStatus,
    SignerAlgorithm,
)
from iotiam.storage.attestation_store import ancestor_paths


def test_ancestor_paths_ok() -> None:
    assert ancestor_paths("/root/") == ["/root/"]
    assert ancestor_paths("/root/acme/berlin/") == ["/root/", "/root/acme/",
                                                     "/root/acme/berlin/"]


def test_nonce_ok_used_once(installation: Installation) -> None:
    add_device(installation.api(), "dev-n")
    database, now = installation.services.database, installation.clock.now()
    with database() as uow:
        uow.firmware.add_nonce(AttestationNonce("h" * 64, "dev-n", now,
                                                now + timedelta(seconds=120)))
        assert uow.firmware.open_nonces("dev-n", now) == 1
    with database() as uow:
        assert not uow.firmware.use_nonce("h" * 64, "other", now)
        assert not uow.firmware.use_nonce("h" * 64, "dev-n", now + timedelta(seconds=120))
        assert uow.firmware.use_nonce("h" * 64, "dev-n", now)
        assert not uow.firmware.use_nonce("h" * 64, "dev-n", now)
    with database() as uow:
        stored = uow.firmware.nonce("h" * 64)
        assert stored is not None and stored.used_at == now
        assert uow.firmware.open_nonces("dev-n", now) == 0
        assert uow.firmware.purge_nonces("dev-n", now) == 1
        assert uow.firmware.nonce("h" * 64) is None


def test_status_ok_moves_updated_at_on_change_only(installation: Installation) -> None:
    add_device(installation.api(), "dev-s")
    database, clock = installation.services.database, installation.clock

    def updated_at() -> object:
        with database.reading() as uow:
            device = uow.devices.get("dev-s")
            assert device is not None
            return device.updated_at

    status = FirmwareStatus("dev-s", "1.0", "a" * 64, True, "ok", clock.now())
    for compliant, expect_change in ((True, True), (True, False), (False, True),
                                     (False, False), (True, True)):
        clock.advance(timedelta(seconds=10))
        before = updated_at()
        with database() as uow:
            changed = uow.firmware.put_status(
                FirmwareStatus(**{**status.__dict__, "compliant": compliant,
                                  "attested_at": clock.now()}), clock.now())
        assert changed is expect_change
        assert (updated_at() == clock.now()) if expect_change else (updated_at() == before)
    with database.reading() as uow:
        assert set(uow.firmware.statuses(["dev-s", "nope"])) == {"dev-s"}
        assert uow.firmware.statuses([]) == {}
        ((stored, path),) = uow.firmware.statuses_of_type("sensor", "/root/")
        assert stored.compliant and path == "/root/"
        assert uow.firmware.statuses_of_type("gateway", "/root/") == []


def test_rules_ok_subtree_queries(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    database, now = installation.services.database, installation.clock.now()
    with database() as uow:
        for unit, path, version in (("root", "/root/", "1.0"), ("acme", "/root/acme/", "2.0"),
                                    ("globex", "/root/globex/", "3.0")):
            assert uow.firmware.put_rule(FirmwareRule(unit, path, "sensor", version, now,
                                                      "t")) is None
        previous = uow.firmware.put_rule(FirmwareRule("acme", "/root/acme/", "sensor", "2.5",
                                                      now, "t"))
        assert previous is not None and previous.min_version == "2.0"
    with database.reading() as uow:
        over = {r.min_version for r in uow.firmware.rules_over("/root/acme/", "sensor")}
        assert over == {"1.0", "2.5"}
        under = {r.org_unit_id for r in uow.firmware.rules_under("/root/acme/")}
        assert under == {"acme"}
        assert len(uow.firmware.rules_under("/root/")) == 3


def test_signer_ok_revoked_once_and_its_images_found(installation: Installation) -> None:
    add_device(installation.api(), "dev-r")
    database, clock = installation.services.database, installation.clock
    now = clock.now()

    def signer(name: str) -> FirmwareSigner:
        return FirmwareSigner(f"id-{name}", name, "root", "/root/", SignerAlgorithm.ES256,
                              "pem", name * 8, now, "t")

    def image(name: str, signer_id: str) -> FirmwareImage:
        return FirmwareImage(f"img-{name}", "sensor", name, name[0] * 64, "root", "/root/",
                             signer_id, "jws", now, "t")

    with database() as uow:
        for name in ("a", "b"):
            uow.firmware.add_signer(signer(name))
        uow.firmware.add_image(image("1.0", "id-a"))
        uow.firmware.add_image(image("2.0", "id-b"))
        uow.firmware.put_status(FirmwareStatus("dev-r", "1.0", "1" * 64, True, "ok", now,
                                               image_id="img-1.0"), now)
    clock.advance(timedelta(seconds=10))
    with database() as uow:
        assert uow.firmware.revoke_signer("id-a", clock.now(), "alice")
        assert not uow.firmware.revoke_signer("id-a", clock.now(), "bob")
    with database.reading() as uow:
        a, b = uow.firmware.signer_by_name("root", "a"), uow.firmware.signer_by_name("root", "b")
        assert a is not None and (a.revoked_at, a.revoked_by) == (clock.now(), "alice")
        assert b is not None and (b.revoked_at, b.revoked_by) == (None, None)
        assert [i.id for i in uow.firmware.images_of_signer("id-a")] == ["img-1.0"]
        assert [s.device_id for s in uow.firmware.statuses_of_signer("id-a")] == ["dev-r"]
        assert uow.firmware.statuses_of_signer("id-b") == []
    with database() as uow:
        uow.firmware.replace_image(replace(image("1.0", "id-b"), sha256="f" * 64))
    with database.reading() as uow:
        stored = {i.id: i for i in uow.firmware.images_of_signer("id-b")}
        assert set(stored) == {"img-1.0", "img-2.0"}
        assert stored["img-1.0"].sha256 == "f" * 64
        assert uow.firmware.images_of_signer("id-a") == []


def test_status_ok_unmatched_found_by_type_subtree_and_hash(
        installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    for device_id, org, device_type in (("dev-a", "acme", "sensor"),
                                        ("dev-upper", "acme", "sensor"),
                                        ("dev-matched", "acme", "sensor"),
                                        ("dev-other-hash", "acme", "sensor"),
                                        ("dev-gateway", "acme", "gateway"),
                                        ("dev-globex", "globex", "sensor")):
        add_device(api, device_id, device_type, org=org)
    database, now = installation.services.database, installation.clock.now()
    with database() as uow:
        uow.firmware.add_signer(FirmwareSigner("s", "s", "root", "/root/",
                                               SignerAlgorithm.ES256, "pem", "k" * 64,
                                               now, "t"))
        uow.firmware.add_image(FirmwareImage("img", "sensor", "1.0", "a" * 64, "root",
                                             "/root/", "s", "jws", now, "t"))
        for device_id, fw_hash, image_id in (
                ("dev-a", "a" * 64, None), ("dev-upper", "A" * 64, None),
                ("dev-matched", "a" * 64, "img"), ("dev-other-hash", "b" * 64, None),
                ("dev-gateway", "a" * 64, None), ("dev-globex", "a" * 64, None)):
            uow.firmware.put_status(FirmwareStatus(device_id, "1.0", fw_hash, False, "no",
                                                   now, image_id=image_id), now)
    with database.reading() as uow:
        found = uow.firmware.unmatched_statuses("sensor", "/root/acme/", "A" * 32 + "a" * 32)
        assert [(s.device_id, path) for s, path in found] == [("dev-a", "/root/acme/"),
                                                               ("dev-upper", "/root/acme/")]
        assert uow.firmware.unmatched_statuses("sensor", "/root/acme/", "c" * 64) == []
