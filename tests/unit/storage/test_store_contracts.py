"""The memory stores of ``iotiam.testing.fakes`` answer as the SQL stores do.

Every test here runs the same calls and the same assertions against the memory unit of
work and the SQL one (SQLite, and PostgreSQL when ``IOTIAM_TEST_DATABASE_URL`` is set):
the use-case tests that run in memory can only be trusted while these pass. Each store
the converted tests lean on is covered: ordering, Conflict on duplicates, misses,
paging, filters by org path, and a failed transaction leaving nothing behind.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import BACKENDS, migrated_schema_url
from iotiam import installation
from iotiam.admin.models import AdminToken
from iotiam.attestation.models import (
    AttestationNonce,
    FirmwareImage,
    FirmwareRule,
    FirmwareSigner,
    FirmwareStatus,
    Measurement,
    SignerAlgorithm,
)
from iotiam.audit.models import AuditRecord, ChainHead
from iotiam.clock import FrozenClock
from iotiam.credentials.models import Psk, PskStatus
from iotiam.detection.models import DetectionMode, Finding, FindingState, FindingType, Severity
from iotiam.enrollment.models import (
    ClaimToken,
    EnrollmentRequest,
    HoldReason,
    ManifestEntry,
    Manufacturer,
    RequestStatus,
)
from iotiam.errors import Conflict, InvalidInput
from iotiam.inventory.models import (
    Criticality,
    Device,
    DeviceClass,
    DeviceState,
    DeviceType,
    Group,
    OrgUnit,
    OrgUnitKind,
    RotationPolicy,
)
from iotiam.kernel import Role
from iotiam.pki.models import (
    CaRole,
    CertificateRecord,
    CertificateStatus,
    RevocationReason,
    SerialInUse,
)
from iotiam.pki.ports import CrlInfo, SignedCertificate, StoredCa, StoredCrl
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    DevicePosture,
    Site,
    StoredPolicy,
    TargetKind,
)
from iotiam.policy.parsing import parse_policy
from iotiam.response.models import (
    Action,
    EventBatch,
    Mitigation,
    StoredFinding,
    TrustFactor,
    TrustScore,
    WouldActCount,
)
from iotiam.storage.database import Database, make_engine
from iotiam.storage.fleet_reads import SqlFleetReads
from iotiam.storage.migrate import upgrade_to_head
from iotiam.storage.response_store import SqlDeviceLookup
from iotiam.storage.status_reader import SqlStatusReader
from iotiam.testing.fakes import services as memory
from iotiam.testing.fakes.changes import MemoryFleetReads
from iotiam.testing.fakes.pki import MemoryStatusReader
from iotiam.testing.fakes.response import MemoryDeviceLookup
from iotiam.testing.fakes.unit_of_work import MemoryDatabase, NestedWrite
from iotiam.tokens.models import (
    AuthMethod,
    ClientKind,
    ClientStatus,
    DeviceCode,
    DeviceCodeStatus,
    GrantType,
    OAuthClient,
    RevokedToken,
    StoredSigningKey,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACME, BETA = "/root/acme/", "/root/beta/"
ISSUER = "issuing-0001"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest schema, copied by each test."""
    path = tmp_path_factory.mktemp("contracts") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["memory", *BACKENDS])
def db(request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: Path) -> Iterator[Any]:
    """Empty transactions over memory, SQLite or PostgreSQL, seeded with the rows the
    stores refer to (org units, device types, devices, an issuing CA)."""
    if request.param == "memory":
        transactions: Any = MemoryDatabase()
        seed(transactions)
        yield transactions
        return
    if request.param == "sqlite":
        shutil.copy(migrated_sqlite, tmp_path / "store.db")
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'store.db'}"])
    else:
        urls = migrated_schema_url()
    engine = make_engine(next(urls))
    database = Database(engine)
    seed(database)
    try:
        yield database
    finally:
        database.dispose()
        for _ in urls:
            pass


def seed(db: Any) -> None:
    with db() as uow:
        for unit_id, parent, path, kind in (
                ("root", None, "/root/", OrgUnitKind.ROOT),
                ("acme", "root", ACME, OrgUnitKind.TENANT),
                ("beta", "root", BETA, OrgUnitKind.TENANT),
                ("ac", "root", "/root/ac/", OrgUnitKind.TENANT)):
            uow.org_units.add(OrgUnit(unit_id, unit_id.title(), kind, parent, path, T0))
        for name in ("sensor", "gateway"):
            uow.device_types.add(device_type(name))
        for device_id, path in (("d2", BETA), ("d1", ACME), ("d3", ACME)):
            uow.devices.add(device(device_id, path))
        uow.cas.add(StoredCa(ISSUER, CaRole.ISSUING, "CERT", "KEY", T0))


def device_type(name: str) -> DeviceType:
    return DeviceType(name=name, device_class=DeviceClass.SENSOR, criticality=Criticality.LOW,
                      description=f"{name}s", certificate_profile="device", created_at=T0)


def device(device_id: str, path: str = ACME, *, type_name: str = "sensor",
           state: DeviceState = DeviceState.PENDING) -> Device:
    return Device(id=device_id, type_name=type_name, org_unit_id=path.split("/")[-2],
                  org_path=path, state=state, site="hall 3", location=None,
                  attributes={"fw": "1.0", "hw": "b"}, created_at=T0, updated_at=T0)


# -- transactions ------------------------------------------------------------------------


def test_failed_write_leaves_nothing(db: Any) -> None:
    with pytest.raises(RuntimeError), db() as uow:
        uow.devices.add(device("d9"))
        uow.devices.set_state("d1", DeviceState.ACTIVE, T0 + timedelta(seconds=1))
        raise RuntimeError("the use case fails after writing")
    with db.reading() as uow:
        assert uow.devices.get("d9") is None
        assert uow.devices.get("d1") == device("d1")


def test_failed_savepoint_undoes_only_its_own_work(db: Any) -> None:
    with db() as uow:
        uow.devices.add(device("d8"))
        with pytest.raises(RuntimeError), uow.savepoint():
            uow.devices.add(device("d9"))
            raise RuntimeError("one row of an import fails")
    with db.reading() as uow:
        assert uow.devices.exists(["d8", "d9"]) == {"d8"}


# -- inventory ---------------------------------------------------------------------------


def test_org_units(db: Any) -> None:
    with db.reading() as uow:
        assert [u.id for u in uow.org_units.list_under("/root/")] == ["root", "ac", "acme",
                                                                      "beta"]
        assert [u.id for u in uow.org_units.list_under("/root/ac/")] == ["ac"]
        assert uow.org_units.get("acme") == OrgUnit("acme", "Acme", OrgUnitKind.TENANT,
                                                    "root", ACME, T0)
        assert uow.org_units.get("nosuch") is None
        with pytest.raises(InvalidInput):
            uow.org_units.list_under("/root")
    with pytest.raises(Conflict), db() as uow:
        uow.org_units.add(OrgUnit("acme", "Again", OrgUnitKind.TENANT, "root", "/root/x/", T0))


def test_device_types(db: Any) -> None:
    rotation = RotationPolicy(certificate_lifetime=timedelta(hours=6),
                              grace_period=timedelta(days=1),
                              max_credential_age=timedelta(days=9))
    with db() as uow:
        uow.device_types.add(device_type("controller"))
        uow.device_types.set_rotation("gateway", rotation)
    with db.reading() as uow:
        assert [t.name for t in uow.device_types.list_all()] == ["controller", "gateway",
                                                                  "sensor"]
        assert uow.device_types.get("gateway").rotation == rotation
        assert uow.device_types.get("sensor") == device_type("sensor")
        assert uow.device_types.get("toaster") is None
    with pytest.raises(Conflict), db() as uow:
        uow.device_types.add(device_type("sensor"))


