"""The agent's IDevID enrollment: polling a held request, against a fake EST server and clock."""

from __future__ import annotations

import random
import stat
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from iotiam.agent import Agent, AgentError, EnrollmentPending
from iotiam.agent.agent import POLL_MAX, poll_delay
from iotiam.agent.est_client import EnrollmentRefused, Pending, retry_after_seconds
from iotiam.clock import FrozenClock
from iotiam.testing import Issuer, make_idevid, make_manufacturer_ca

START = datetime(2026, 1, 1, tzinfo=UTC)
Answer = Pending | EnrollmentRefused | None  # None: issue a certificate


class FakeEst:
    """Answers each ``simpleenroll`` from a script and records the CSRs it was sent."""

    def __init__(self, ca: Issuer, clock: FrozenClock, script: list[Answer]) -> None:
        self._ca = ca
        self._clock = clock
        self._script = script
        self.csrs: list[bytes] = []
        self.polled_at: list[datetime] = []

    def enroll_with_idevid(self, idevid_cert: Path, idevid_key: Path, csr_der: bytes,
                           now: datetime) -> tuple[x509.Certificate, list[x509.Certificate]
                                                   ] | Pending:
        self.csrs.append(csr_der)
        self.polled_at.append(now)
        answer = self._script.pop(0)
        if isinstance(answer, EnrollmentRefused):
            raise answer
        if answer is not None:
            return answer
        csr = x509.load_der_x509_csr(csr_der)
        cert = (x509.CertificateBuilder().subject_name(csr.subject)
                .issuer_name(self._ca.certificate.subject).public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + timedelta(days=30))
                .sign(self._ca.key, hashes.SHA256()))
        return cert, [self._ca.certificate]


@pytest.fixture
def clock() -> FrozenClock:
    """The agent's clock; its sleeps move it."""
    return FrozenClock(START)


@pytest.fixture
def ca() -> Issuer:
    """Plays both the manufacturer CA and iotiam's issuing CA."""
    return make_manufacturer_ca(now=START)


@pytest.fixture
def idevid_files(tmp_path: Path, ca: Issuer) -> tuple[Path, Path]:
    """An IDevID for serial SN-1, certificate and key files."""
    identity = make_idevid(ca, "SN-1", not_before=START - timedelta(days=1))
    cert, key = tmp_path / "idevid.pem", tmp_path / "idevid.key"
    cert.write_text(identity.pem)
    key.write_bytes(identity.key_pem())
    return cert, key


class Device:
    """An agent directory whose agent (re)starts with a fake EST server."""

    def __init__(self, root: Path, clock: FrozenClock, ca: Issuer) -> None:
        self.root, self.clock, self.ca = root, clock, ca
        self.sleeps: list[float] = []

    def start(self, script: list[Answer], monkeypatch: pytest.MonkeyPatch
              ) -> tuple[Agent, FakeEst]:
        """A new agent process on the same directory."""
        def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            self.clock.advance(timedelta(seconds=seconds))

        agent = Agent(self.root, server_url="https://iotiam.test", device_id="SN-1",
                      clock=self.clock, rng=random.Random(7), durable=False, sleep=sleep)
        est = FakeEst(self.ca, self.clock, script)
        monkeypatch.setattr(agent, "_est", lambda: est)
        return agent, est


@pytest.fixture
def device(tmp_path: Path, clock: FrozenClock, ca: Issuer) -> Device:
    """The device under test."""
    return Device(tmp_path / "agent", clock, ca)


def held(retry_after: float | None = 5, status: int = 202) -> Pending:
    """A 202 (or 429) answer."""
    return Pending(status, retry_after, "waiting for approval", "req-1")


