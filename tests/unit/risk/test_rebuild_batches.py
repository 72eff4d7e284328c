"""A rebuild's batches are written on a writer thread: any batch size gives the same
register, and a failed write fails the rebuild without finishing it."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from iotiam.audit.service import AuditTrail
from iotiam.clock import FrozenClock
from iotiam.kernel import SYSTEM
from iotiam.policy.lint import lint_policy
from iotiam.risk.service import BatchWriter, RiskRegister
from iotiam.testing.fakes.risk import FixedChannels, ListedDiscovery
from iotiam.testing.fakes.unit_of_work import MemoryDatabase

from .facts import NOW_DT, asset, cert, device, device_type, seen_device


def register_of(batch: int) -> tuple[RiskRegister, MemoryDatabase]:
    clock = FrozenClock(NOW_DT)
    db = MemoryDatabase()
    db.uow.device_types.add(device_type())
    for n in range(7):
        ident, org = f"dev-{n}", ("/root/acme/" if n % 2 else "/root/globex/")
        db.uow.devices.add(device(ident, org=org, updated_days=60))
        record = cert(ident, serial=n + 1, issued_days=1, lifetime_days=365, org=org,
                      key=ident)
        db.uow.certificates.certificates[(record.issuer_id, record.serial)] = record
    discovery = ListedDiscovery(
        assets=[asset(f"ast-{n}", ports=(502,) if n % 3 == 0 else ()) for n in range(9)],
        seen_devices=[seen_device("dev-1", last_days=45)])
    audit = AuditTrail(db, clock, secrets.token_bytes(32))
    return RiskRegister(db, audit, clock, discovery, FixedChannels(), lint_policy,
                        batch=batch), db


@pytest.mark.parametrize("batch", [1, 3, 10_000], ids=["ok/one", "ok/three", "ok/all"])
def test_ok_any_batch_size_writes_the_same_register(batch: int) -> None:
    register, _ = register_of(batch)
    report = register.rebuild()
    reference, _ = register_of(10_000)
    expected = reference.rebuild()
    assert report.entries == expected.entries == 16 and report.counts == expected.counts
    items, total, _ = register.entries(SYSTEM, limit=100)
    assert total == 16
    assert [(e.id, e.score) for e in items] == \
        [(e.id, e.score) for e in reference.entries(SYSTEM, limit=100)[0]]
    assert register.summary(SYSTEM) == reference.summary(SYSTEM)


def test_fail_write_error_fails_the_rebuild_unfinished() -> None:
    register, db = register_of(2)
    writes: list[int] = []
    put = db.uow.risk.put_entries

    def failing(entries: Any, **kwargs: Any) -> None:
        writes.append(len(entries))
        if len(writes) == 3:
            raise RuntimeError("disk full")
        put(entries, **kwargs)

    db.uow.risk.put_entries = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="disk full"):
        register.rebuild()
    assert len(writes) == 3  # the writer stopped at the failure
    assert register.trend(SYSTEM) == []  # the rebuild never finished


def test_fail_judging_error_stops_the_writer() -> None:
    written: list[int] = []
    with pytest.raises(ValueError, match="bad judge"), \
            BatchWriter(lambda batch: written.append(len(batch))) as writer:
        writer.put([])
        raise ValueError("bad judge")
    assert written == [0]
