"""G7: the audit chain verifies end to end, and an edited, removed or reordered record or a
truncated tail is reported by ``GET /v1/audit/verify``, even when the attacker rewrites
the hashes (but not the head MAC, whose key lives outside the database)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fleet import add_device
from sqlalchemy import delete, select, update

from conftest import Installation
from iotiam.audit.chain import head_mac, record_hash
from iotiam.storage.tables.audit import audit_head, audit_records

LAST = 13  # 7 records from init, 6 registrations
TARGET = 9  # the registration of dev-2
CONTENT = ("at", "tag", "actor", "org_path", "subject", "outcome", "reason", "details",
           "prev_hash", "hash")


@pytest.fixture
def chain(installation: Installation) -> Installation:
    """An installation whose audit chain holds records 1..11."""
    api = installation.api()
    for i in range(1, 7):
        installation.clock.advance(timedelta(seconds=1))
        add_device(api, f"dev-{i}")
    return installation


def verify(installation: Installation) -> dict[str, Any]:
    answer = installation.api().get("/v1/audit/verify")
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def execute(installation: Installation, *statements: Any) -> None:
    """Change the database behind the service's back, as an attacker with SQL access would."""
    with installation.services.database.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def row(installation: Installation, seq: int) -> dict[str, Any]:
    with installation.services.database.engine.connect() as conn:
        found = conn.execute(select(audit_records).where(audit_records.c.seq == seq)).one()
    return dict(found._mapping)


def rehash_from(installation: Installation, seq: int) -> str:
    """Recompute every hash from ``seq`` on, as anyone who read chain.py could; returns the
    new last hash."""
    prev = row(installation, seq - 1)["hash"]
    for current in range(seq, LAST + 1):
        fields = row(installation, current)
        digest = record_hash(
            seq=current, at=fields["at"], tag=fields["tag"], actor=fields["actor"],
            org_path=fields["org_path"], subject=fields["subject"], outcome=fields["outcome"],
            reason=fields["reason"], details=json.loads(fields["details"]), prev_hash=prev,
        )
        execute(installation, update(audit_records).where(audit_records.c.seq == current)
                .values(prev_hash=prev, hash=digest))
        prev = digest
    return prev


def test_verify_ok_untouched(chain: Installation) -> None:
    assert verify(chain) == {"ok": True, "records": LAST, "head_seq": LAST, "problem": None,
                             "first_bad_seq": None,
                             # the checkpoint init signed; serve signs the rest
                             "checkpoint": {"size": 7, "at": "2026-03-01T12:00:00+00:00"}}


def test_verify_ok_details_reencoded(chain: Installation) -> None:
    """Storage may re-encode the details JSON (spacing, key order): the content is hashed."""
    execute(chain, update(audit_records).where(audit_records.c.seq == TARGET)
            .values(details='{ "type" : "sensor" }'))
    assert verify(chain)["ok"] is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", "token:mallory"),
        ("subject", "device:dev-9"),
        ("outcome", "denied"),
        ("reason", "nothing to see"),
        ("details", '{"type":"gateway"}'),
        ("org_path", "/root/acme/"),
        ("tag", "admin:device:imported"),
        ("hash", "f" * 64),
    ],
)
def test_verify_fail_edited_field(chain: Installation, field: str, value: str) -> None:
    execute(chain, update(audit_records).where(audit_records.c.seq == TARGET)
            .values({field: value}))
    report = verify(chain)
    assert report["ok"] is False
    assert report["problem"] == f"record {TARGET} was altered (hash mismatch)"
    assert report["first_bad_seq"] == TARGET


def test_verify_fail_edited_time(chain: Installation) -> None:
    at = row(chain, TARGET)["at"]
    execute(chain, update(audit_records).where(audit_records.c.seq == TARGET)
            .values(at=at - timedelta(hours=3)))
    report = verify(chain)
    assert (report["ok"], report["first_bad_seq"]) == (False, TARGET)
    assert report["problem"] == f"record {TARGET} was altered (hash mismatch)"


def test_verify_fail_edited_link(chain: Installation) -> None:
    execute(chain, update(audit_records).where(audit_records.c.seq == TARGET)
            .values(prev_hash="0" * 64))
    report = verify(chain)
    assert (report["ok"], report["first_bad_seq"]) == (False, TARGET)
    assert report["problem"] == f"record {TARGET} does not link to its predecessor"