def test_devices_read_back_and_page(db: Any) -> None:
    with db() as uow:
        uow.devices.add(device("g1", BETA, type_name="gateway"))
        uow.devices.add(device("a0", "/root/ac/"))
    with db.reading() as uow:
        assert uow.devices.get("d1") == device("d1")
        assert uow.devices.get("nope") is None
        assert set(uow.devices.get_many(["d1", "nope", "d1", "g1"])) == {"d1", "g1"}
        assert uow.devices.exists(["d1", "nope", "g1"]) == {"d1", "g1"}
        assert [d.id for d in uow.devices.page(org_path="/root/")] == ["a0", "d1", "d2", "d3",
                                                                       "g1"]
        assert [d.id for d in uow.devices.page(org_path=ACME)] == ["d1", "d3"]
        assert [d.id for d in uow.devices.page(org_path="/root/", after_id="d1",
                                               limit=2)] == ["d2", "d3"]
        assert [d.id for d in uow.devices.page(org_path=BETA,
                                               type_name="gateway")] == ["g1"]
        assert uow.devices.count(org_path="/root/") == 5
        assert uow.devices.count(org_path=BETA, type_name="sensor") == 1
        assert uow.devices.count(org_path="/root/", state=DeviceState.ACTIVE) == 0
        assert sorted(d.id for d in uow.devices.iter_all(org_path=ACME)) == ["d1", "d3"]
    with pytest.raises(Conflict), db() as uow:
        uow.devices.add(device("d1", BETA))


def test_devices_page_and_count_by_site(db: Any) -> None:
    with db() as uow:
        uow.devices.add(replace(device("s1", BETA), site="hall 9"))
        uow.devices.add(replace(device("s2", ACME, type_name="gateway"), site="hall 9"))
        uow.devices.add(replace(device("s3", ACME), site=None))
    with db.reading() as uow:
        assert [d.id for d in uow.devices.page(org_path="/root/", site="hall 9")] == ["s1",
                                                                                      "s2"]
        assert [d.id for d in uow.devices.page(org_path=ACME, site="hall 9")] == ["s2"]
        assert [d.id for d in uow.devices.page(org_path="/root/", site="hall 9",
                                               after_id="s1")] == ["s2"]
        assert [d.id for d in uow.devices.page(org_path="/root/", site="hall 9",
                                               type_name="sensor")] == ["s1"]
        assert uow.devices.count(org_path="/root/", site="hall 9") == 2
        assert uow.devices.count(org_path=ACME, site="hall 9", type_name="gateway") == 1
        assert uow.devices.count(org_path="/root/", site="hall 3") == 3
        assert uow.devices.count(org_path="/root/", site="nowhere") == 0


def test_devices_state_and_touch(db: Any) -> None:
    t1, t2, t3 = (T0 + timedelta(minutes=n) for n in (1, 2, 3))
    with db() as uow:
        uow.devices.activate_if_pending(["d1", "d2"], t1)
        uow.devices.set_state("d2", DeviceState.SUSPENDED, t2)
        uow.devices.activate_if_pending(["d2"], t3)
        uow.devices.touch(["d3"], t3)
        uow.devices.end_tokens("d3", t2)
    with db.reading() as uow:
        d1, d2, d3 = (uow.devices.get(i) for i in ("d1", "d2", "d3"))
        assert (d1.state, d1.updated_at, d1.tokens_not_before) == (DeviceState.ACTIVE, t1, None)
        assert (d2.state, d2.updated_at, d2.tokens_not_before) == (DeviceState.SUSPENDED, t2,
                                                                   t2)
        assert (d3.state, d3.updated_at, d3.tokens_not_before) == (DeviceState.PENDING, t3, t2)
        assert uow.devices.page(org_path="/root/", state=DeviceState.ACTIVE) == [d1]


def test_groups_and_ownership(db: Any) -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    with db() as uow:
        uow.groups.add(Group("line-2", "Line 2", "acme", ACME, "", T0))
        uow.groups.add(Group("all", "All", "root", "/root/", "", T0))
        uow.groups.add(Group("line-1", "Line 1", "acme", ACME, "", T0))
        uow.groups.add_member("line-1", "d3", t1)
        uow.groups.add_member("line-1", "d1", t1)
        uow.groups.add_member("line-1", "d1", t2)  # again: nothing moves
        uow.groups.add_member("all", "d1", t1)
    with db.reading() as uow:
        assert [g.id for g in uow.groups.list_under(org_path="/root/")] == ["all", "line-1",
                                                                           "line-2"]
        assert [g.id for g in uow.groups.list_under(org_path=ACME)] == ["line-1", "line-2"]
        assert uow.groups.members("line-1") == ["d1", "d3"]
        assert uow.groups.members("line-2") == []
        assert uow.devices.get("d1").updated_at == t1
        assert uow.groups.get("nope") is None
    with db() as uow:
        assert uow.ownership.leave_groups_outside("d1", BETA) == ["line-1"]
        uow.ownership.move_device("d1", "beta", BETA, t2)
    with db.reading() as uow:
        moved = uow.devices.get("d1")
        assert (moved.org_path, moved.org_unit_id, moved.state, moved.updated_at) == (
            BETA, "beta", DeviceState.PENDING, t2)
        assert uow.groups.members("line-1") == ["d3"] and uow.groups.members("all") == ["d1"]
    with pytest.raises(Conflict), db() as uow:
        uow.groups.add(Group("all", "Again", "acme", ACME, "", T0))


# -- pki ---------------------------------------------------------------------------------


def certificate(serial: int, device_id: str | None = "d1", path: str = ACME, *,
                key: str = "k1", not_after: datetime = T0 + timedelta(days=1)
                ) -> CertificateRecord:
    return CertificateRecord(
        issuer_id=ISSUER, serial=serial, device_id=device_id, org_unit_id="acme",
        org_path=path, profile="device", subject=f"CN={device_id}", not_before=T0,
        not_after=not_after, status=CertificateStatus.RESERVED, fingerprint_sha256=None,
        pem=None, created_at=T0, public_key_sha256=key)


def signed(serial: int, device_id: str | None = "d1") -> SignedCertificate:
    return SignedCertificate(ISSUER, serial, f"PEM {serial}", f"fp{serial}", device_id)


def test_certificates_reserve_complete_revoke(db: Any) -> None:
    revoked_at = T0 + timedelta(hours=1)
    with db() as uow:
        uow.certificates.reserve_many([certificate(1 << 64), certificate((1 << 64) + 1)])
        uow.certificates.complete([signed(1 << 64)])
        uow.certificates.revoke(ISSUER, 1 << 64, revoked_at, RevocationReason.KEY_COMPROMISE)
    with db.reading() as uow:
        assert uow.certificates.taken_serials(ISSUER, [1 << 64, 5]) == {1 << 64}
        stored = uow.certificates.get(ISSUER, 1 << 64)
        assert (stored.status, stored.pem, stored.fingerprint_sha256, stored.revoked_at,
                stored.revocation_reason) == (CertificateStatus.REVOKED, f"PEM {1 << 64}",
                                              f"fp{1 << 64}", revoked_at,
                                              RevocationReason.KEY_COMPROMISE)
        assert uow.certificates.status_of(ISSUER, (1 << 64) + 1) == (
            CertificateStatus.RESERVED, None, None)
        assert uow.certificates.status_of(ISSUER, 7) is None
        assert [c.serial for c in uow.certificates.find_by_serial(1 << 64)] == [1 << 64]
    with db() as uow:
        # a used serial is left out and named; the fresh one beside it is reserved (G1)
        assert uow.certificates.reserve_many(
            [certificate(1 << 64, "d2"), certificate(7, "d2")]) == {1 << 64}
        assert uow.certificates.get(ISSUER, 1 << 64).device_id == "d1"
        assert uow.certificates.status_of(ISSUER, 7) == (CertificateStatus.RESERVED, None, None)
    with pytest.raises(SerialInUse), db() as uow:
        uow.certificates.reserve_many([certificate(8), certificate(8)])
    with pytest.raises(Conflict), db() as uow:
        uow.certificates.complete([signed(1 << 64)])
    with pytest.raises(Conflict), db() as uow:
        uow.certificates.revoke(ISSUER, 1 << 64, revoked_at, RevocationReason.SUPERSEDED)


