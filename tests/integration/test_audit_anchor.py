"""G7 end to end: a live ``iotiam serve`` signs checkpoints into its data directory, and
``iotiam audit verify`` catches a rolled-back or wiped chain that the hash chain alone
passes; proofs fetched with ``iotiam audit prove`` are checked offline by
``iotiam audit check-proof`` with nothing but the verifier key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import BACKENDS

from .conftest import serve_live
from .live_server import Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=BACKENDS)
def anchored_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Server]:
    """A server that signs a checkpoint after every record (polled each second), shared by
    the module's tests: the one that wipes the chain comes last."""
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"anchor-{request.param}"),
                          {"IOTIAM_AUDIT_CHECKPOINT_RECORDS": "1"})


def head_seq(server: Server) -> int:
    seq: int = server.sql("SELECT seq FROM audit_head")[0][0]
    return seq


def checkpoint_size(server: Server) -> int:
    with server.api() as api:
        answer = api.get("/v1/audit/checkpoint")
    assert answer.status_code == 200, answer.text
    size: int = answer.json()["size"]
    return size


def wait_for_checkpoint(server: Server, timeout: float = 20.0) -> int:
    """Until the serve job has signed everything in the database."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        size = head_seq(server)
        if checkpoint_size(server) == size:
            return size
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of {head_seq(server)} records within {timeout} s")


def settle(server: Server) -> None:
    """Let the background jobs finish appending (CRLs) so nothing moves while we tamper."""
    with server.api() as api:
        assert api.get("/v1/ca/crl").status_code == 200
    time.sleep(0.5)


def one_line_failure(result: Any) -> str:
    assert result.rc == 1, result
    lines = result.out.strip().splitlines()
    assert len(lines) == 1, result
    line: str = lines[0]
    return line


def test_anchor_live_ok_proofs_checked_offline(anchored_server: Server) -> None:
    server = anchored_server
    for i in range(3):
        server.register(f"dev-{i}")
    settle(server)
    size = wait_for_checkpoint(server)
    verified = server.cli("audit", "verify")
    assert verified.out.startswith(f"audit chain OK: {size} records, head at {size}; signed "
                                   f"checkpoint of {size} records at "), verified
    note = server.cli("audit", "checkpoint").out
    assert note.split("\n")[1] == str(size)
    assert note == (server.data_dir / "audit" / "checkpoint").read_text()

    key = server.data_dir / "audit" / "checkpoint.vkey"
    proof = server.work_dir / "inclusion.json"
    server.cli("audit", "prove", "--record", "2", "--out", proof)
    checked = server.cli("audit", "check-proof", "--key", key, proof)
    assert checked.out.strip().startswith(f"included: record 2 is in the {size}-record "
                                          "checkpoint of iotiam/audit/"), checked

    history = (server.data_dir / "audit" / "checkpoints.jsonl").read_text().splitlines()
    older = json.loads(history[0])["size"]
    consistency = server.work_dir / "consistency.json"
    server.cli("audit", "prove", "--from", str(older), "--out", consistency)
    checked = server.cli("audit", "check-proof", "--key", key, consistency)
    assert checked.out.strip().startswith(f"consistent: the {older}-record checkpoint is a "
                                          f"prefix of the {size}-record checkpoint"), checked

    bundle = json.loads(proof.read_text())
    bundle["record"]["actor"] = "token:mallory"
    proof.write_text(json.dumps(bundle))
    refused = server.cli("audit", "check-proof", "--key", key, proof, check=False)
    assert refused.rc == 1 and refused.out == "", refused
    assert refused.err.strip() == ("error: proof: the record's fields do not produce its "
                                   "hash"), refused


def test_anchor_live_fail_rolled_back_then_wiped(anchored_server: Server) -> None:
    """Last in the module: it leaves the server's chain wiped."""
    server = anchored_server
    server.register("dev-a")
    settle(server)
    wait_for_checkpoint(server)
    saved = server.sql("SELECT id, seq, hash, mac, frontier FROM audit_head")[0]._mapping
    server.register("dev-b")
    server.register("dev-c")
    settle(server)
    size = wait_for_checkpoint(server)
    kept = saved["seq"]

    # cut the tail and put back the genuine older head: the chain alone verifies
    server.sql("DELETE FROM audit_records WHERE seq > :kept", kept=kept)
    server.sql("DELETE FROM audit_head")
    server.sql("INSERT INTO audit_head (id, seq, hash, mac, frontier) "
               "VALUES (:id, :seq, :hash, :mac, :frontier)", **saved)
    rolled_back = one_line_failure(server.cli("audit", "verify", check=False))
    assert rolled_back.startswith("audit chain BROKEN: the checkpoint of "), rolled_back
    assert rolled_back.endswith(f"signed {size} records; the database has {kept}: records "
                                f"{kept + 1}\u2013{size} are missing"), rolled_back

    server.sql("DELETE FROM audit_records")
    server.sql("DELETE FROM audit_head")
    wiped = one_line_failure(server.cli("audit", "verify", check=False))
    assert wiped.endswith(f"signed {size} records; the database has 0: records "
                          f"1\u2013{size} are missing"), wiped
    # the serve job saw it too, and signed nothing over the wiped chain
    time.sleep(1.5)
    assert checkpoint_size(server) == size
    assert "audit checkpoint refused" in server.log_text()
