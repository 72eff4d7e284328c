"""``Agent``: enroll once, then keep a valid certificate forever, without a human.

Renewal happens at about 2/3 of the certificate's lifetime, with jitter so that a
fleet enrolled together does not renew together, and exponential backoff when the
server cannot be reached. A device that was offline past expiry recovers by proving
it holds its old key, which the server accepts only inside the device type's grace
window. Every renewal uses a new key generated on the device.

First contact is with a one-time claim token, or zero-touch with the manufacturer's
IDevID (IEEE 802.1AR) over mTLS. The server may hold an IDevID request for an admin
(RFC 7030 §4.2.3: 202 + Retry-After); the agent then polls with the same CSR, whose key
and CSR it keeps on disk so that a restart continues the same request.
"""

from __future__ import annotations

import base64
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.agent.claim import Enrolled, csr_der, enroll_with_claim, issuing_first
from iotiam.agent.est_client import EnrollmentRefused, EstClient, Pending
from iotiam.agent.files import AgentFiles
from iotiam.agent.paths import AgentError, agent_directory, server_tls_context
from iotiam.clock import Clock, SystemClock
from iotiam.enrollment.idevid import device_id_of
from iotiam.errors import IamError
from iotiam.inventory.credential_status import RENEWAL_JITTER, RENEWAL_POINT
from iotiam.pki.keys import PrivateKey

#: how often the agent asks which issuing CA is active (docs/ca-rotation.md)
ISSUER_CHECK = timedelta(minutes=15)
#: a fleet asked to move to a rotated-in issuing CA renews within this much time
MIGRATION_SPREAD = timedelta(minutes=10)

log = logging.getLogger("iotiam.agent")

# one renewal rule: the inventory calls "expiring" what this agent would have renewed
RENEW_AT = RENEWAL_POINT
JITTER = RENEWAL_JITTER  # +- this fraction of the lifetime
MAX_BACKOFF = timedelta(minutes=5)
POLL_DEFAULT = 60.0  # seconds, when a held request names no Retry-After
POLL_MIN = 1.0
POLL_MAX = 3600.0  # a longer Retry-After is capped: a device should not go silent for days
POLL_JITTER = 0.1  # up to +10 %, never earlier than the server asked


class EnrollmentPending(AgentError):
    """The server still holds the request for an admin; run again to keep polling."""

    kind = "agent-pending"
    title = "Enrollment pending"


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def poll_delay(retry_after: float | None, rng: random.Random) -> float:
    """Seconds until the next poll of a held request: ``Retry-After``, bounded, plus jitter.

    The jitter only lengthens the wait, so that a fleet held together does not poll
    together and no device polls before the server asked it to (RFC 7030 §4.2.3).
    """
    base = POLL_DEFAULT if retry_after is None else retry_after
    base = min(max(base, POLL_MIN), POLL_MAX)
    return base * (1 + rng.uniform(0, POLL_JITTER))


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise AgentError(f"cannot read the {what} {path}: {e.strerror or e}") from e


def load_idevid(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, str]:
    """The IDevID certificate and the device id it names, checked against its key file."""
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path, "IDevID certificate"))
    except ValueError as e:
        raise AgentError(f"{cert_path} is not a PEM certificate") from e
    try:
        key = serialization.load_pem_private_key(_read(key_path, "IDevID key"), password=None)
    except TypeError as e:
        raise AgentError(f"the IDevID key {key_path} is encrypted; the agent needs it "
                         "unencrypted (e.g. exported by the secure element's driver)") from e
    except ValueError as e:
        raise AgentError(f"{key_path} is not a PEM private key") from e
    if key.public_key() != cert.public_key():
        raise AgentError(f"the IDevID key {key_path} does not match the certificate "
                         f"{cert_path}")
    try:
        return cert, device_id_of(cert)
    except IamError as e:
        raise AgentError(f"{cert_path}: {e.detail}") from e