def test_certificates_of_an_issuer_live_counted_and_revoked_together(db: Any) -> None:
    """What an issuing CA's compromise reads and writes (pki/rotation.py)."""
    serials = [(1 << 64) + n for n in range(4)]
    with db() as uow:
        uow.certificates.reserve_many([
            certificate(serials[0]), certificate(serials[1], "d2", BETA, key="k2"),
            certificate(serials[2], key="k3", not_after=T0 + timedelta(hours=2)),
            certificate(serials[3], key="k4")])
        uow.certificates.complete([signed(s, d) for s, d in (
            (serials[0], "d1"), (serials[1], "d2"), (serials[2], "d1"))])  # [3] reserved
    later = T0 + timedelta(hours=3)
    with db.reading() as uow:
        assert uow.certificates.live_issued_by(ISSUER, T0) == [
            (serials[0], "d1"), (serials[1], "d2"), (serials[2], "d1")]
        assert uow.certificates.live_issued_by(ISSUER, later) == [
            (serials[0], "d1"), (serials[1], "d2")]
        assert uow.certificates.count_live(ISSUER, T0) == 3
        assert uow.certificates.count_live(ISSUER, later) == 2
        assert uow.certificates.count_live("issuing-nobody", T0) == 0
    with db() as uow:
        uow.certificates.revoke(ISSUER, serials[1], T0, RevocationReason.SUPERSEDED)
        uow.certificates.revoke_many(ISSUER, serials[:2], later,
                                     RevocationReason.CA_COMPROMISE)
        uow.certificates.revoke_many(ISSUER, [], later, RevocationReason.CA_COMPROMISE)
    with db.reading() as uow:
        first, second = (uow.certificates.get(ISSUER, s) for s in serials[:2])
        assert (first.status, first.revoked_at, first.revocation_reason) == (
            CertificateStatus.REVOKED, later, RevocationReason.CA_COMPROMISE)
        # revoked before: left as it was (G4)
        assert (second.revoked_at, second.revocation_reason) == (
            T0, RevocationReason.SUPERSEDED)
        assert uow.certificates.live_issued_by(ISSUER, T0) == [(serials[2], "d1")]


def test_certificates_lists(db: Any) -> None:
    serials = [(1 << 64) + n for n in range(5)]
    with db() as uow:
        uow.certificates.reserve_many([
            certificate(serials[0]), certificate(serials[1], "d2", BETA, key="k2"),
            certificate(serials[2], key="k2", not_after=T0 + timedelta(hours=2)),
            certificate(serials[3], None), certificate(serials[4])])
        uow.certificates.complete([signed(serials[0]), signed(serials[1], "d2"),
                                   signed(serials[2]), signed(serials[3], None)])
        uow.certificates.revoke(ISSUER, serials[2], T0, RevocationReason.SUPERSEDED)
    with db.reading() as uow:
        page = uow.certificates.page(org_path="/root/")
        assert [c.serial for c in page] == serials[::-1]
        assert [c.serial for c in uow.certificates.page(org_path=ACME, limit=2, offset=1)] == [
            serials[3], serials[2]]
        assert [c.serial for c in uow.certificates.page(
            org_path="/root/", device_id="d1", status=CertificateStatus.ISSUED)] == [serials[0]]
        assert [c.serial for c in uow.certificates.for_device("d1")] == [
            serials[0], serials[2], serials[4]]
        batch = uow.certificates.for_devices(["d2", "d1", "d3", "d1"])
        assert {d: [c.serial for c in cs] for d, cs in batch.items()} == {
            "d1": [serials[0], serials[2], serials[4]], "d2": [serials[1]]}
        assert batch["d1"] == uow.certificates.for_device("d1")
        assert sorted(uow.certificates.key_holders(["k2", "k9"])) == [("k2", "d1"),
                                                                      ("k2", "d2")]
        assert sorted(c.serial for c in uow.certificates.with_public_key("k2")) == [
            serials[1], serials[2]]
        listed = sorted(uow.certificates.iter_device_certificates(org_path=ACME),
                        key=lambda c: c.serial)
        assert [(c.serial, c.pem) for c in listed] == [(serials[0], None), (serials[2], None)]
        assert [r.serial for r in uow.certificates.revocations(
            ISSUER, expired_after=T0 + timedelta(hours=1))] == [serials[2]]
        assert uow.certificates.revocations(ISSUER,
                                            expired_after=T0 + timedelta(hours=3)) == []


def test_counters(db: Any) -> None:
    with db() as uow:
        assert [uow.counters.next("crl"), uow.counters.next("crl")] == [1, 2]
        assert (uow.counters.current("crl"), uow.counters.current("other")) == (2, 0)


# -- enrollment --------------------------------------------------------------------------


def claim(claim_id: str, device_id: str = "d1", *, created: int = 0,
          expires: int = 60) -> ClaimToken:
    return ClaimToken(claim_id, device_id, ACME, "hash", T0 + timedelta(seconds=created),
                      T0 + timedelta(seconds=expires), "admin")


def test_claims(db: Any) -> None:
    with db() as uow:
        uow.claims.add(claim("c2", created=2))
        uow.claims.add(claim("c1", created=1))
        uow.claims.add(claim("c3", expires=10))
        uow.claims.add(claim("c4", "d2"))
    with db() as uow:
        assert uow.claims.redeem("c1", T0 + timedelta(seconds=5))
        assert not uow.claims.redeem("c1", T0 + timedelta(seconds=6))  # G8: once
        assert not uow.claims.redeem("c3", T0 + timedelta(seconds=10))  # expired
        assert not uow.claims.redeem("nope", T0)
        assert uow.claims.expire_for_device("d1", T0 + timedelta(seconds=7)) == 2  # c2, c3
    with db.reading() as uow:
        assert [c.id for c in uow.claims.for_device("d1")] == ["c3", "c1", "c2"]
        assert uow.claims.get("c1").used_at == T0 + timedelta(seconds=5)
        assert uow.claims.get("c2").expires_at == T0 + timedelta(seconds=7)
        assert uow.claims.get("c3").expires_at == T0 + timedelta(seconds=7)
        assert uow.claims.get("c4").expires_at == T0 + timedelta(seconds=60)
        assert uow.claims.get("nope") is None
    with pytest.raises(Conflict), db() as uow:
        uow.claims.add(claim("c1"))


def manufacturer(name: str, path: str = ACME, fingerprint: str | None = None) -> Manufacturer:
    return Manufacturer(name=name, org_unit_id=path.split("/")[-2], org_path=path,
                        device_type="sensor", certificate_pem="PEM", subject=f"CN={name}",
                        fingerprint_sha256=fingerprint or f"fp-{name}",
                        not_after=T0 + timedelta(days=9), created_at=T0, created_by="admin")


