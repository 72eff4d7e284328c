"""The checkpoint key and history in the data directory: protected like the CA keys,
written durably, refused when they do not belong together."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import Installation
from iotiam.audit.models import StoredCheckpoint
from iotiam.config import load_settings
from iotiam.errors import SetupError
from iotiam.storage.checkpoint_file import CheckpointFile, CheckpointKeyFile

PASSPHRASE = b"correct horse battery staple"


def test_key_ok_encrypted_private_and_stable(tmp_path: Path) -> None:
    files = CheckpointKeyFile(tmp_path / "secrets" / "k.key", tmp_path / "audit" / "k.vkey")
    created = files.load_or_create(PASSPHRASE)
    pem = (tmp_path / "secrets" / "k.key").read_text()
    assert pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE((tmp_path / "secrets" / "k.key").stat().st_mode) == 0o600
    assert (tmp_path / "audit" / "k.vkey").read_text() == created.verifier_key() + "\n"
    again = files.load_or_create(PASSPHRASE)
    assert again.verifier_key() == created.verifier_key()


def test_key_fail_wrong_passphrase(tmp_path: Path) -> None:
    files = CheckpointKeyFile(tmp_path / "k.key", tmp_path / "k.vkey")
    files.load_or_create(PASSPHRASE)
    with pytest.raises(SetupError, match="passphrase"):
        files.load_or_create(b"guess")


def test_key_fail_verifier_key_of_another_key(tmp_path: Path) -> None:
    mine = CheckpointKeyFile(tmp_path / "a.key", tmp_path / "a.vkey")
    other = CheckpointKeyFile(tmp_path / "b.key", tmp_path / "b.vkey")
    mine.load_or_create(PASSPHRASE)
    other.load_or_create(PASSPHRASE)
    (tmp_path / "a.vkey").write_text((tmp_path / "b.vkey").read_text())
    with pytest.raises(SetupError, match="not the public half"):
        mine.load_or_create(PASSPHRASE)


def test_key_fail_verifier_key_lost(tmp_path: Path) -> None:
    files = CheckpointKeyFile(tmp_path / "k.key", tmp_path / "k.vkey")
    files.load_or_create(PASSPHRASE)
    (tmp_path / "k.vkey").unlink()
    with pytest.raises(SetupError, match="is missing"):
        files.load_or_create(PASSPHRASE)


def _stored(size: int) -> StoredCheckpoint:
    return StoredCheckpoint(note=f"o\n{size}\nroot\n\n\u2014 o sig\n",
                            at=datetime(2026, 3, 1, 12, size, tzinfo=UTC), size=size,
                            frontier="", last_hash="0" * 64)


def test_history_ok_append_only_and_latest(tmp_path: Path) -> None:
    log = CheckpointFile(tmp_path / "audit")
    assert log.latest() is None
    assert list(log.history()) == []
    for size in (7, 9, 12):
        log.append(_stored(size))
    assert [c.size for c in log.history()] == [7, 9, 12]
    assert log.latest() == _stored(12)
    assert (tmp_path / "audit" / "checkpoint").read_text() == _stored(12).note


def test_history_ok_torn_last_line_skipped(tmp_path: Path) -> None:
    log = CheckpointFile(tmp_path / "audit")
    log.append(_stored(7))
    with log.history_path.open("a") as f:
        f.write('{"at": "2026-03-01T12:09:00+00:00", "size": 9, "no')
    assert [c.size for c in log.history()] == [7]


def test_init_ok_checkpoint_signed_and_verifier_key_left(installation: Installation
                                                          ) -> None:
    audit_dir = installation.settings.audit_dir
    latest = json.loads((audit_dir / "checkpoint.json").read_text())
    assert latest["size"] == 7  # everything `init` audited
    assert (audit_dir / "checkpoint.vkey").read_text().startswith("iotiam/audit/")


@pytest.mark.parametrize(("name", "value"), [
    ("IOTIAM_AUDIT_CHECKPOINT_RECORDS", "0"),
    ("IOTIAM_AUDIT_CHECKPOINT_RECORDS", "many"),
    ("IOTIAM_AUDIT_CHECKPOINT_SECONDS", "-5"),
])
def test_settings_fail_bad_checkpoint_knobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SetupError, match=name):
        load_settings(tmp_path)


def test_settings_ok_checkpoint_knobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTIAM_AUDIT_CHECKPOINT_RECORDS", "250")
    monkeypatch.setenv("IOTIAM_AUDIT_CHECKPOINT_SECONDS", "15")
    settings = load_settings(tmp_path)
    assert (settings.audit_checkpoint_records, settings.audit_checkpoint_seconds) == (250, 15)
