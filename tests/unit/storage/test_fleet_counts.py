"""The maintained counts (device_counts, device_credentials) always equal a full recount
of the devices and their credentials (certificates, PSKs, OAuth clients), after every
kind of write and as time passes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fleet import add_device, add_org_unit, issue, revoke
from sqlalchemy import select

from conftest import Installation
from iotiam.credentials.models import Psk, PskStatus
from iotiam.inventory.credential_status import (
    HeldCredential,
    credential_status_by_device,
    credential_tally,
    held_certificate,
    held_client,
    held_psk,
)
from iotiam.inventory.models import CredentialStatus, DeviceTally
from iotiam.inventory.ports import InventoryUnitOfWork
from iotiam.kernel import ROOT_PATH
from iotiam.pki.keys import generate_private_key
from iotiam.pki.models import KeyAlgorithm
from iotiam.storage.credential_standing import day_bucket
from iotiam.storage.fleet_counts import recount
from iotiam.storage.tables import inventory

DAY = timedelta(days=1)
#: (rotation age, expiring window) pairs the report is asked with
QUESTIONS = [(timedelta(days=30), None), (DAY, None), (timedelta(days=2), DAY),
             (timedelta(hours=1), timedelta(days=7))]


def mixed_workload(installation: Installation) -> None:
    """One of every write that moves a count: single adds, a bulk import (with a bad
    row), state changes, decommissioning, issuance (same key, new key), revocation, a
    transfer; the clock moves between them."""
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    add_org_unit(api, "acme-plant", "site", parent="acme")
    for n in range(4):
        add_device(api, f"root-{n}", "sensor" if n % 2 else "gateway")
    rows = [{"id": f"imp-{n}", "type": ("sensor", "gateway", "controller")[n % 3],
             "org": ("acme", "acme-plant", "globex")[n % 3], "site": f"hall-{n % 2}"}
            for n in range(12)]
    rows.append({"id": "imp-bad", "type": "no-such-type"})
    answer = api.post("/v1/devices/import",
                      json={"rows": [{"row": n, "data": d} for n, d in enumerate(rows)]})
    assert answer.status_code == 200 and answer.json()["imported"] == 12, answer.text
    key = generate_private_key(KeyAlgorithm.EC_P256)
    issue(api, "imp-0", key)
    issue(api, "imp-1")
    issue(api, "imp-2")
    issue(api, "root-1")
    revoke(api, issue(api, "imp-3")["serial"])
    installation.clock.advance(DAY / 2)
    issue(api, "imp-0", key)  # renewed onto the same key: the key's age keeps counting
    issue(api, "imp-4")
    issue(api, "imp-5")
    for device_id, state in [("root-0", "active"), ("imp-6", "active"),
                             ("imp-4", "quarantined"), ("imp-5", "decommissioned"),
                             ("root-1", "suspended")]:
        answer = api.post(f"/v1/devices/{device_id}/state", json={"state": state})
        assert answer.status_code == 200, answer.text
    answer = api.post("/v1/devices/imp-1/transfer", json={"to": "globex"})
    assert answer.status_code == 200, answer.text
    installation.clock.advance(DAY)  # the sensors' 24 h certificates lapse
    issue(api, "imp-2")  # a gateway renewed onto a new key
    # gateways' lifetime cut to a day, their key age to two: root-0's newest
    # certificate ends before the 7-day one it holds already (judged from both)
    issue(api, "root-0")
    answer = api.put("/v1/device-types/gateway/rotation", json={
        "certificate_lifetime_seconds": 86400, "max_credential_age_seconds": 2 * 86400})
    assert answer.status_code == 200, answer.text
    installation.clock.advance(timedelta(hours=1))
    issue(api, "root-0")


def other_kinds_workload(installation: Installation,
                         check: Callable[[Installation], None]) -> None:
    """The mixed workload, then PSKs and OAuth clients: issued with and without a
    lifetime, rotated, revoked, a scheduled rotation's next key made, its overlap set and
    the key promoted, clients registered and revoked, beside certificates or alone;
    ``check`` runs while the next key waits."""
    mixed_workload(installation)
    api = installation.api()
    for device_id in ("psk-0", "psk-1", "psk-2", "client-0", "client-1"):
        add_device(api, device_id)

    def ok(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = api.post(path, json=body or {})
        assert answer.status_code in (200, 201), answer.text
        found: dict[str, Any] = answer.json()
        return found

    ok("/v1/devices/psk-0/psk")  # no lifetime: active, then older than the rotation age
    ok("/v1/devices/psk-1/psk", {"lifetime_seconds": 3 * 86400})  # expiring, then expired
    ok("/v1/devices/psk-2/psk")
    ok("/v1/devices/psk-2/psk/revoke", {"reason": "keyCompromise"})
    ok("/v1/devices/imp-3/psk")  # its certificate was revoked: the PSK decides
    ok("/v1/oauth/clients", {"device": "client-0"})  # a client alone decides
    ok("/v1/oauth/clients", {"device": "client-1"})
    ok("/v1/oauth/clients/client-1/revoke")
    ok("/v1/oauth/clients", {"device": "imp-2"})  # beside a certificate: it decides
    installation.clock.advance(DAY / 2)
    ok("/v1/devices/psk-2/psk")  # a new key after a revoked one
    now = installation.clock.now()
    with installation.services.database() as uow:  # a scheduled rotation with overlap
        current = uow.psks.active_for_device("psk-0")
        assert current is not None
        uow.psks.add(Psk(id="next0", identity="psk-0.next0", device_id="psk-0",
                         org_path=current.org_path, encrypted_key=b"sealed",
                         status=PskStatus.NEXT, created_at=now, expires_at=None))
        assert uow.psks.set_expiry(current.id, now + DAY)
    check(installation)
    installation.clock.advance(DAY / 4)
    with installation.services.database() as uow:  # the child used its next key
        current = uow.psks.active_for_device("psk-0")
        assert current is not None
        assert uow.psks.revoke(current.id, installation.clock.now(), "superseded", "next0")
        assert uow.psks.promote("next0")


def held_credentials(uow: InventoryUnitOfWork | Any) -> list[HeldCredential]:
    """Every credential of every device, as the credential status judges it."""
    devices = [d.id for d in uow.devices.iter_all(org_path=ROOT_PATH)]
    found = [*map(held_certificate, uow.certificates.iter_device_certificates(
        org_path=ROOT_PATH)),
             *map(held_psk, [p for ps in uow.psks.for_devices(devices).values() for p in ps]),
             *map(held_client, uow.oauth_clients.list_under(org_path=ROOT_PATH, limit=10**5))]
    return [held for held in found if held is not None]


def recounted_devices(installation: Installation, org_path: str) -> list[DeviceTally]:
    with installation.services.database.reading() as uow:
        counted = Counter((d.org_path, d.type_name, str(d.state), d.site or "")
                          for d in uow.devices.iter_all(org_path=org_path))
    return [DeviceTally(*key, count=n) for key, n in sorted(counted.items())]


def compare_all(installation: Installation) -> None:
    """Every maintained count equals the recount, in every subtree, for every question."""
    now = installation.clock.now()
    with installation.services.database.reading() as uow:
        # the day buckets count the holders' rows exactly
        rows = uow.conn.execute(select(inventory.device_credentials)).mappings()
        counted = Counter(day_bucket(r) for r in rows)
        buckets = {tuple(r[:-1]): r[-1] for r in uow.conn.execute(
            select(inventory.device_credential_days)) if r[-1]}
        assert buckets == counted
        max_age = {t.name: t.rotation.max_credential_age for t in uow.device_types.list_all()}
        certificates = held_credentials(uow)
        for org_path in (ROOT_PATH, "/root/acme/", "/root/acme/acme-plant/", "/root/globex/"):
            assert uow.fleet_counts.device_tallies(org_path=org_path) == recounted_devices(
                installation, org_path)
            devices = list(uow.devices.iter_all(org_path=org_path))
            assert uow.devices.count(org_path=org_path) == len(devices)
            for rotation_age, expiring_within in QUESTIONS:
                expected = credential_tally(devices, certificates, now=now,
                                            rotation_age=rotation_age,
                                            expiring_within=expiring_within,
                                            max_age_by_type=max_age)
                got = uow.fleet_counts.credential_tally(
                    org_path=org_path, now=now, rotation_age=rotation_age,
                    expiring_within=expiring_within, max_age_by_type=max_age)
                assert got == expected, (org_path, rotation_age, expiring_within)
    compare_credential_pages(installation)


def compare_credential_pages(installation: Installation) -> None:
    """Walking ``credential_page`` two candidates at a time finds exactly the devices
    each status names, as judged from their credentials, with and without filters."""
    now = installation.clock.now()
    with installation.services.database.reading() as uow:
        certificates = held_credentials(uow)
        for rotation_age, _ in QUESTIONS:
            verdicts = credential_status_by_device(certificates, now=now,
                                                   rotation_age=rotation_age)
            for org_path in (ROOT_PATH, "/root/acme/", "/root/globex/"):
                devices = list(uow.devices.iter_all(org_path=org_path))
                for status in CredentialStatus:
                    for narrow in ({}, {"type_name": "gateway"}, {"state": "active"},
                                   {"site": "hall-1"}):
                        expected = sorted(
                            d.id for d in devices
                            if verdicts.get(d.id, CredentialStatus.NONE) is status
                            and all(str(getattr(d, k)) == v for k, v in narrow.items()))
                        seen: list[str] = []
                        after = None
                        while True:
                            ids, after = uow.fleet_counts.credential_page(
                                org_path=org_path, status=status, now=now,
                                rotation_age=rotation_age, after_id=after, limit=2,
                                **narrow)
                            seen += ids
                            if after is None:
                                break
                        assert seen == expected, (org_path, rotation_age, status, narrow)


def test_credential_pages_ok_in_memory_as_in_sql(memory_installation: Installation) -> None:
    mixed_workload(memory_installation)
    for _ in range(3):
        compare_credential_pages(memory_installation)
        memory_installation.clock.advance(timedelta(days=2))


def test_fleet_counts_ok_equal_recount_after_mixed_workload(
        sql_installation: Installation) -> None:
    installation = sql_installation
    mixed_workload(installation)
    for _ in range(4):  # renewal points, expiry and key ages pass: no write needed
        compare_all(installation)
        installation.clock.advance(timedelta(days=2))


def test_fleet_counts_ok_psks_and_clients_counted_as_certificates(
        sql_installation: Installation) -> None:
    installation = sql_installation
    other_kinds_workload(installation, compare_all)
    for _ in range(3):  # the PSK with a lifetime passes its renewal point, then ends
        compare_all(installation)
        installation.clock.advance(DAY)
    with installation.services.database() as uow:
        found = recount(uow.conn)
    # the 8 certificate holders and psk-0..2, client-0, client-1 (imp-2, imp-3 counted)
    assert found.credential_rows == 13
    compare_all(installation)


def test_credential_pages_ok_psks_and_clients_in_memory(
        memory_installation: Installation) -> None:
    other_kinds_workload(memory_installation, compare_credential_pages)
    for _ in range(3):
        compare_credential_pages(memory_installation)
        memory_installation.clock.advance(DAY)


def test_fleet_counts_ok_recount_finds_no_drift(sql_installation: Installation) -> None:
    installation = sql_installation
    mixed_workload(installation)
    with installation.services.database() as uow:
        found = recount(uow.conn)
    assert found.device_counts_fixed == 0
    # imp-0 to imp-5, root-0 and root-1 were ever given a certificate
    assert found.credential_rows == 8
    compare_all(installation)


def test_fleet_counts_ok_recount_repairs_drift(sql_installation: Installation) -> None:
    installation = sql_installation
    mixed_workload(installation)
    with installation.services.database() as uow:
        uow.conn.exec_driver_sql("UPDATE device_counts SET n = n + 5")
        uow.conn.exec_driver_sql("DELETE FROM device_credentials")
    with installation.services.database() as uow:
        found = recount(uow.conn)
    assert found.device_counts_fixed > 0
    compare_all(installation)


def test_fleet_counts_ok_list_totals_by_filter(sql_installation: Installation) -> None:
    """A list's total is every device its filters select, whatever the page."""
    installation = sql_installation
    mixed_workload(installation)
    api = installation.api(installation.token("viewer", "acme"))

    def listed(**params: Any) -> tuple[int, list[str]]:
        answer = api.get("/v1/devices", params={"limit": 2, **params})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        seen = [d["id"] for d in body["items"]]
        while body["next"]:
            body = api.get("/v1/devices", params={"limit": 2, "after": body["next"],
                                                  **params}).json()
            seen += [d["id"] for d in body["items"]]
        return int(body["total"]), seen

    total, every = listed()
    # acme and its plant hold 8 imported devices, one transferred away; no other tenant's (G9)
    assert total == len(every) == 7
    for params in ({"type": "gateway"}, {"state": "active"}, {"state": "decommissioned"},
                   {"type": "controller", "state": "decommissioned"}, {"type": "none"}):
        total, seen = listed(**params)
        assert total == len(seen), params