def test_manufacturers_and_manifest(db: Any) -> None:
    with db() as uow:
        for m in (manufacturer("zeta", BETA), manufacturer("acme-devices"),
                  manufacturer("beta-devices", "/root/ac/")):
            uow.manufacturers.add(m)
        uow.manifest.add(ManifestEntry("zeta", "SN-2", T0))
        uow.manifest.add(ManifestEntry("zeta", "SN-1", T0, public_key_sha256="k"))
        assert uow.manifest.pin_key("SN-2", "k2")
        assert not uow.manifest.pin_key("SN-2", "k3")
        assert not uow.manifest.pin_key("SN-9", "k3")
        uow.manifest.mark_enrolled("SN-2", T0 + timedelta(seconds=1))
        uow.manifest.mark_enrolled("SN-2", T0 + timedelta(seconds=2))
    with db.reading() as uow:
        assert [m.name for m in uow.manufacturers.list_all()] == ["acme-devices",
                                                                  "beta-devices", "zeta"]
        assert [m.name for m in uow.manufacturers.list_under(ACME)] == ["acme-devices"]
        assert uow.manufacturers.by_fingerprint("fp-zeta") == manufacturer("zeta", BETA)
        assert uow.manufacturers.get("nope") is None
        assert uow.manifest.get("SN-2") == ManifestEntry(
            "zeta", "SN-2", T0, public_key_sha256="k2", enrolled_at=T0 + timedelta(seconds=1))
        assert (uow.manifest.count("zeta"), uow.manifest.count("acme-devices")) == (2, 0)
    for duplicate in (manufacturer("zeta"), manufacturer("other", fingerprint="fp-zeta")):
        with pytest.raises(Conflict), db() as uow:
            uow.manufacturers.add(duplicate)
    with pytest.raises(Conflict), db() as uow:
        uow.manifest.add(ManifestEntry("acme-devices", "SN-1", T0))


def request(request_id: str, *, csr: str | None = None, path: str | None = ACME,
            source: str = "10.0.0.1", created: int = 0, device_id: str = "d1"
            ) -> EnrollmentRequest:
    return EnrollmentRequest(
        id=request_id, device_id=device_id, reason=HoldReason.UNKNOWN_DEVICE, detail="held",
        source=source, presented="claim", csr_pem="CSR", csr_sha256=csr or f"csr-{request_id}",
        public_key_sha256="k", status=RequestStatus.PENDING,
        created_at=T0 + timedelta(seconds=created), last_seen_at=T0,
        org_unit_id=path.split("/")[-2] if path else None, org_path=path)


def test_enrollment_requests(db: Any) -> None:
    with db() as uow:
        uow.enrollment_requests.add(request("r2", created=2))
        uow.enrollment_requests.add(request("r1", created=1, source="10.0.0.2"))
        uow.enrollment_requests.add(request("r3", path=None, created=3))
        uow.enrollment_requests.add(request("r4", path=BETA, device_id="d2"))
        uow.enrollment_requests.add(request("r5", created=-9, device_id="d3"))
    with db() as uow:
        assert uow.enrollment_requests.drop_stale(T0 - timedelta(seconds=5)) == 1  # r5
        assert uow.enrollment_requests.decide("r2", RequestStatus.APPROVED, T0, "admin", "ok")
        assert not uow.enrollment_requests.decide("r2", RequestStatus.REJECTED, T0, "x", None)
        uow.enrollment_requests.set_certificate("r2", "0abc")
        uow.enrollment_requests.touch("r1", T0 + timedelta(seconds=9))
        uow.enrollment_requests.touch("r1", T0 + timedelta(seconds=10))
        assert uow.enrollment_requests.close_for_device("d1", T0, "transfer", "moved") == 2
    with db.reading() as uow:
        requests = uow.enrollment_requests
        assert [r.id for r in requests.page(org_path="/root/", include_unscoped=True,
                                            status=None, limit=10)] == ["r4", "r1", "r2", "r3"]
        assert [r.id for r in requests.page(org_path=ACME, include_unscoped=False,
                                            status=RequestStatus.REJECTED,
                                            limit=1)] == ["r1"]
        assert requests.count_pending() == 1 and requests.count_pending(source="10.0.0.2") == 0
        assert requests.by_csr("csr-r4").id == "r4" and requests.by_csr("nope") is None
        r1, r2 = requests.get("r1"), requests.get("r2")
        assert (r1.polls, r1.last_seen_at, r1.status, r1.decided_by, r1.decision_note) == (
            2, T0 + timedelta(seconds=10), RequestStatus.REJECTED, "transfer", "moved")
        assert (r2.status, r2.certificate_serial) == (RequestStatus.APPROVED, "0abc")
        assert requests.get("r5") is None
    with pytest.raises(Conflict), db() as uow:
        uow.enrollment_requests.add(request("r9", csr="csr-r4"))


# -- response ----------------------------------------------------------------------------


def finding(finding_id: str, device_id: str | None = "d1", *, path: str = ACME,
            kind: FindingType = FindingType.RATE_CHANGE) -> StoredFinding:
    found = Finding(type=kind, severity=Severity.MEDIUM, at=T0.timestamp(),
                    device_id=device_id, summary="rate", detector="rate",
                    evidence={"observed": 5}, device_type="sensor")
    return StoredFinding(id=finding_id, finding=found, org_path=path, state=FindingState.OPEN,
                         mode=DetectionMode.MONITOR, raised_at=T0, updated_at=T0,
                         last_seen_at=T0, last_event_at=T0.timestamp())


def test_findings(db: Any) -> None:
    t1 = T0 + timedelta(minutes=1)
    worse = Finding(type=FindingType.RATE_CHANGE, severity=Severity.HIGH, at=0.0,
                    device_id="d1", summary="worse", detector="rate",
                    evidence={"observed": 50})
    with db() as uow:
        uow.findings.add(finding("f1"))
        uow.findings.add(finding("f3", "d2", path=BETA))
        uow.findings.add(finding("f2", kind=FindingType.NEW_DESTINATION))
        uow.findings.add(finding("f4", None, path="/root/"))
        uow.findings.repeat("f1", t1, T0.timestamp() + 60)
        uow.findings.escalate("f1", worse, t1)
        uow.findings.add_actions("f1", ["alert", "quarantine"])
        uow.findings.add_actions("f1", ["quarantine", "revoke"])
        uow.findings.set_state("f2", FindingState.ACKNOWLEDGED, t1, "admin", "looking")
        uow.findings.set_state("f2", FindingState.RESOLVED, t1, "admin", None)
    with db.reading() as uow:
        f1, f2 = uow.findings.get("f1"), uow.findings.get("f2")
        assert (f1.repeats, f1.last_seen_at, f1.updated_at, f1.finding.severity,
                f1.finding.summary, dict(f1.finding.evidence), f1.actions) == (
            2, t1, t1, Severity.HIGH, "worse", {"observed": 50},
            ("alert", "quarantine", "revoke"))
        assert (f2.state, f2.note, f2.updated_by) == (FindingState.RESOLVED, "looking", "admin")
        # the escalation's event (at 0) is older: the episode's last event stays
        assert f1.last_event_at == T0.timestamp() + 60
        assert uow.findings.live_for("device:d1", FindingType.RATE_CHANGE).id == "f1"
        assert uow.findings.live_for("device:d1", FindingType.NEW_DESTINATION) is None
        assert uow.findings.live_for("fleet", FindingType.RATE_CHANGE).id == "f4"
        assert uow.findings.get("f3") == finding("f3", "d2", path=BETA)

        def page(**filters: Any) -> list[str]:
            query: dict[str, Any] = {"org_path": "/root/", "state": None, "device_id": None,
                                     "finding_type": None, "before_id": None, "limit": 10}
            return [f.id for f in uow.findings.page(**{**query, **filters})]

        assert page() == ["f4", "f3", "f2", "f1"]
        assert page(org_path=ACME) == ["f2", "f1"]
        assert page(before_id="f3", limit=1) == ["f2"]
        assert page(state=FindingState.OPEN, device_id="d1") == ["f1"]
        assert page(finding_type=FindingType.NEW_DESTINATION) == ["f2"]
        live = uow.findings.live_for_devices(["d1", "d2", "d3"])
        assert {d: [f.id for f in found] for d, found in live.items()} == {"d1": ["f1"],
                                                                          "d2": ["f3"]}
    with pytest.raises(Conflict), db() as uow:
        uow.findings.add(finding("f1"))


