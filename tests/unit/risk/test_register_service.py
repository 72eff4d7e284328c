"""The register on the in-memory fakes: rebuild, accept and expiry, G9, refresh."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from iotiam.audit.models import AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.clock import FrozenClock
from iotiam.credentials.models import PskStatus
from iotiam.errors import Conflict, Forbidden, InvalidInput, NotFound
from iotiam.kernel import SYSTEM, Principal, Role
from iotiam.policy.lint import lint_policy
from iotiam.response.models import TrustScore
from iotiam.risk.models import EntryFilter, FleetChannels, RiskFactor, Subject
from iotiam.risk.service import RiskRegister
from iotiam.testing.fakes.risk import FixedChannels, ListedDiscovery
from iotiam.testing.fakes.unit_of_work import MemoryDatabase

from .facts import (
    NOW_DT,
    asset,
    cert,
    device,
    device_type,
    psk,
    seen_cert,
    seen_device,
    seen_psk,
)

ACME = Principal("acme-admin", Role.ADMIN, "acme", "/root/acme/")
GLOBEX = Principal("globex-admin", Role.ADMIN, "globex", "/root/globex/")
VIEWER = Principal("acme-viewer", Role.VIEWER, "acme", "/root/acme/")


@pytest.fixture
def world() -> tuple[RiskRegister, MemoryDatabase, FrozenClock, ListedDiscovery]:
    clock = FrozenClock(NOW_DT)
    db = MemoryDatabase()
    uow = db.uow
    uow.device_types.add(device_type())
    for ident, org in (("dev-1", "/root/acme/"), ("dev-2", "/root/globex/")):
        uow.devices.add(device(ident, org=org, updated_days=60))
        record = cert(ident, serial=int(ident[-1]), issued_days=1, lifetime_days=365, org=org,
                      key=ident)
        uow.certificates.certificates[(record.issuer_id, record.serial)] = record
    discovery = ListedDiscovery(
        assets=[asset("ast-acme", ports=(502,)), asset("ast-globex", org="/root/globex/")],
        seen_devices=[seen_device("dev-1", last_days=45)])
    audit = AuditTrail(db, clock, secrets.token_bytes(32))
    register = RiskRegister(db, audit, clock, discovery, FixedChannels(), lint_policy)
    return register, db, clock, discovery


def test_ok_rebuild_lists_each_identity_with_factors(world) -> None:  # type: ignore[no-untyped-def]
    register, db, _, _ = world
    report = register.rebuild()
    items, total, _ = register.entries(SYSTEM)
    assert total == len(items) == report.entries == 4
    assert {(e.subject, e.subject_id) for e in items} == {
        (Subject.ASSET, "ast-acme"), (Subject.ASSET, "ast-globex"),
        (Subject.DEVICE, "dev-1"), (Subject.DEVICE, "dev-2")}
    assert items[0].subject_id == "ast-acme"  # the unmanaged controller comes first
    tags = [r.tag for r in db.uow.audit.iter_records()]
    assert AuditTag.RISK_REGISTER_REBUILT in tags
    summary = register.summary(SYSTEM)
    assert summary.unmanaged == 2 and summary.dormant == 2 and summary.managed == 2
    assert summary.by_factor == {"unmanaged": 2, "dormant-valid-credentials": 2}


def test_ok_rebuild_drops_what_is_fixed(world) -> None:  # type: ignore[no-untyped-def]
    register, _, _, discovery = world
    register.rebuild()
    discovery.assets.clear()
    report = register.rebuild()
    assert report.removed == 2 and register.entries(SYSTEM)[1] == 2
    assert [p.counts.get("unmanaged", 0) for p in register.trend(SYSTEM)] == [2, 0]


def test_ok_filters_and_paging(world) -> None:  # type: ignore[no-untyped-def]
    register, *_ = world
    register.rebuild()
    first, total, cursor = register.entries(SYSTEM, limit=3)
    rest, _, end = register.entries(SYSTEM, after=cursor, limit=3)
    assert total == 4 and len(first) == 3 and len(rest) == 1 and end is None
    assert not {e.id for e in first} & {e.id for e in rest}
    only = register.entries(SYSTEM, EntryFilter(factor=RiskFactor.UNMANAGED))[0]
    assert {e.subject for e in only} == {Subject.ASSET}
    high = register.entries(SYSTEM, EntryFilter(min_score=first[0].score))[0]
    assert [e.id for e in high] == [first[0].id]


def test_fail_g9_tenant_sees_and_accepts_only_its_own(world) -> None:  # type: ignore[no-untyped-def]
    register, db, _, _ = world
    register.rebuild()
    acme = register.entries(ACME)[0]
    globex = register.entries(GLOBEX)[0]
    assert {e.org_path for e in acme} == {"/root/acme/"}
    assert {e.org_path for e in globex} == {"/root/globex/"}
    foreign = globex[0]
    with pytest.raises(NotFound):
        register.entry(ACME, foreign.id)
    with pytest.raises(NotFound):
        register.accept(ACME, foreign.id, foreign.factors[0].factor.value, "mine", 30)
    assert db.uow.risk.live_acceptances(NOW_DT.timestamp()) == []
    # a filter naming another tenant's subtree is empty, not a leak
    assert register.entries(ACME, EntryFilter(org_path="/root/globex/"))[1] == 0
    assert register.summary(ACME).unmanaged == 1


def test_ok_accept_hides_until_it_expires(world) -> None:  # type: ignore[no-untyped-def]
    register, db, clock, _ = world
    register.rebuild()
    (target,) = [e for e in register.entries(ACME)[0] if e.subject is Subject.DEVICE]
    before = target.score
    accepted = register.accept(ACME, target.id, "dormant-valid-credentials",
                               "spare kept in a drawer", 10)
    assert accepted.factors == () and accepted.score == 0
    assert accepted.accepted[0].reason == "spare kept in a drawer"
    assert register.entries(ACME, EntryFilter(factor=RiskFactor.DORMANT_VALID_CREDENTIALS)
                            )[1] == 0
    assert AuditTag.RISK_FACTOR_ACCEPTED in [r.tag for r in db.uow.audit.iter_records()]
    register.rebuild()  # a rebuild keeps it hidden
    assert register.entry(ACME, target.id).score == 0
    clock.advance(timedelta(days=11))
    assert register.expire_acceptances() == 1
    again = register.entry(ACME, target.id)
    assert again.accepted == () and again.score == before
    assert [h.factor for h in again.factors] == [RiskFactor.DORMANT_VALID_CREDENTIALS]


@pytest.mark.parametrize(("factor", "reason", "days", "error"), [
    ("zombie", "ok", 10, Conflict), ("nonsense", "ok", 10, InvalidInput),
    ("dormant-valid-credentials", "  ", 10, InvalidInput),
    ("dormant-valid-credentials", "ok", -1, InvalidInput),
    ("dormant-valid-credentials", "ok", 0, InvalidInput),
    ("dormant-valid-credentials", "x" * 501, 10, InvalidInput)],
    ids=["fail/factor-not-on-entry", "fail/unknown-factor", "fail/empty-reason",
         "fail/negative-expiry", "fail/zero-expiry", "fail/long-reason"])
def test_fail_accept_refused_stores_nothing(world, factor: str, reason: str, days: int,  # type: ignore[no-untyped-def]
                                            error: type[Exception]) -> None:
    register, db, _, _ = world
    register.rebuild()
    (target,) = [e for e in register.entries(ACME)[0] if e.subject is Subject.DEVICE]
    with pytest.raises(error):
        register.accept(ACME, target.id, factor, reason, days)
    assert db.uow.risk.live_acceptances(NOW_DT.timestamp()) == []
    assert register.entry(ACME, target.id).score == target.score


def test_fail_viewer_may_not_accept_or_rebuild(world) -> None:  # type: ignore[no-untyped-def]
    register, *_ = world
    register.rebuild()
    (target,) = [e for e in register.entries(ACME)[0] if e.subject is Subject.DEVICE]
    with pytest.raises(Forbidden):
        register.accept(VIEWER, target.id, "dormant-valid-credentials", "x", 1)
    with pytest.raises(Forbidden):
        register.rebuild(VIEWER)
    with pytest.raises(InvalidInput):
        register.rebuild(ACME)


def test_ok_refresh_rejudges_one_device(world) -> None:  # type: ignore[no-untyped-def]
    register, db, _, discovery = world
    register.rebuild()
    discovery.seen_devices[:] = [seen_device("dev-1", last_days=0)]
    db.uow.devices.touch(["dev-1"], NOW_DT)
    register.refresh_devices(["dev-1"])
    subjects = {e.subject_id for e in register.entries(SYSTEM)[0]}
    assert "dev-1" not in subjects and "dev-2" in subjects


def test_ok_refresh_judges_what_the_trust_refresher_handed_over(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # the trust refresher hands over the devices and scores it just stored: the register
    # judges with those and reads only the devices it was not handed
    register, db, _, _ = world
    read: list[list[str]] = []
    get_many = db.uow.devices.get_many
    monkeypatch.setattr(db.uow.devices, "get_many",
                        lambda ids: read.append(list(ids)) or get_many(ids))
    handed = device("dev-1", updated_days=0)
    register.refresh_devices(["dev-1", "dev-2"], {"dev-1": (handed, TrustScore("dev-1", 10))})
    assert read == [["dev-2"]]
    (entry,) = [e for e in register.entries(ACME)[0] if e.subject_id == "dev-1"]
    assert RiskFactor.LOW_TRUST in {h.factor for h in entry.factors}
    register.refresh_devices(["dev-1"])  # nothing handed over: read, and no score stored
    (entry,) = [e for e in register.entries(ACME)[0] if e.subject_id == "dev-1"]
    assert RiskFactor.LOW_TRUST not in {h.factor for h in entry.factors}


def test_ok_fleet_channels_and_export(world) -> None:  # type: ignore[no-untyped-def]
    register, *_ = world
    register._fleet = FixedChannels(FleetChannels(False, ()))
    register.rebuild()
    (fleet,) = register.entries(SYSTEM, EntryFilter(subject=Subject.FLEET))[0]
    assert {h.factor for h in fleet.factors} == {RiskFactor.AUDIT_EXPORT_DISABLED,
                                                RiskFactor.ALERT_CHANNELS_DISABLED}
    assert register.entries(ACME, EntryFilter(subject=Subject.FLEET))[1] == 0
    text = "".join(register.export(ACME, "csv"))
    lines = text.strip().splitlines()
    assert lines[0].startswith("id,subject") and len(lines) == 3
    import json
    assert len(json.loads("".join(register.export(ACME, "json")))) == 2
    with pytest.raises(InvalidInput):
        register.export(ACME, "xml")


def test_ok_credentials_seen_on_the_network(world) -> None:  # type: ignore[no-untyped-def]
    register, db, _, discovery = world
    db.uow.psks.add(psk("dev-1", "dev-1-old", status=PskStatus.REVOKED, revoked_days=5))
    db.uow.psks.add(psk("dev-1", "Client_identity", created_days=1))
    own = next(iter(db.uow.certificates.certificates.values()))
    discovery.seen_credentials = [
        seen_cert("e" * 64, issuer="CN=Vendor CA", assets=("ast-acme",)),
        seen_cert(own.fingerprint_sha256 or "", issuer="CN=iotiam", devices=("dev-1",),
                  org=own.org_path),
        seen_psk("dev-1-old", devices=("dev-1",)),
        seen_psk("stray", assets=("ast-acme",))]
    register.rebuild()
    by_subject = {(e.subject, e.subject_id): {h.factor for h in e.factors}
                  for e in register.entries(SYSTEM, limit=100)[0]}
    assert by_subject[(Subject.CERTIFICATE, "e" * 64)] == {RiskFactor.UNKNOWN_ISSUER}
    assert by_subject[(Subject.PSK, "dev-1-old")] == {RiskFactor.REVOKED_IN_USE}
    assert by_subject[(Subject.PSK, "Client_identity")] == {RiskFactor.DEFAULT_CREDENTIAL}
    assert by_subject[(Subject.PSK, "stray")] == {RiskFactor.UNMANAGED}
    # iotiam's own certificate, seen in use as issued, is no entry of its own
    assert not any(s is Subject.CERTIFICATE and i != "e" * 64 for s, i in by_subject)