@pytest.mark.parametrize("seq", [1, TARGET])
def test_verify_fail_removed_record(chain: Installation, seq: int) -> None:
    execute(chain, delete(audit_records).where(audit_records.c.seq == seq))
    report = verify(chain)
    assert report["ok"] is False
    assert report["problem"] == (f"expected record {seq}, found {seq + 1}: "
                                 "a record was removed")
    assert report["first_bad_seq"] == seq


@pytest.mark.parametrize(("first", "second"), [(TARGET, TARGET + 1), (2, 10)])
def test_verify_fail_reordered(chain: Installation, first: int, second: int) -> None:
    """Two records swap places (their contents swap, the sequence numbers stay)."""
    a, b = row(chain, first), row(chain, second)
    execute(
        chain,
        update(audit_records).where(audit_records.c.seq == first)
        .values({k: b[k] for k in CONTENT}),
        update(audit_records).where(audit_records.c.seq == second)
        .values({k: a[k] for k in CONTENT}),
    )
    report = verify(chain)
    assert report["ok"] is False
    assert report["problem"] == f"record {first} does not link to its predecessor"
    assert report["first_bad_seq"] == first


@pytest.mark.parametrize("removed", [1, 3, LAST])
def test_verify_fail_truncated_tail(chain: Installation, removed: int) -> None:
    kept = LAST - removed
    execute(chain, delete(audit_records).where(audit_records.c.seq > kept))
    report = verify(chain)
    assert report["ok"] is False
    assert report["problem"] == (f"the chain ends at record {kept} but the head says {LAST}: "
                                 "the tail was truncated or rewritten")
    assert (report["records"], report["head_seq"], report["first_bad_seq"]) == (
        kept, LAST, kept + 1)


@pytest.mark.parametrize("forged_mac", ["guessed-key", "old-mac"])
def test_verify_fail_truncated_tail_with_forged_head(chain: Installation,
                                                     forged_mac: str) -> None:
    """The attacker cuts the tail and points the head at the new last record."""
    kept = LAST - 2
    with chain.services.database.engine.connect() as conn:
        old_mac = conn.execute(select(audit_head.c.mac)).scalar_one()
    new_last = row(chain, kept)["hash"]
    mac = old_mac if forged_mac == "old-mac" else head_mac(kept, new_last, b"guessed-key")
    execute(chain, delete(audit_records).where(audit_records.c.seq > kept),
            update(audit_head).values(seq=kept, hash=new_last, mac=mac))
    report = verify(chain)
    assert report["ok"] is False
    assert report["problem"] == "the chain head was altered (MAC mismatch)"
    assert report["head_seq"] == kept


def test_verify_fail_rewritten_and_rehashed(chain: Installation) -> None:
    """Editing a record and recomputing every later hash still leaves the head behind."""
    execute(chain, update(audit_records).where(audit_records.c.seq == TARGET)
            .values(actor="token:mallory"))
    rehash_from(chain, TARGET)
    report = verify(chain)
    assert report["ok"] is False
    assert report["problem"] == (f"the chain ends at record {LAST} but the head says {LAST}: "
                                 "the tail was truncated or rewritten")


def test_verify_fail_rewritten_rehashed_and_head_forged(chain: Installation) -> None:
    execute(chain, update(audit_records).where(audit_records.c.seq == TARGET)
            .values(actor="token:mallory"))
    last = rehash_from(chain, TARGET)
    execute(chain, update(audit_head).values(hash=last,
                                             mac=head_mac(LAST, last, b"\x00" * 32)))
    report = verify(chain)
    assert report["ok"] is False
    assert report["problem"] == "the chain head was altered (MAC mismatch)"


def test_verify_fail_head_removed(chain: Installation) -> None:
    execute(chain, delete(audit_head))
    report = verify(chain)
    assert (report["ok"], report["problem"]) == (False, "the chain head is missing")


def test_verify_fail_not_healed_by_later_records(chain: Installation) -> None:
    execute(chain, delete(audit_records).where(audit_records.c.seq > LAST - 2))
    add_device(chain.api(), "dev-late")
    report = verify(chain)
    assert report["ok"] is False
    assert report["problem"] == (f"expected record {LAST - 1}, found {LAST + 1}: "
                                 "a record was removed")


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_verify_fail_below_admin(chain: Installation, role: str) -> None:
    answer = chain.api(chain.token(role)).get("/v1/audit/verify")
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