def test_findings_fold_under_their_subject_latest_episode_first(db: Any) -> None:
    first = finding("f1", None)
    stuffing = replace(first.finding, evidence={"source_ip": "45.0.0.1"})
    with db() as uow:
        uow.findings.add(first)
        uow.findings.add(replace(first, id="f2", finding=stuffing))
        uow.findings.add(replace(first, id="f3", finding=replace(stuffing, at=T0.timestamp()
                                                                + 3600),
                                 last_event_at=T0.timestamp() + 3600))
    with db.reading() as uow:
        assert uow.findings.live_for("fleet", FindingType.RATE_CHANGE).id == "f1"
        # the later episode of the same address is the one a new finding may join
        assert uow.findings.live_for("source:45.0.0.1", FindingType.RATE_CHANGE).id == "f3"
        assert uow.findings.live_for("source:45.0.0.2", FindingType.RATE_CHANGE) is None


def test_event_batches_link_findings_once(db: Any) -> None:
    with db() as uow:
        uow.findings.add(finding("f1"))
        uow.findings.add(finding("f2", "d2"))
        uow.findings.add_batch(EventBatch("bat-1", ACME, T0, "ops", 40))
        uow.findings.link_batch("bat-1", ["f2", "f1"])
        uow.findings.link_batch("bat-1", ["f1"])
    with db.reading() as uow:
        assert uow.findings.get_batch("bat-1") == EventBatch("bat-1", ACME, T0, "ops", 40)
        assert uow.findings.get_batch("bat-2") is None
        assert [f.id for f in uow.findings.batch_findings("bat-1")] == ["f1", "f2"]
        assert uow.findings.batch_findings("bat-2") == []
    with db() as uow:
        uow.findings.remove_batch("bat-1")
    with db.reading() as uow:
        assert uow.findings.get_batch("bat-1") is None
        assert uow.findings.batch_findings("bat-1") == []
        assert uow.findings.get("f1") is not None


def test_event_batches_pruned_by_age_keep_their_findings(db: Any) -> None:
    with db() as uow:
        uow.findings.add(finding("f1"))
        uow.findings.add_batch(EventBatch("bat-old", ACME, T0, "ops", 10))
        uow.findings.add_batch(EventBatch("bat-new", ACME, T0 + timedelta(hours=1), "ops", 5))
        uow.findings.link_batch("bat-old", ["f1"])
        uow.findings.link_batch("bat-new", ["f1"])
    with db() as uow:
        assert uow.findings.prune_batches(T0) == 0
        assert uow.findings.prune_batches(T0 + timedelta(minutes=1)) == 1
    with db.reading() as uow:
        assert uow.findings.get_batch("bat-old") is None
        assert uow.findings.batch_findings("bat-old") == []
        assert [f.id for f in uow.findings.batch_findings("bat-new")] == ["f1"]
        assert uow.findings.get("f1") is not None


def test_would_act_counts_group_by_type_severity_mode_and_device(db: Any) -> None:
    with db() as uow:
        uow.findings.add(finding("f1"))
        uow.findings.add(replace(finding("f2", "d2"), repeats=3))
        uow.findings.add(replace(finding("f3", None), mode=DetectionMode.ENFORCE))
        uow.findings.add(finding("f4", path=BETA))
        uow.findings.add(replace(finding("f5"), raised_at=T0 - timedelta(days=9)))
    with db.reading() as uow:
        counts = uow.findings.would_act_counts(org_path=ACME, since=T0 - timedelta(days=7))
    assert sorted(counts, key=lambda c: c.mode) == [
        WouldActCount(FindingType.RATE_CHANGE, "sensor", Severity.MEDIUM,
                      DetectionMode.ENFORCE, True, 1, 0),
        WouldActCount(FindingType.RATE_CHANGE, "sensor", Severity.MEDIUM,
                      DetectionMode.MONITOR, False, 2, 3)]


def test_mitigations(db: Any) -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    with db() as uow:
        uow.findings.add(finding("f1"))
        for mitigation_id, at in (("m2", T0), ("m1", T0), ("m3", t1)):
            uow.mitigations.add(Mitigation(mitigation_id, "f1", "d1", Action.QUARANTINE,
                                           DeviceState.ACTIVE, at))
        uow.mitigations.lift("m1", t1, "admin")
    with db.reading() as uow:
        assert [m.id for m in uow.mitigations.active_for("d1")] == ["m2", "m3"]
        assert uow.mitigations.active_for("d2") == []
        assert uow.mitigations.lifted_since("f1", t1)
        assert not uow.mitigations.lifted_since("f1", t2)


def test_detection_settings_and_trust(db: Any) -> None:
    t1 = T0 + timedelta(minutes=1)
    score = TrustScore("d1", 70, (TrustFactor("finding", -30, "open finding f1: rate"),),
                       firmware_compliant=None, computed_at=T0)
    with db() as uow:
        uow.detection_settings.set_mode("sensor", DetectionMode.MONITOR, T0, "admin")
        uow.detection_settings.set_mode("sensor", DetectionMode.ENFORCE, t1, "admin")
        uow.detection_settings.put_document("playbook", '{"rules": []}', T0)
        uow.trust.put(replace_score(score, 50))
        uow.trust.put(score)
        uow.trust.touch_devices(["d1", "d3"], t1)
        # a batch replaces what is stored and adds what is not, in one call
        uow.trust.put_many([replace_score(score, 40), replace(score, device_id="d2")])
        uow.trust.put_many([])
        assert uow.trust.for_devices(["d1"]) == {"d1": replace_score(score, 40)}
        uow.trust.put(score)
    with db.reading() as uow:
        assert uow.detection_settings.modes() == {"sensor": DetectionMode.ENFORCE}
        assert uow.detection_settings.get_document("playbook") == '{"rules": []}'
        assert uow.detection_settings.get_document("nope") is None
        assert uow.trust.for_devices(["d1", "d2"]) == {
            "d1": score, "d2": replace(score, device_id="d2")}
        assert [uow.devices.get(i).updated_at for i in ("d1", "d2", "d3")] == [t1, T0, t1]


def replace_score(score: TrustScore, value: int) -> TrustScore:
    return TrustScore(score.device_id, value, (), True, score.computed_at)


# -- audit -------------------------------------------------------------------------------


def record(seq: int, path: str) -> AuditRecord:
    return AuditRecord(seq=seq, at=T0, tag="admin:device:created", actor="admin",
                       org_path=path, subject=f"device:{seq}", outcome="success",
                       reason=None, details={"n": seq}, prev_hash=f"h{seq - 1}", hash=f"h{seq}")


def test_audit_log(db: Any) -> None:
    with db.reading() as uow:
        assert uow.audit.head() is None
    with db() as uow:
        uow.audit.append([record(1, ACME), record(2, BETA)], ChainHead(2, "h2", "mac2", "f2"))
    with db() as uow:
        assert uow.audit.lock_head() == ChainHead(2, "h2", "mac2", "f2")
        uow.audit.append([record(3, ACME)], ChainHead(3, "h3", "mac3", None))
    with db.reading() as uow:
        assert uow.audit.head() == ChainHead(3, "h3", "mac3", None)
        assert list(uow.audit.iter_records()) == [record(1, ACME), record(2, BETA),
                                                  record(3, ACME)]
        assert [r.seq for r in uow.audit.iter_records(org_path=ACME)] == [1, 3]
        assert [r.seq for r in uow.audit.iter_records(after_seq=1, limit=1)] == [2]
    with pytest.raises(Conflict), db() as uow:
        uow.audit.append([record(3, ACME)], ChainHead(3, "h3", "mac3", None))


