"""G7 against a database writer: a wiped, truncated or rolled-back chain is told from the
signed checkpoints kept outside the database, and proofs can be checked without iotiam.

The attacker here can run any SQL (including putting back a head row they saved
earlier, whose MAC is genuine) but cannot read the data directory's keys.
"""

from __future__ import annotations

import base64
import json
import socket
from datetime import timedelta
from typing import Any

import pytest
from fleet import add_device
from sqlalchemy import delete, insert, select, update

from audit.test_merkle import rfc_verify_consistency, rfc_verify_inclusion
from conftest import Installation
from iotiam.audit.anchor import Refused, Unchanged, Written
from iotiam.audit.checkpoint import Verifier
from iotiam.audit.merkle import leaf_hash
from iotiam.audit.proofs import check_bundle
from iotiam.bootstrap import checkpoint_writer
from iotiam.config import ca_passphrase
from iotiam.errors import InvalidInput
from iotiam.storage.tables.audit import audit_head, audit_records

LAST = 13  # 7 records from init, 6 registrations
KEPT = 11  # the head saved after 4 registrations


@pytest.fixture
def anchored(installation: Installation) -> tuple[Installation, dict[str, Any]]:
    """Records 1..13 under a checkpoint of 13 (and init's of 7); the head row as it was
    at record 11, saved by someone with SQL access."""
    api = installation.api()
    saved: dict[str, Any] = {}
    for i in range(1, 7):
        installation.clock.advance(timedelta(seconds=1))
        add_device(api, f"dev-{i}")
        if i == 4:
            saved = head_row(installation)
    assert isinstance(installation.services.checkpoints.write(), Written)
    return installation, saved


def head_row(installation: Installation) -> dict[str, Any]:
    with installation.services.database.engine.connect() as conn:
        return dict(conn.execute(select(audit_head)).one()._mapping)


def execute(installation: Installation, *statements: Any) -> None:
    """Change the database behind the service's back."""
    with installation.services.database.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def verify(installation: Installation) -> dict[str, Any]:
    answer = installation.api().get("/v1/audit/verify")
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def roll_back(installation: Installation, saved: dict[str, Any]) -> None:
    """Cut the tail and put back the older, genuinely MAC'd head row."""
    execute(installation, delete(audit_records).where(audit_records.c.seq > KEPT),
            delete(audit_head), insert(audit_head).values(**saved))


