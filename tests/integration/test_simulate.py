"""``iotiam simulate`` against a live server: every device enrolled, nothing left behind."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from .live_server import Server

pytestmark = pytest.mark.integration


def _active(server: Server) -> int:
    with server.api() as api:
        report: dict[str, Any] = api.get("/v1/inventory").json()
    return int(report["by_state"].get("active", 0))


def test_ok_every_device_enrolls(server: Server) -> None:
    before = _active(server)
    result = server.cli("simulate", "--devices", "40", "--concurrency", "8", "--json")
    summary = json.loads(result.out)
    assert (summary["devices"], summary["enrolled"], summary["failed"]) == (40, 40, 0)
    assert summary["failures"] == []
    assert summary["enrollments/s"] > 0
    assert _active(server) == before + 40


def test_ok_dir_keeps_each_agent_with_its_chain(server: Server, tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    server.cli("simulate", "--devices", "3", "--dir", agents)
    homes = sorted(agents.iterdir())
    assert len(homes) == 3
    for home in homes:
        assert stat.S_IMODE((home / "key.pem").stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate((home / "cert.pem").read_bytes())
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert [n.value for n in names] == [home.name]
        # cacerts came on the enrollment's connection: issuing CA then root
        assert (home / "chain.pem").read_text().count("BEGIN CERTIFICATE") == 2
        assert (home / "fullchain.pem").read_text().count("BEGIN CERTIFICATE") == 2
        # fullchain is what the device presents: its certificate, then the issuing CA
        issuing = x509.load_pem_x509_certificates((home / "fullchain.pem").read_bytes())[1]
        assert issuing.subject == cert.issuer
        root = x509.load_pem_x509_certificates((home / "chain.pem").read_bytes())[1]
        assert root.subject == issuing.issuer == root.issuer


def test_fail_unknown_type_is_one_line(server: Server) -> None:
    result = server.cli("simulate", "--devices", "2", "--type", "no-such-type", check=False)
    assert result.rc != 0
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("error: registering simulated devices failed"), result