# -- the memory installation -------------------------------------------------------------


def test_memory_installation_seeds_what_init_seeds() -> None:
    services = memory.memory_services()
    with services.database.reading() as uow:
        assert uow.org_units.get("root") is not None
        seeded = {t.name: (t.device_class, t.criticality, t.description)
                  for t in uow.device_types.list_all()}
        assert seeded == {name: (cls, crit, text)
                          for name, cls, crit, text in installation.SEED_DEVICE_TYPES}
        assert {ca.role for ca in uow.cas.list_all()} >= {CaRole.ROOT, CaRole.ISSUING,
                                                          CaRole.OCSP_RESPONDER}


# -- admin, credentials ------------------------------------------------------------------


def admin_token(token_id: str, path: str = ACME, *, created: int = 0) -> AdminToken:
    return AdminToken(id=token_id, name=token_id, role=Role.OPERATOR,
                      org_unit_id=path.split("/")[-2], org_path=path, secret_hash="hash",
                      created_at=T0 + timedelta(seconds=created), created_by="admin")


def test_admin_tokens(db: Any) -> None:
    with db() as uow:
        uow.admin_tokens.add(admin_token("t2", created=2))
        uow.admin_tokens.add(admin_token("t1", created=1))
        uow.admin_tokens.add(admin_token("t3", BETA))
        uow.admin_tokens.revoke("t1", T0 + timedelta(hours=1))
    with db.reading() as uow:
        assert [t.id for t in uow.admin_tokens.list_under(org_path=ACME)] == ["t1", "t2"]
        assert uow.admin_tokens.get("t1").revoked_at == T0 + timedelta(hours=1)
        assert uow.admin_tokens.get("t3") == admin_token("t3", BETA)
        assert uow.admin_tokens.get("nope") is None
    with pytest.raises(Conflict), db() as uow:
        uow.admin_tokens.add(admin_token("t3"))


def psk(psk_id: str, device_id: str = "d1", path: str = ACME, *, created: int = 0) -> Psk:
    return Psk(id=psk_id, identity=device_id, device_id=device_id, org_path=path,
               encrypted_key=b"sealed", status=PskStatus.ACTIVE,
               created_at=T0 + timedelta(seconds=created), expires_at=None)


def test_psks(db: Any) -> None:
    with db() as uow:
        uow.psks.add(psk("p2", created=2))
        uow.psks.add(psk("p1", created=1))
        uow.psks.add(psk("p3", "d2", BETA))
        assert uow.psks.revoke("p1", T0, "rotated", "p2")
        assert not uow.psks.revoke("p1", T0, "again", None)
    with db.reading() as uow:
        assert [p.id for p in uow.psks.for_device("d1")] == ["p1", "p2"]
        assert {d: [p.id for p in ps] for d, ps in uow.psks.for_devices(
            ["d2", "d1", "d3"]).items()} == {"d1": ["p1", "p2"], "d2": ["p3"]}
        assert uow.psks.active_for_device("d1") == psk("p2", created=2)
        assert uow.psks.active_for_device("d3") is None
        revoked = uow.psks.for_device("d1")[0]
        assert (revoked.status, revoked.revoked_at, revoked.revocation_reason,
                revoked.replaced_by) == (PskStatus.REVOKED, T0, "rotated", "p2")
        assert sorted(p.id for p in uow.psks.iter_active(org_path="/root/")) == ["p2", "p3"]
        assert [p.id for p in uow.psks.iter_active(org_path=BETA)] == ["p3"]
    with pytest.raises(Conflict), db() as uow:
        uow.psks.add(psk("p3"))


# -- pki: CAs and CRLs -------------------------------------------------------------------


def test_cas_and_crls(db: Any) -> None:
    later = StoredCa("issuing-0002", CaRole.ISSUING, "CERT2", "KEY2", T0 + timedelta(days=1))
    with db() as uow:
        uow.cas.add(later)
        uow.cas.add(StoredCa("root-0001", CaRole.ROOT, "ROOT", "KEY", T0))
        for number in (1, 3, 2):
            uow.crls.add(StoredCrl(ISSUER, number, T0, T0 + timedelta(hours=number), number,
                                   b"DER%d" % number))
    with db.reading() as uow:
        assert uow.cas.active(CaRole.ISSUING) == later
        assert uow.cas.active(CaRole.OCSP_RESPONDER) is None
        assert [c.id for c in uow.cas.list_all()] == ["issuing-0001", "issuing-0002",
                                                      "root-0001"]
        assert uow.cas.get("root-0001").certificate_pem == "ROOT"
        assert uow.crls.latest(ISSUER) == StoredCrl(ISSUER, 3, T0, T0 + timedelta(hours=3), 3,
                                                    b"DER3")
        assert uow.crls.latest_info(ISSUER) == CrlInfo(ISSUER, 3, T0 + timedelta(hours=3), 3)
        assert uow.crls.latest("issuing-0002") is None
        assert uow.crls.latest_info("issuing-0002") is None
    with pytest.raises(Conflict), db() as uow:
        uow.cas.add(later)


# -- policy ------------------------------------------------------------------------------


def stored_policy(name: str, version: int, owner: str = ACME) -> StoredPolicy:
    source = (f"name: {name}\nversion: {version}\nstatements:\n"
              "  - {effect: allow, actions: [mqtt:publish], topics: ['a/#']}\n")
    return StoredPolicy(parse_policy(source), owner, source, T0, "admin")


def test_policies_attachments_sites_and_targets(db: Any) -> None:
    berlin = Site("berlin", "Europe/Berlin", (ipaddress.ip_network("10.1.0.0/16"),))
    with db() as uow:
        generation = uow.policies.generation()
        uow.policies.add(stored_policy("zeta", 1, BETA))
        uow.policies.add(stored_policy("alpha", 1))
        uow.policies.add(stored_policy("alpha", 2))  # the service keeps a policy's owner
        for target in (AttachmentTarget(TargetKind.DEVICE, "d1"),
                       AttachmentTarget(TargetKind.ORG_UNIT, "acme")):
            uow.policy_attachments.attach(Attachment("alpha", target, ACME))
        uow.policy_attachments.attach(Attachment("alpha", AttachmentTarget(
            TargetKind.ORG_UNIT, "acme"), ACME))  # again: no change
        uow.policy_attachments.attach(Attachment("zeta", AttachmentTarget(
            TargetKind.GROUP, "g"), BETA))
        assert uow.sites.save(berlin, T0)
        assert not uow.sites.save(berlin, T0)
        assert uow.policies.generation() == generation + 8
        uow.groups.add(Group("line-1", "Line 1", "beta", BETA, "", T0))
    with db() as uow:
        assert uow.policy_attachments.detach("zeta", AttachmentTarget(TargetKind.GROUP, "g"))
        assert uow.policy_attachments.detach("zeta", AttachmentTarget(TargetKind.GROUP,
                                                                      "g")) is None
        assert uow.policies.generation() == generation + 9
    with db.reading() as uow:
        assert uow.policies.latest("alpha") == stored_policy("alpha", 2)
        assert uow.policies.get("alpha", 1) == stored_policy("alpha", 1)
        assert uow.policies.get("alpha", 3) is None and uow.policies.latest("nope") is None
        assert uow.policies.versions("alpha") == [1, 2]
        assert [(p.document.name, p.document.version) for p in uow.policies.current()] == [
            ("alpha", 2), ("zeta", 1)]
        assert uow.policies.names_under(ACME) == ["alpha"]
        assert uow.policies.names_under(BETA) == ["zeta"]
        assert uow.policies.names_under("/root/") == ["alpha", "zeta"]
        assert uow.policies.names_under("/root/acme/plant/") == ["alpha"]
        assert [(a.policy, str(a.target)) for a in uow.policy_attachments.all()] == [
            ("alpha", "device d1"), ("alpha", "org-unit acme")]
        assert [str(a.target) for a in uow.policy_attachments.for_policy("alpha")] == [
            "device d1", "org-unit acme"]
        assert uow.sites.sites() == [berlin]
        scope = uow.policy_targets.scope_of
        assert [scope(AttachmentTarget(kind, target_id)) for kind, target_id in (
            (TargetKind.ORG_UNIT, "acme"), (TargetKind.DEVICE, "d2"),
            (TargetKind.GROUP, "line-1"), (TargetKind.DEVICE_TYPE, "sensor"),
            (TargetKind.DEVICE_TYPE, "toaster"), (TargetKind.DEVICE, "nope"))] == [
            ACME, BETA, BETA, "/root/", None, None]
    with pytest.raises(Conflict), db() as uow:
        uow.policies.add(stored_policy("alpha", 2))