def test_ok_manifest_serial_enrolls_at_once(device: Device, idevid_files: tuple[Path, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    agent, est = device.start([None], monkeypatch)
    cert = agent.enroll_with_idevid(*idevid_files)
    assert len(est.csrs) == 1
    assert cert.subject.rfc4514_string() == "CN=SN-1"
    assert device.sleeps == []
    assert stat.S_IMODE(agent.files.key.stat().st_mode) == 0o600
    assert agent.files.load_key().public_key() == cert.public_key()
    assert agent.files.chain.exists() and agent.files.fullchain.exists()
    assert not agent.files.pending_key.exists() and not agent.files.pending_csr.exists()
    assert agent.next_action_at() > START


def test_ok_held_polls_same_csr_after_retry_after(device: Device,
                                                  idevid_files: tuple[Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    agent, est = device.start([held(5), held(None, status=429), None], monkeypatch)
    cert = agent.enroll_with_idevid(*idevid_files, wait=600)
    assert len(set(est.csrs)) == 1 and len(est.csrs) == 3
    # never earlier than Retry-After, at most 10 % later
    assert 5 <= device.sleeps[0] <= 5.5
    assert 60 <= device.sleeps[1] <= 66  # no Retry-After: the default
    assert agent.files.load_key().public_key() == cert.public_key()
    assert not agent.files.pending_csr.exists()
    assert "pending_poll_at" not in agent.files.load_state()


def test_fail_rejected_is_a_clear_error_and_forgets_the_request(
        device: Device, idevid_files: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = EnrollmentRefused(403, "enrollment request req-1 was rejected by an administrator")
    agent, _ = device.start([held(1), refusal], monkeypatch)
    with pytest.raises(AgentError, match=r"refused: HTTP 403: .*rejected by an admin"):
        agent.enroll_with_idevid(*idevid_files, wait=60)
    assert not agent.files.pending_csr.exists() and not agent.files.pending_key.exists()
    assert agent.files.load_certificate() is None


def test_fail_wait_spent_then_restart_continues_same_request(
        device: Device, idevid_files: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent, first = device.start([held(60)], monkeypatch)
    with pytest.raises(EnrollmentPending, match="req-1 is waiting for an administrator"):
        agent.enroll_with_idevid(*idevid_files, wait=30)
    assert device.sleeps == []  # did not poll before the server's Retry-After
    assert stat.S_IMODE(agent.files.pending_key.stat().st_mode) == 0o600
    assert agent.files.load_certificate() is None

    device.clock.advance(timedelta(seconds=10))  # the agent restarts 10 s later
    again, second = device.start([held(60), None], monkeypatch)
    cert = again.enroll_with_idevid(*idevid_files, wait=600)
    assert second.csrs == first.csrs * 2
    # the restarted agent still waited out the first Retry-After before polling
    assert second.polled_at[0] >= START + timedelta(seconds=60)
    assert again.files.load_key().public_key() == cert.public_key()


def test_fail_wait_zero_polls_once(device: Device, idevid_files: tuple[Path, Path],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    agent, est = device.start([held(1)], monkeypatch)
    with pytest.raises(EnrollmentPending):
        agent.enroll_with_idevid(*idevid_files, wait=0)
    assert len(est.csrs) == 1 and device.sleeps == []


def test_fail_idevid_of_another_device(device: Device, tmp_path: Path, ca: Issuer,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_idevid(ca, "SN-2", not_before=START - timedelta(days=1))
    cert, key = tmp_path / "other.pem", tmp_path / "other.key"
    cert.write_text(other.pem)
    key.write_bytes(other.key_pem())
    agent, est = device.start([None], monkeypatch)
    with pytest.raises(AgentError, match="names device 'SN-2', not 'SN-1'"):
        agent.enroll_with_idevid(cert, key)
    assert est.csrs == []


def test_fail_idevid_key_does_not_match(device: Device, idevid_files: tuple[Path, Path],
                                        tmp_path: Path, ca: Issuer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stranger = tmp_path / "stranger.key"
    stranger.write_bytes(make_idevid(ca, "SN-1").key_pem())
    agent, _ = device.start([None], monkeypatch)
    with pytest.raises(AgentError, match="does not match the certificate"):
        agent.enroll_with_idevid(idevid_files[0], stranger)
    with pytest.raises(AgentError, match="cannot read the IDevID key"):
        agent.enroll_with_idevid(idevid_files[0], tmp_path / "missing.key")


@pytest.mark.parametrize(("retry_after", "low", "high"), [
    (None, 60, 66), (0, 1, 1.1), (30, 30, 33), (10**9, POLL_MAX, POLL_MAX * 1.1),
], ids=["ok/default", "ok/floor", "ok/asked", "ok/capped"])
def test_poll_delay_bounds(retry_after: float | None, low: float, high: float) -> None:
    rng = random.Random(1)
    delays = [poll_delay(retry_after, rng) for _ in range(50)]
    assert all(low <= d <= high for d in delays)


def test_retry_after_header_forms() -> None:
    now = START
    assert retry_after_seconds("7", now) == 7
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True),
                               now) == 90
    assert retry_after_seconds(format_datetime(now - timedelta(hours=1), usegmt=True),
                               now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_ok_held_with_token_key_restart_polls_same_csr_no_key_file(
        device: Device, idevid_files: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A held request whose key is in a (real SoftHSM2) token: the state keeps its URI,
    a restarted agent polls with the same CSR, and no key file is ever written."""
    from iotiam.hsm.pkcs11_signer import close_sessions
    from iotiam.testing.softhsm import create_token

    token = create_token(tmp_path / "softhsm", label="dev")
    for name, value in token.environment().items():
        monkeypatch.setenv(name, value)
    close_sessions()
    try:
        agent, first = device.start([held(60)], monkeypatch)
        with pytest.raises(EnrollmentPending):
            agent.enroll_with_idevid(*idevid_files, wait=30,
                                     key_uri="pkcs11:token=dev;object=device")
        uri = agent.files.load_state()["pending_key_uri"]
        assert ";id=" in uri and not agent.files.pending_key.exists()

        device.clock.advance(timedelta(seconds=60))
        again, second = device.start([None], monkeypatch)
        cert = again.enroll_with_idevid(*idevid_files, wait=600)
        assert second.csrs == first.csrs
        state = again.files.load_state()
        assert state["key_uri"] == uri and "pending_key_uri" not in state
        assert again.status()["key"] == uri
        assert not again.files.key.exists() and not again.files.pending_csr.exists()
        assert x509.load_der_x509_csr(first.csrs[0]).public_key() == cert.public_key()
        assert (again.files.root / "pkcs11" / "openssl.cnf").exists()
    finally:
        close_sessions()