def test_anchor_ok_untouched(anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, _ = anchored
    report = verify(installation)
    assert (report["ok"], report["records"], report["problem"]) == (True, LAST, None)
    assert report["checkpoint"] == {"size": LAST, "at": "2026-03-01T12:00:06+00:00"}


def test_anchor_ok_nothing_new_is_not_signed_again(
        anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, _ = anchored
    assert installation.services.checkpoints.write() == Unchanged(LAST)
    history = (installation.settings.audit_dir / "checkpoints.jsonl").read_text()
    assert [json.loads(line)["size"] for line in history.splitlines()] == [7, LAST]


def test_anchor_fail_wiped(anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, _ = anchored
    execute(installation, delete(audit_records), delete(audit_head))
    report = verify(installation)
    assert report["ok"] is False
    assert report["problem"] == ("the checkpoint of 2026-03-01 12:00:06 UTC signed 13 "
                                 "records; the database has 0: records 1\u201313 are missing")
    assert (report["records"], report["first_bad_seq"]) == (0, 1)


def test_anchor_fail_truncated_and_older_head_restored(
        anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, saved = anchored
    roll_back(installation, saved)
    report = verify(installation)
    assert report["ok"] is False
    assert report["problem"] == ("the checkpoint of 2026-03-01 12:00:06 UTC signed 13 "
                                 "records; the database has 11: records 12\u201313 are missing")
    assert report["first_bad_seq"] == KEPT + 1


def test_anchor_fail_rolled_back_and_written_on(
        anchored: tuple[Installation, dict[str, Any]]) -> None:
    """After the rollback new records fill the gap: same count, other records."""
    installation, saved = anchored
    roll_back(installation, saved)
    for name in ("late-1", "late-2", "late-3"):
        add_device(installation.api(), name)
    report = verify(installation)
    assert report["ok"] is False
    # the last checkpoint that still matches is init's (7): the change lies after it
    assert report["problem"] == (
        "records 8\u201313 are not the ones the checkpoint of 2026-03-01 12:00:06 UTC "
        "signed (13 records): the chain was rewritten, reordered or rolled back")
    assert report["first_bad_seq"] == 8


def test_anchor_fail_writer_refuses_to_sign_a_rollback(
        anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, saved = anchored
    published: list[tuple[str, bool]] = []
    writer = installation.services.checkpoints
    writer._publish = lambda note, refused: published.append((note, refused))
    roll_back(installation, saved)
    outcome = writer.write()
    assert isinstance(outcome, Refused)
    assert "signed 13 records but the database's chain head is at 11" in outcome.reason
    add_device(installation.api(), "late-1")
    add_device(installation.api(), "late-2")
    add_device(installation.api(), "late-3")
    outcome = writer.write()
    assert isinstance(outcome, Refused)
    assert "record 14 does not continue the chain" in outcome.reason
    assert writer.latest is not None and writer.latest.size == LAST
    assert [refused for _, refused in published] == [True, True]


def test_anchor_fail_forged_checkpoint_in_the_file(
        anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, _ = anchored
    path = installation.settings.audit_dir / "checkpoints.jsonl"
    lines = path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["note"] = entry["note"].replace("\n13\n", "\n11\n")
    path.write_text(lines[0] + "\n" + json.dumps(entry) + "\n")
    report = verify(installation)
    assert report["ok"] is False
    assert report["problem"] == ("stored checkpoint 2 (2026-03-01 12:00:06 UTC) is not "
                                 "genuine: the checkpoint signature does not verify")


def test_anchor_ok_head_of_an_older_version_is_rebuilt(installation: Installation) -> None:
    """Heads written before the tree existed carry no compact range: rebuilt once."""
    execute(installation, update(audit_head).values(frontier=None))
    add_device(installation.api(), "dev-1")
    assert isinstance(installation.services.checkpoints.write(), Written)
    assert verify(installation)["ok"] is True


# -- proofs ----------------------------------------------------------------------------


def verifier(installation: Installation) -> Verifier:
    return Verifier.parse((installation.settings.audit_dir / "checkpoint.vkey").read_text())


def note_parts(note: str) -> tuple[int, bytes]:
    """Size and root of a checkpoint note, read by hand (its signature is checked apart)."""
    lines = note.split("\n")
    return int(lines[1]), base64.b64decode(lines[2])


def test_proof_ok_inclusion_of_every_record(
        anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, _ = anchored
    api = installation.api()
    for seq in range(1, LAST + 1):
        answer = api.get("/v1/audit/proofs/inclusion", params={"seq": seq})
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        assert check_bundle(bundle, verifier(installation)) == (
            f"included: record {seq} is in the 13-record checkpoint of "
            f"{verifier(installation).name}")
        # and by the test's own reading of RFC 9162 §2.1.3.2
        size, root = note_parts(bundle["checkpoint"])
        leaf = leaf_hash(bytes.fromhex(bundle["record"]["hash"]))
        proof = [base64.b64decode(h) for h in bundle["proof"]]
        assert rfc_verify_inclusion(seq - 1, size, leaf, proof, root)


def test_proof_ok_consistency_between_checkpoints(
        anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, _ = anchored
    answer = installation.api().get("/v1/audit/proofs/consistency", params={"old": 7})
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert check_bundle(bundle, verifier(installation)).startswith(
        "consistent: the 7-record checkpoint is a prefix of the 13-record checkpoint")
    old_size, old_root = note_parts(bundle["old_checkpoint"])
    new_size, new_root = note_parts(bundle["new_checkpoint"])
    proof = [base64.b64decode(h) for h in bundle["proof"]]
    assert rfc_verify_consistency(old_size, new_size, old_root, new_root, proof)


def _tamper(bundle: dict[str, Any], how: str) -> dict[str, Any]:
    bundle = json.loads(json.dumps(bundle))
    if how == "proof-hash":
        first = base64.b64decode(bundle["proof"][0])
        bundle["proof"][0] = base64.b64encode(bytes([first[0] ^ 1]) + first[1:]).decode()
    elif how == "record-field":
        bundle["record"]["actor"] = "token:mallory"
    elif how == "record-and-hash":
        bundle["record"]["hash"] = "ab" * 32
    elif how == "index":
        bundle["leaf_index"] += 1
        bundle["record"]["seq"] += 1
    elif how == "checkpoint-size":
        bundle["checkpoint"] = bundle["checkpoint"].replace("\n13\n", "\n14\n")
    return bundle


@pytest.mark.parametrize("how", ["proof-hash", "record-field", "record-and-hash", "index",
                                 "checkpoint-size"])
def test_proof_fail_tampered_inclusion(anchored: tuple[Installation, dict[str, Any]],
                                       how: str) -> None:
    installation, _ = anchored
    bundle = installation.api().get("/v1/audit/proofs/inclusion",
                                    params={"seq": 9}).json()
    with pytest.raises(InvalidInput):
        check_bundle(_tamper(bundle, how), verifier(installation))


def test_proof_fail_tampered_consistency(anchored: tuple[Installation, dict[str, Any]]
                                         ) -> None:
    installation, _ = anchored
    bundle = installation.api().get("/v1/audit/proofs/consistency",
                                    params={"old": 7}).json()
    with pytest.raises(InvalidInput, match="does not verify"):
        check_bundle(_tamper(bundle, "proof-hash"), verifier(installation))


@pytest.mark.parametrize(("path", "params", "status"), [
    ("inclusion", {"seq": 9, "size": 12}, 404),  # no checkpoint signed 12 records
    ("inclusion", {"seq": 14}, 400),  # beyond the checkpoint
    ("inclusion", {"seq": 2**70}, 400),
    ("inclusion", {"seq": "x"}, 400),
    ("consistency", {"old": 13, "new": 7}, 400),
])
def test_proof_fail_bad_request(anchored: tuple[Installation, dict[str, Any]], path: str,
                                params: dict[str, Any], status: int) -> None:
    installation, _ = anchored
    answer = installation.api().get(f"/v1/audit/proofs/{path}", params=params)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_proof_fail_after_rollback_is_a_conflict(
        anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, saved = anchored
    roll_back(installation, saved)
    answer = installation.api().get("/v1/audit/proofs/inclusion", params={"seq": 3})
    assert answer.status_code == 409
    assert "no longer holds the 13 records" in answer.json()["detail"]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_proof_fail_below_root_admin(anchored: tuple[Installation, dict[str, Any]],
                                     role: str) -> None:
    installation, _ = anchored
    api = installation.api(installation.token(role))
    assert api.get("/v1/audit/proofs/inclusion", params={"seq": 1}).status_code == 403
    assert api.get("/v1/audit/checkpoint").status_code == 403


def test_anchor_ok_checkpoint_sent_to_syslog(installation: Installation) -> None:
    """With a syslog target configured the SIEM gets every checkpoint as RFC 5424."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        settings = installation.settings.with_overrides(
            alert_syslog=f"127.0.0.1:{receiver.getsockname()[1]}")
        writer, _, _ = checkpoint_writer(settings, installation.services.database,
                                         installation.clock,
                                         ca_passphrase(settings, create=False))
        add_device(installation.api(), "dev-1")
        outcome = writer.write()
        assert isinstance(outcome, Written)
        message = receiver.recv(65536).decode()
    assert message.startswith("<86>1 ")  # authpriv, informational
    assert " audit:checkpoint:signed [iotiam@32473 origin=\"iotiam/audit/" in message
    assert f'size="{outcome.checkpoint.size}"' in message
    body = json.loads(message.split("\ufeff", 1)[1])
    assert body == {"checkpoint": outcome.checkpoint.note}


def test_anchor_fail_tree_head_altered(anchored: tuple[Installation, dict[str, Any]]) -> None:
    installation, _ = anchored
    frontier = head_row(installation)["frontier"]
    execute(installation, update(audit_head).values(frontier="00" * 32 + frontier[64:]))
    report = verify(installation)
    assert report["ok"] is False
    assert report["problem"] == ("the chain head's Merkle tree does not match the records: "
                                 "it was altered")
    add_device(installation.api(), "dev-late")
    outcome = installation.services.checkpoints.write()
    assert outcome == Refused("the database's Merkle tree head does not match its records")