# -- what the decision point, OCSP and the event ingest read beside the stores -----------


def readers(db: Any, clock: FrozenClock) -> tuple[Any, Any, Any]:
    """The change log, the certificate status reader and the device lookup of ``db``."""
    if isinstance(db, MemoryDatabase):
        return (MemoryFleetReads(db, clock), MemoryStatusReader(db.uow.certificates),
                MemoryDeviceLookup(db.uow.devices))
    return SqlFleetReads(db, clock), SqlStatusReader(db.engine), SqlDeviceLookup(db.engine)


def test_change_log_status_reader_and_device_lookup(db: Any) -> None:
    clock = FrozenClock(T0 + timedelta(hours=1))
    t1 = T0 + timedelta(minutes=1)
    changes, status, lookup = readers(db, clock)
    assert changes.psk_version() == (0, None)
    with db() as uow:
        uow.devices.add(device("d4", BETA, type_name="gateway"))
        uow.devices.set_state("d4", DeviceState.DECOMMISSIONED, T0)
        uow.devices.touch(["d1"], t1)
        uow.groups.add(Group("line-1", "Line 1", "acme", ACME, "", T0))
        uow.groups.add_member("line-1", "d3", T0)
        uow.certificates.reserve_many([certificate(1 << 64), certificate((1 << 64) + 1, "d2")])
        uow.certificates.complete([signed(1 << 64), signed((1 << 64) + 1, "d2")])
        uow.certificates.revoke(ISSUER, (1 << 64) + 1, t1, RevocationReason.KEY_COMPROMISE)
        uow.psks.add(psk("p1", "d3"))
        uow.psks.add(psk("p2", "d3", created=5))
        uow.psks.revoke("p1", t1, "rotated", "p2")
        uow.trust.put(TrustScore("d1", 70, (), None, T0))
    assert sorted(changes.device_changes(T0)) == [("d1", t1)]
    # d1 changed after its score: still to score; once its score's time is its touch's
    # (the trust refresher's own), it is left out
    assert sorted(changes.unscored_changes(T0)) == [("d1", t1)]
    with db() as uow:
        uow.trust.put(TrustScore("d1", 70, (), None, t1))
    assert changes.unscored_changes(T0) == []
    assert sorted(changes.device_changes(T0)) == [("d1", t1)]
    assert changes.psk_version() == (1, t1)
    assert changes.device("d4").state is DeviceState.DECOMMISSIONED
    assert [d.id for d in changes.device_page(None, 10)] == ["d1", "d2", "d3"]
    assert [d.id for d in changes.device_page("d1", 1)] == ["d2"]
    assert changes.groups_of(["d1", "d3"]) == {"d3": {"line-1"}}
    assert changes.posture_of(["d1", "d2", "d3"]) == {
        "d1": DevicePosture(70.0, None, credentialed=True),
        "d2": DevicePosture(None, None, credentialed=False),
        "d3": DevicePosture(None, None, credentialed=True)}
    assert status.status_of(ISSUER, (1 << 64) + 1) == (
        CertificateStatus.REVOKED, t1, RevocationReason.KEY_COMPROMISE)
    assert status.status_of(ISSUER, 5) is None
    assert lookup.types_and_paths(["d4", "d1", "nope"]) == {"d4": ("gateway", BETA),
                                                            "d1": ("sensor", ACME)}


# -- attestation -------------------------------------------------------------------------


def signer(signer_id: str, name: str, path: str = ACME, key_id: str | None = None
           ) -> FirmwareSigner:
    return FirmwareSigner(id=signer_id, name=name, org_unit_id=path.split("/")[-2],
                          org_path=path, algorithm=SignerAlgorithm.ES256, public_key_pem="PEM",
                          key_id=key_id or f"kid-{signer_id}", created_at=T0, created_by="admin")


def image(image_id: str, version: str, signer_id: str = "s1", path: str = ACME, *,
          created: int = 0) -> FirmwareImage:
    return FirmwareImage(id=image_id, device_type="sensor", version=version,
                         sha256=f"{image_id:0>64}", org_unit_id=path.split("/")[-2],
                         org_path=path, signer_id=signer_id, metadata_jws="jws",
                         created_at=T0 + timedelta(seconds=created), created_by="admin")


def firmware_status(device_id: str, compliant: bool, image_id: str | None = None,
                    firmware_hash: str = "AB12") -> FirmwareStatus:
    return FirmwareStatus(device_id=device_id, firmware_version="1.0",
                          firmware_hash=firmware_hash, compliant=compliant, reason="why",
                          attested_at=T0, image_id=image_id,
                          measurements=(Measurement("boot", "00"),))


def test_firmware(db: Any) -> None:
    t1 = T0 + timedelta(minutes=1)
    with db() as uow:
        store = uow.firmware
        store.add_signer(signer("s2", "zed", "/root/"))
        store.add_signer(signer("s1", "acme-signer"))
        store.add_image(image("i2", "2.0", created=2))
        store.add_image(image("i1", "1.0", created=1))
        store.put_rule(FirmwareRule("root", "/root/", "sensor", "1.0", T0, "admin"))
        assert store.put_rule(FirmwareRule("root", "/root/", "sensor", "2.0", t1, "admin")) \
            == FirmwareRule("root", "/root/", "sensor", "1.0", T0, "admin")
        assert store.put_status(firmware_status("d1", True, "i1"), t1)
        assert not store.put_status(firmware_status("d1", True, "i2"), T0)
        assert store.put_status(firmware_status("d3", False, firmware_hash="ab12"), t1)
        store.add_nonce(AttestationNonce("n1", "d1", T0, T0 + timedelta(minutes=5)))
        store.add_nonce(AttestationNonce("n2", "d1", T0, T0 + timedelta(seconds=1)))
        assert not store.use_nonce("n1", "d2", T0)
        assert store.use_nonce("n1", "d1", T0)
        assert not store.use_nonce("n1", "d1", T0)
        assert store.revoke_signer("s1", t1, "admin")
        assert not store.revoke_signer("s1", t1, "admin")
    with db() as uow:
        store = uow.firmware
        assert store.open_nonces("d1", T0) == 1
        assert store.purge_nonces("d1", T0 + timedelta(seconds=2)) == 2
        assert store.nonce("n1") is None
    with db.reading() as uow:
        store = uow.firmware
        assert [s.id for s in store.signers_under("/root/")] == ["s2", "s1"]
        assert [s.id for s in store.signers_over("/root/acme/plant/")] == ["s1", "s2"]
        assert store.signer_by_name("acme", "acme-signer").revoked_at == t1
        assert [i.id for i in store.images_under(ACME)] == ["i1", "i2"]
        assert [i.id for i in store.images_of_signer("s1")] == ["i1", "i2"]
        assert sorted(i.id for i in store.images_over("/root/acme/plant/", "sensor")) == [
            "i1", "i2"]
        assert [r.min_version for r in store.rules_over(ACME, "sensor")] == ["2.0"]
        assert [r.min_version for r in store.rules_under("/root/")] == ["2.0"]
        assert store.status("d1") == firmware_status("d1", True, "i2")
        assert set(store.statuses(["d1", "d2", "d3"])) == {"d1", "d3"}
        assert [(s.device_id, p) for s, p in store.statuses_of_type("sensor", "/root/")] == [
            ("d1", ACME), ("d3", ACME)]
        assert [s.device_id for s, _ in store.unmatched_statuses("sensor", ACME, "Ab12")] == [
            "d3"]
        assert [s.device_id for s in store.statuses_of_signer("s1")] == ["d1"]
        assert [uow.devices.get(i).updated_at for i in ("d1", "d3")] == [t1, t1]
    for duplicate in (signer("s9", "acme-signer"), signer("s9", "other", key_id="kid-s1")):
        with pytest.raises(Conflict), db() as uow:
            uow.firmware.add_signer(duplicate)
    with pytest.raises(Conflict), db() as uow:
        uow.firmware.add_image(image("i9", "1.0"))


