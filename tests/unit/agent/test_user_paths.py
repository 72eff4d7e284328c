"""``--dir`` and ``--ca`` that cannot be used fail on one plain line, not as a bug report.

Issue 12 (tester): ``iotiam-agent enroll --dir /dev/null ...`` ended in "unexpected
FileExistsError ... (this is a bug in iotiam)", and a ``--ca`` file without PEM in
"unexpected SSLError ... NO_CERTIFICATE_OR_CRL_FOUND".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from agent.agent_failures import run_failing
from iotiam.testing import make_manufacturer_ca


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A PEM CA certificate, as ``--ca`` wants."""
    path = tmp_path / "ca.pem"
    path.write_text(make_manufacturer_ca().pem)
    return path


def _enroll(directory: Path | str, ca: Path | str) -> list[str]:
    return ["enroll", "--dir", str(directory), "--server", "https://127.0.0.1:9",
            "--ca", str(ca), "--device", "d-1", "--claim", "c"]


def test_dir_is_a_device_node(ca_file: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    rc, line = run_failing(_enroll("/dev/null", ca_file), capsys, monkeypatch)
    assert (rc, line) == (1, "error: --dir /dev/null is not a directory")


def test_dir_is_a_file(tmp_path: Path, ca_file: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    for command in (_enroll(tmp_path / "file", ca_file),
                    ["renew", "--dir", str(tmp_path / "file")],
                    ["status", "--dir", str(tmp_path / "file")]):
        rc, line = run_failing(command, capsys, monkeypatch)
        assert (rc, line) == (1, f"error: --dir {tmp_path / 'file'} is not a directory")


def test_dir_under_a_file(ca_file: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    rc, line = run_failing(_enroll("/dev/null/agent", ca_file), capsys, monkeypatch)
    assert rc == 1 and line.startswith("error: cannot create --dir /dev/null/agent: "), line


def _not_pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.txt"
    path.write_text("this is not a certificate\n")
    return path


def _der(tmp_path: Path) -> Path:
    path = tmp_path / "ca.der"
    path.write_bytes(make_manufacturer_ca().certificate.public_bytes(
        serialization.Encoding.DER))
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.pem"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("make", [_not_pem, _der, _empty],
                         ids=["fail/text", "fail/der", "fail/empty"])
def test_ca_without_pem(make: Callable[[Path], Path], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    ca = make(tmp_path)
    rc, line = run_failing(_enroll(tmp_path / "agent", ca), capsys, monkeypatch)
    assert (rc, line) == (1, f"error: --ca {ca} holds no PEM certificate")
    assert not (tmp_path / "agent").exists()  # nothing made for a refused command


def test_ca_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "nope.pem"
    rc, line = run_failing(_enroll(tmp_path / "agent", ca), capsys, monkeypatch)
    assert (rc, line) == (1, f"error: cannot read --ca {ca}: No such file or directory")


def test_ok_usable_paths_get_as_far_as_the_server(
        tmp_path: Path, ca_file: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rc, line = run_failing(_enroll(tmp_path / "agent", ca_file), capsys, monkeypatch)
    assert rc == 1 and line.startswith("error: cannot reach https://127.0.0.1:9"), line
    assert (tmp_path / "agent" / "server-ca.pem").read_bytes() == ca_file.read_bytes()


def test_dir_that_cannot_be_written(ca_file: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc/self is a directory no one, root included, can create files in
    rc, line = run_failing(_enroll("/proc/self", ca_file), capsys, monkeypatch)
    assert rc == 1 and line.startswith("error: cannot write /proc/self/server-ca.pem: "), line
