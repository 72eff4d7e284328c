"""The agent's files: atomic replacement, owner-only key, and when they are flushed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from iotiam.agent.files import AgentFiles, write_atomically


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ``os.fsync`` call, still performed."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_ok_durable_write_is_flushed_and_replaces(tmp_path: Path, fsyncs: list[int]) -> None:
    target = tmp_path / "dir" / "state.json"
    write_atomically(target, b"old", 0o600)
    write_atomically(target, b"new", 0o600)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(fsyncs) == 2
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_ok_throwaway_files_skip_the_flush_only(tmp_path: Path, fsyncs: list[int]) -> None:
    files = AgentFiles(tmp_path / "agent", durable=False)
    key = files.new_key()
    files.save_key(key)
    files.save_state({"device_id": "d-1"})
    assert fsyncs == []
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert files.load_key().public_key() == key.public_key()
    assert files.load_state() == {"device_id": "d-1"}


def test_ok_agent_files_are_durable_by_default(tmp_path: Path, fsyncs: list[int]) -> None:
    AgentFiles(tmp_path / "agent").save_state({"device_id": "d-1"})
    assert len(fsyncs) == 1
