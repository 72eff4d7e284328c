"""Issue 12 item 18: a broker port another process holds is found and named, before
"mosquitto running" is said and before another instance's broker answers our admin."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from iotiam.broker.events import BrokerLogParser
from iotiam.broker.layout import BrokerConfig, BrokerFiles, mosquitto_binary
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.provision import provision_broker
from iotiam.detection.models import EventKind
from iotiam.errors import SetupError
from iotiam.pki.crl import build_crl
from iotiam.testing import free_port, require

from .foreign_broker import foreign_mosquitto
from .live_server import Server, _base_env, venv_tool
from .test_broker_dataplane import ca

pytestmark = pytest.mark.integration


def our_broker(work: Path, **ports: int) -> ManagedMosquitto:
    """A second instance's managed broker, provisioned on free ports but ``ports``."""
    binary = mosquitto_binary()
    require(binary is not None, "the mosquitto binary is not installed")
    assert binary is not None
    now = datetime.now(UTC)
    issuing, root = ca("Ours", now)
    config = BrokerConfig(**{"mtls_port": free_port(), "psk_port": free_port(),
                             "admin_port": free_port(), **ports})
    files = BrokerFiles(work / "ours")
    provision_broker(files, config, issuing=issuing, root=root, names=["127.0.0.1"],
                     now=now, serial=3)
    files.crl.write_bytes(build_crl(
        signer=issuing.signer, issuer_cert=issuing.certificate, revocations=[], crl_number=1,
        this_update=now, next_update=now + timedelta(days=1)).public_bytes(
            serialization.Encoding.PEM))
    return ManagedMosquitto(binary, config, files)


@pytest.mark.parametrize("listener", ["admin_port", "mtls_port", "psk_port"])
def test_broker_ports_fail_taken_by_another_instance(tmp_path: Path, listener: str) -> None:
    with foreign_mosquitto(tmp_path) as (theirs, their_process, _):
        ours = our_broker(tmp_path, **{listener: getattr(theirs, listener)})
        with pytest.raises(SetupError) as refused:
            ours.start()
        message = str(refused.value)
        port = getattr(theirs, listener)
        assert f":{port}" in message and "in use" in message, message
        assert "\n" not in message
        assert ours.pid is None
        assert their_process.pid is not None  # the other instance's broker is untouched


def test_broker_ports_ok_free_ports_start(tmp_path: Path) -> None:
    ours = our_broker(tmp_path)
    try:
        ours.start()
        assert ours.pid is not None and ours.answers()
    finally:
        ours.stop()


def test_broker_liveness_ok_probe_is_no_authorization_failure(tmp_path: Path) -> None:
    """The sync probes every 2 s: detection must not read that as failed logins."""
    ours = our_broker(tmp_path)
    try:
        ours.start()
        assert all(ours.answers() for _ in range(3))
        time.sleep(0.3)  # the broker's log is written as it goes
    finally:
        ours.stop()
    events = BrokerLogParser().feed_all(ours.log_tail(100_000).splitlines())
    assert [e for e in events if e.kind is EventKind.AUTH_FAILURE] == []


def test_broker_ports_fail_serve_says_which_port_in_one_line(tmp_path: Path) -> None:
    """The reported case end to end: a second instance whose broker admin port another
    instance's broker holds; ``iotiam serve`` exits non-zero with one line naming it."""
    with foreign_mosquitto(tmp_path) as (theirs, _, _):
        data_dir = tmp_path / "second"
        port, http_port, mtls, psk = (free_port() for _ in range(4))
        server = Server(backend="sqlite", data_dir=data_dir, work_dir=tmp_path,
                        database_url=None, port=port, http_port=http_port,
                        executable=venv_tool("iotiam"), env=_base_env(data_dir, None),
                        broker_ports=(mtls, psk, theirs.admin_port), broker_mode="managed")
        server.init()
        result = server.cli("--data-dir", data_dir, "serve", check=False, timeout=60)
        assert result.rc != 0
        errors = [line for line in result.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.err
        assert f"127.0.0.1:{theirs.admin_port} is already in use" in errors[0]
        assert "Not authorized" not in result.err + result.out