# -- tokens ------------------------------------------------------------------------------


def client(client_id: str, device_id: str | None = None, path: str = ACME) -> OAuthClient:
    return OAuthClient(client_id=client_id, kind=ClientKind.DEVICE, device_id=device_id,
                       org_unit_id=path.split("/")[-2], org_path=path,
                       auth_methods=(AuthMethod.PRIVATE_KEY_JWT,),
                       grant_types=(GrantType.CLIENT_CREDENTIALS,), scopes=("mqtt:publish",),
                       audiences=("broker",), jwks={"keys": []}, status=ClientStatus.ACTIVE,
                       created_at=T0, created_by="admin")


def device_code(code_hash: str, user_code: str, *, created: int = 0) -> DeviceCode:
    return DeviceCode(device_code_hash=code_hash, user_code=user_code, client_id="c1",
                      org_path=ACME, scopes=("read",), audience="api",
                      status=DeviceCodeStatus.PENDING,
                      created_at=T0 + timedelta(seconds=created),
                      expires_at=T0 + timedelta(minutes=10), interval_seconds=5)


def test_oauth_stores(db: Any) -> None:
    t1 = T0 + timedelta(minutes=1)
    with db() as uow:
        for c in (client("c2", "d2", BETA), client("c1", "d1")):
            uow.oauth_clients.add(c)
        uow.oauth_clients.revoke("c2", t1)
        uow.groups.add(Group("line-1", "Line 1", "acme", ACME, "", T0))
        uow.groups.add_member("line-1", "d1", T0)
        uow.trust.put(TrustScore("d1", 70, (), None, T0))
        uow.certificates.reserve_many([certificate(1 << 64)])
        uow.certificates.complete([signed(1 << 64)])
        uow.oauth_signing_keys.add(StoredSigningKey("k2", "ES256", {"kty": "EC"}, "PEM", t1))
        uow.oauth_signing_keys.add(StoredSigningKey("k1", "ES256", {"kty": "EC"}, "PEM", T0))
        uow.oauth_signing_keys.retire("k1", t1, t1 + timedelta(hours=1))
        assert uow.oauth_assertion_jtis.use("c1", "j1", t1)
        assert not uow.oauth_assertion_jtis.use("c1", "j1", t1)
        assert uow.oauth_assertion_jtis.use("c2", "j1", T0)
        uow.oauth_revoked_tokens.add(RevokedToken("t1", "c1", ACME, T0, t1))
        uow.oauth_revoked_tokens.add(RevokedToken("t1", "c1", ACME, T0, t1))
        uow.oauth_device_codes.add(device_code("h2", "USER-2", created=2))
        uow.oauth_device_codes.add(device_code("h1", "USER-1", created=1))
        assert uow.oauth_device_codes.decide("h1", DeviceCodeStatus.APPROVED, T0, "admin")
        assert not uow.oauth_device_codes.decide("h1", DeviceCodeStatus.DENIED, T0, "admin")
        uow.oauth_device_codes.polled("h2", T0, 10)
        assert uow.oauth_device_codes.redeem("h1", t1)
        assert not uow.oauth_device_codes.redeem("h1", t1)
    with db() as uow:
        assert uow.oauth_assertion_jtis.purge(t1) == 1
        assert uow.oauth_revoked_tokens.purge(t1 + timedelta(seconds=1)) == 1
    with db.reading() as uow:
        clients = uow.oauth_clients
        assert clients.get("c1") == client("c1", "d1")
        assert clients.for_device("d2").revoked_at == t1
        assert [c.client_id for c in clients.list_under(org_path="/root/")] == ["c1", "c2"]
        assert set(clients.get_many(["c1", "nope"])) == {"c1"}
        assert clients.device_standing("d1") == (["line-1"], DevicePosture(70.0, None))
        assert clients.device_standing("d2") == ([], None)
        assert clients.device_standings(["d1", "d3", "nope"]) == {
            "d1": (["line-1"], DevicePosture(70.0, None)), "d3": ([], None)}
        presented = clients.presented_certificate(ISSUER, 1 << 64)
        assert (presented.status, presented.pem, presented.device_id) == (
            CertificateStatus.ISSUED, None, "d1")
        assert clients.presented_certificates(ISSUER, [1 << 64, 5]) == {1 << 64: presented}
        keys = uow.oauth_signing_keys.list_all()
        assert [(k.kid, k.retired_at) for k in keys] == [("k1", t1), ("k2", None)]
        assert not uow.oauth_revoked_tokens.is_denied("t1")
        codes = uow.oauth_device_codes
        assert codes.by_hash("h1").status is DeviceCodeStatus.USED
        assert codes.by_user_code("USER-2").interval_seconds == 10
        assert [c.device_code_hash for c in codes.pending_under(org_path="/root/", now=T0)] \
            == ["h2"]
    with pytest.raises(Conflict), db() as uow:
        uow.oauth_clients.add(client("c3", "d1"))
    with pytest.raises(Conflict), db() as uow:
        uow.oauth_device_codes.add(device_code("h3", "USER-2"))


def test_memory_refuses_a_write_inside_a_write() -> None:
    """On SQLite the inner one would wait for the outer's writer lock until it timed
    out; the memory database says so at once instead of committing both together."""
    db = MemoryDatabase()
    with db(), pytest.raises(NestedWrite), db():
        pass
    with db.writer_if_free() as free, db():
        assert free


def test_memory_changes_go_with_their_transaction() -> None:
    db, commits = MemoryDatabase(), []
    db.after_commit.append(lambda: commits.append(list(db.uow.changes.recorded)))
    with db() as uow:
        uow.changes.record("revoked 1")
    with pytest.raises(RuntimeError), db() as uow:
        uow.changes.record("revoked 2")
        raise RuntimeError("rolled back")
    with db() as uow:
        with pytest.raises(RuntimeError), uow.savepoint():
            uow.changes.record("revoked 3")
            raise RuntimeError("rolled back")
        uow.changes.record("revoked 4")
    assert commits == [["revoked 1"], ["revoked 1", "revoked 4"]]