def _answer(response: httpx.Response, step: str) -> dict[str, Any]:
    """The JSON object of a 200 answer, or ``AgentError`` with the server's problem."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        detail = body.get("detail") if isinstance(body, dict) else None
        raise AgentError(f"attestation {step} refused (HTTP {response.status_code}): "
                         f"{detail or response.text[:200]}")
    return body


class Agent:
    """A device's identity agent, working in one directory on the device."""

    def __init__(
        self,
        directory: Path,
        *,
        server_url: str | None = None,
        device_id: str | None = None,
        server_ca: Path | None = None,
        label: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        durable: bool = True,
        sleep: Callable[[float], None] | None = None,
        issuer_check: timedelta = ISSUER_CHECK,
        migration_spread: timedelta = MIGRATION_SPREAD,
    ) -> None:
        """``durable=False`` is for throw-away directories only (see ``AgentFiles``).

        ``sleep`` waits between polls of a held enrollment (tests pass one that moves
        their clock). ``issuer_check``: how often the agent asks which issuing CA is
        active; ``migration_spread``: how far a fleet asked to move at once is spread.
        """
        self._issuer_check = issuer_check
        self._migration_spread = migration_spread
        ca_pem = None
        if server_ca is not None:
            # refused here, before the directory is made, rather than at first connection
            server_tls_context(Path(server_ca), what="--ca")
            ca_pem = _read(Path(server_ca), "CA file")
        self.files = AgentFiles(agent_directory(Path(directory), create=ca_pem is not None),
                                durable=durable)
        self._clock = clock or SystemClock()
        self._rng = rng or random.SystemRandom()
        self._sleep = sleep or time.sleep
        state = self.files.load_state()
        if server_url:
            state["server_url"] = server_url.rstrip("/")
        if device_id:
            state["device_id"] = device_id
        if label:
            state["label"] = label
        if ca_pem is not None:
            self.files.save_server_ca(ca_pem)
        if not state.get("server_url") or not state.get("device_id"):
            raise AgentError("the agent needs --server and --device the first time")
        self._state = state
        self.files.save_state(state)

    @property
    def device_id(self) -> str:
        """The device this agent speaks for."""
        return str(self._state["device_id"])

    def _est(self) -> EstClient:
        if not self.files.server_ca.exists():
            raise AgentError("no server CA file; pass --ca the first time")
        return EstClient(self._state["server_url"], self.files.server_ca, self._state.get("label"))

    # -- lifecycle ---------------------------------------------------------------------

    def enroll(self, claim: str) -> x509.Certificate:
        """First contact: a new key, a CSR and the one-time claim token."""
        enrolled = enroll_with_claim(self._est(), self.device_id, claim)
        self._install(enrolled.key, enrolled.certificate, enrolled.chain_pem())
        return enrolled.certificate

    def enroll_with_idevid(self, idevid_cert: Path, idevid_key: Path, *,
                           wait: float = 3600.0) -> x509.Certificate:
        """Zero-touch first contact: mTLS with the manufacturer's IDevID, a new key made here.

        A request the server holds (202) is polled with the same CSR until an admin
        decides or ``wait`` seconds have passed (then ``EnrollmentPending``; calling
        again, even from a restarted agent, continues the same request).
        """
        _, named = load_idevid(idevid_cert, idevid_key)
        if named != self.device_id:
            raise AgentError(f"the IDevID names device {named!r}, not {self.device_id!r}")
        est = self._est()
        held = self.files.load_pending()
        key: PrivateKey
        if held is None:
            key = self.files.new_key()
            csr = csr_der(key, self.device_id)
            self.files.save_pending(key, csr)
        else:
            # RFC 7030 §4.2.3: a held request is polled with the very same CSR
            key, csr = held
        deadline = self._clock.now() + timedelta(seconds=max(wait, 0.0))
        while True:
            self._wait_for_poll(deadline)
            try:
                outcome = est.enroll_with_idevid(idevid_cert, idevid_key, csr,
                                                 self._clock.now())
            except EnrollmentRefused as e:
                # rejected, or fulfilled and gone: this request can never succeed now
                self._forget_pending()
                raise AgentError(f"enrollment refused: {e}") from e
            except (httpx.HTTPError, ssl.SSLError) as e:
                raise AgentError(f"cannot reach {self._state['server_url']}: {e}") from e
            if isinstance(outcome, Pending):
                self._note_pending(outcome)
                continue
            cert, cas = outcome
            chain = Enrolled(key, cert, issuing_first(cert, cas)).chain_pem()
            self._install(key, cert, chain)
            return cert

    def _note_pending(self, pending: Pending) -> None:
        due = self._clock.now() + timedelta(seconds=poll_delay(pending.retry_after, self._rng))
        self._state.update(pending_poll_at=due.isoformat(), pending_request=pending.request)
        self.files.save_state(self._state)

    def _wait_for_poll(self, deadline: datetime) -> None:
        """Sleep until the held request's next poll, or give up if that is past ``deadline``."""
        due = self._state.get("pending_poll_at")
        if not due:
            return
        when = datetime.fromisoformat(due)
        if when > deadline:
            request = self._state.get("pending_request") or "(no id given)"
            raise EnrollmentPending(
                f"enrollment request {request} is waiting for an administrator's approval; "
                f"next poll due at {when.isoformat(timespec='seconds')}: run the same "
                "command again (or with a longer --wait) to keep waiting")
        delay = (when - self._clock.now()).total_seconds()
        if delay > 0:
            self._sleep(delay)

    def _forget_pending(self) -> None:
        self.files.clear_pending()
        for field in ("pending_poll_at", "pending_request"):
            self._state.pop(field, None)
        self.files.save_state(self._state)

    def renew(self) -> x509.Certificate:
        """RFC 7030 re-enrollment with the current certificate, onto a fresh key."""
        current = self._require_certificate()
        if self._clock.now() >= current.not_valid_after_utc:
            return self.recover()
        key = self.files.new_key()
        try:
            cert = self._est().reenroll(self.files.fullchain, self.files.key,
                                        csr_der(key, self.device_id))
        except EnrollmentRefused as e:
            raise AgentError(f"renewal refused: {e}") from e
        except (httpx.HTTPError, ssl.SSLError) as e:
            raise AgentError(f"cannot reach {self._state['server_url']}: {e}") from e
        chain = None
        if cert.issuer != current.issuer:
            # a rotated issuing CA: chain.pem follows the new certificate's issuer
            chain = Enrolled(key, cert, issuing_first(cert, self._est().cacerts())).chain_pem()
        self._install(key, cert, chain)
        return cert

    def recover(self) -> x509.Certificate:
        """After an outage past expiry: prove the old key (accepted only in the grace window)."""
        current = self._require_certificate()
        key = self.files.new_key()
        try:
            cert, chain = self._est().recover(
                current.public_bytes(serialization.Encoding.PEM).decode(),
                self.files.load_key(), csr_der(key, self.device_id), self._clock.now())
        except EnrollmentRefused as e:
            raise AgentError(f"recovery refused: {e}") from e
        except (httpx.HTTPError, ssl.SSLError) as e:
            raise AgentError(f"cannot reach {self._state['server_url']}: {e}") from e
        self._install(key, cert, chain)
        return cert

    def _require_certificate(self) -> x509.Certificate:
        cert = self.files.load_certificate()
        if cert is None:
            raise AgentError("not enrolled yet; run `iotiam-agent enroll` with a claim token "
                             "or an IDevID")
        return cert

    def _install(self, key: PrivateKey, cert: x509.Certificate, chain: str | None) -> None:
        self.files.save_key(key)
        self.files.save_certificate(cert, chain)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        jitter = lifetime * self._rng.uniform(-JITTER, JITTER)
        due = cert.not_valid_before_utc + lifetime * RENEW_AT + jitter
        self._state.update(serial=f"{cert.serial_number:x}", renew_at=due.isoformat(),
                           failures=0, retry_at=None)
        # the key is installed: a held request's copy of it is no longer needed
        self._forget_pending()

    # -- the loop ----------------------------------------------------------------------

    def next_action_at(self) -> datetime:
        """When the agent next wants to renew (or retry after a failure)."""
        retry = self._state.get("retry_at")
        if retry:
            return datetime.fromisoformat(retry)
        due = self._state.get("renew_at")
        if not due:
            raise AgentError("not enrolled yet")
        return datetime.fromisoformat(due)

    def tick(self) -> str:
        """Do whatever is due now: ``renewed``, ``recovered``, ``waiting`` or ``failed``."""
        now = self._clock.now()
        self._check_issuer(now)
        if now < self.next_action_at():
            return "waiting"
        expired = now >= self._require_certificate().not_valid_after_utc
        try:
            cert = self.recover() if expired else self.renew()
        except AgentError as e:
            failures = int(self._state.get("failures", 0)) + 1
            backoff = min(timedelta(seconds=2 ** min(failures, 16)), MAX_BACKOFF)
            backoff *= self._rng.uniform(0.5, 1.0)
            retry_at = now + backoff
            self._state.update(failures=failures, retry_at=retry_at.isoformat(),
                               last_error=str(e))
            self.files.save_state(self._state)
            log.warning("%s failed (attempt %d): %s; retrying at %s",
                        "recovery" if expired else "renewal", failures,
                        " ".join(e.diagnostics().split()), _when(retry_at))
            return "failed"
        outcome = "recovered" if expired else "renewed"
        log.info("%s: serial %x, valid until %s, next renewal at %s", outcome,
                 cert.serial_number, _when(cert.not_valid_after_utc),
                 _when(self.next_action_at()))
        return outcome

    def _check_issuer(self, now: datetime) -> None:
        """Now and then, ask which issuing CA is active; after ``iotiam ca migrate`` a
        certificate of another one is renewed soon (spread by jitter), not at its time."""
        due = self._state.get("issuer_check_at")
        if (due and now < datetime.fromisoformat(due)) or not self._state.get("renew_at"):
            return
        self._state["issuer_check_at"] = (
            now + self._issuer_check * self._rng.uniform(0.5, 1.0)).isoformat()
        try:
            subject, migrate = self._est().active_issuer()
        except (AgentError, EnrollmentRefused, httpx.HTTPError, ssl.SSLError, ValueError,
                KeyError, TypeError) as e:
            log.debug("could not ask which issuing CA is active: %s", e)
            self.files.save_state(self._state)
            return
        cert = self.files.load_certificate()
        soon = now + self._migration_spread * self._rng.random()
        if migrate and cert is not None and cert.issuer.rfc4514_string() != subject and \
                soon < datetime.fromisoformat(self._state["renew_at"]):
            self._state["renew_at"] = soon.isoformat()
            log.info("the issuing CA was rotated and iotiam asks to move: renewing at %s",
                     _when(soon))
        self.files.save_state(self._state)

    def run(self, stop: threading.Event) -> None:
        """Renew forever (until ``stop`` is set)."""
        cert = self._require_certificate()
        log.info("running for %s: serial %x, valid until %s, next renewal at %s",
                 self.device_id, cert.serial_number, _when(cert.not_valid_after_utc),
                 _when(self.next_action_at()))
        while not stop.is_set():
            self.tick()
            wait = (self.next_action_at() - self._clock.now()).total_seconds()
            stop.wait(max(0.05, min(wait, 60.0)))

    def status(self) -> dict[str, Any]:
        """What the agent holds and plans."""
        cert = self.files.load_certificate()
        return {
            "device": self.device_id,
            "server": self._state["server_url"],
            "serial": f"{cert.serial_number:x}" if cert else None,
            "not_after": cert.not_valid_after_utc.isoformat() if cert else None,
            "renew_at": self._state.get("renew_at"),
            "failures": self._state.get("failures", 0),
            "last_error": self._state.get("last_error"),
        }

    # -- for applications --------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context with the device's certificate, trusting the iotiam CA."""
        self._require_certificate()
        ca = self.files.chain if self.files.chain.exists() else self.files.server_ca
        return server_tls_context(ca, cert=self.files.fullchain, key=self.files.key)

    def mqtt_client(self, **kwargs: Any) -> Any:
        """A paho-mqtt client with mTLS set up; the client id is the device id."""
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion

        client = Client(CallbackAPIVersion.VERSION2, client_id=self.device_id, **kwargs)
        client.tls_set_context(self.ssl_context())
        return client

    def attest(self, firmware_version: str, firmware_hash: str,
               measurements: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Prove the running firmware: get a nonce over mTLS, sign the evidence (an EAT,
        ``eat+jwt``) here with the device key, post it; the server's verdict.

        ``firmware_hash`` is the hex SHA-256 of the running image; ``measurements`` maps
        boot stages to their digests. A refusal (stale nonce, unknown certificate, ...)
        raises ``AgentError``; a non-compliant verdict is returned, not raised.
        """
        from iotiam.attestation.evidence import sign_evidence
        from iotiam.attestation.models import Measurement

        self._require_certificate()
        base = self._state["server_url"]
        try:
            with httpx.Client(base_url=base, verify=self.ssl_context(), timeout=30) as http:
                challenge = _answer(http.post("/v1/attestation/challenge"), "challenge")
                evidence = sign_evidence(
                    self.files.load_key(), nonce=str(challenge["nonce"]),
                    device_id=self.device_id, firmware_version=firmware_version,
                    firmware_hash=firmware_hash,
                    measurements=[Measurement(n, d) for n, d in (measurements or {}).items()],
                    now=self._clock.now())
                return _answer(http.post("/v1/attestation/evidence",
                                         json={"evidence": evidence}), "evidence")
        except (httpx.HTTPError, ssl.SSLError) as e:
            raise AgentError(f"cannot reach {base}: {e}") from e
        except IamError as e:
            if isinstance(e, AgentError):
                raise
            raise AgentError(f"cannot attest: {e.detail}") from e

    def child_keys(self) -> dict[str, bytes]:
        """A gateway's children's PSKs (identity -> key), fetched over mTLS and opened
        here with the device key (docs/gateways.md); a refusal raises ``AgentError``."""
        from cryptography.hazmat.primitives.asymmetric import ec

        from iotiam.gateways.sealed_keys import context_of, open_sealed

        self._require_certificate()
        key = self.files.load_key()
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise AgentError("child keys are sealed to EC P-256 keys; this device's is not")
        base = self._state["server_url"]
        try:
            with httpx.Client(base_url=base, verify=self.ssl_context(), timeout=30) as http:
                listing = _answer(http.get("/v1/gateways/self/children"), "children")
            return {str(c["psk_identity"]): open_sealed(
                key, base64.b64decode(str(c["sealed_key"])),
                context_of(self.device_id, str(c["id"]), str(c["psk_id"])))
                for c in listing["children"]}
        except (httpx.HTTPError, ssl.SSLError) as e:
            raise AgentError(f"cannot reach {base}: {e}") from e
        except (KeyError, TypeError, ValueError) as e:
            raise AgentError(f"the children listing is malformed: {e}") from e
        except IamError as e:
            if isinstance(e, AgentError):
                raise
            raise AgentError(f"cannot open the children's keys: {e.detail}") from e

    def access_token(self, scope: str, *, audience: str | None = None,
                     method: str = "tls_client_auth") -> str:
        """An OAuth2 access token for ``scope`` from the device's own identity.

        ``tls_client_auth`` gets a token bound to the device certificate (present it with
        :meth:`ssl_context`); ``private_key_jwt`` signs a client assertion with the device
        key. Cached, and refreshed before expiry and after every certificate renewal.
        """
        from iotiam.agent.oauth import TokenSource

        self._require_certificate()
        sources: dict[str, TokenSource] = self.__dict__.setdefault("_token_sources", {})
        serial = str(self._state.get("serial"))
        source = sources.get(method)
        if source is None or self.__dict__.get("_token_serial") != serial:
            source = sources[method] = TokenSource(
                self._state["server_url"], self.device_id, ssl_context=self.ssl_context,
                key=self.files.load_key, server_ca=self.files.server_ca, clock=self._clock,
                method=method)
            if self.__dict__.get("_token_serial") != serial:
                for other in list(sources):
                    if other != method:
                        del sources[other]
                self.__dict__["_token_serial"] = serial
        return source.token(scope, audience)
