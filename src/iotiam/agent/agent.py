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

from iotiam.agent.claim import (
    DeviceKey,
    Enrolled,
    csr_der,
    enroll_with_claim,
    issuing_first,
    load_idevid,
    read_file,
)
from iotiam.agent.est_client import EnrollmentRefused, EstClient, Pending
from iotiam.agent.files import AgentFiles
from iotiam.agent.gateway_calls import server_answer
from iotiam.agent.paths import AgentError, agent_directory, server_tls_context
from iotiam.agent.token_key import TokenKeys, engine_status, parse_key_uri, write_engine_files
from iotiam.clock import Clock, SystemClock
from iotiam.errors import IamError
from iotiam.hsm.pkcs11_signer import Pkcs11Signer
from iotiam.inventory.credential_status import RENEWAL_JITTER, RENEWAL_POINT
from iotiam.pki.external_signer import ExternalKeySigner

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
            ca_pem = read_file(Path(server_ca), "CA file")
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

    @property
    def serial(self) -> str | None:
        """The serial (hex) of the certificate installed last."""
        serial = self._state.get("serial")
        return str(serial) if serial else None

    def _est(self) -> EstClient:
        if not self.files.server_ca.exists():
            raise AgentError("no server CA file; pass --ca the first time")
        return EstClient(self._state["server_url"], self.files.server_ca, self._state.get("label"))

    # -- lifecycle ---------------------------------------------------------------------

    def enroll(self, claim: str, *, key_uri: str | None = None) -> x509.Certificate:
        """First contact: a new key (in the PKCS#11 token ``key_uri`` names, if given),
        a CSR and the one-time claim token."""
        key = TokenKeys().first(parse_key_uri(key_uri)) if key_uri else None
        enrolled = enroll_with_claim(self._est(), self.device_id, claim, key)
        self._install(enrolled.key, enrolled.certificate, enrolled.chain_pem())
        return enrolled.certificate

    def enroll_with_idevid(self, idevid_cert: Path, idevid_key: Path, *,
                           wait: float = 3600.0, key_uri: str | None = None
                           ) -> x509.Certificate:
        """Zero-touch first contact: mTLS with the manufacturer's IDevID, a new key made here.

        A request the server holds (202) is polled with the same CSR until an admin
        decides or ``wait`` seconds have passed (then ``EnrollmentPending``; calling
        again, even from a restarted agent, continues the same request).
        """
        _, named = load_idevid(idevid_cert, idevid_key)
        if named != self.device_id:
            raise AgentError(f"the IDevID names device {named!r}, not {self.device_id!r}")
        est = self._est()
        held = self._held_request()
        key: DeviceKey
        if held is None:
            key = TokenKeys().first(parse_key_uri(key_uri)) if key_uri else self.files.new_key()
            csr = csr_der(key, self.device_id)
            if isinstance(key, Pkcs11Signer):  # the key stays in the token: its URI is kept
                self._state["pending_key_uri"] = str(key.uri)
                self.files.save_state(self._state)
                self.files.save_pending(None, csr)
            else:
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

    def _held_request(self) -> tuple[DeviceKey, bytes] | None:
        uri = self._state.get("pending_key_uri")
        csr = self.files.load_pending_csr()
        if uri and csr is not None:
            return TokenKeys().open(uri), csr
        return self.files.load_pending()

    def _forget_pending(self) -> None:
        self.files.clear_pending()
        for field in ("pending_poll_at", "pending_request", "pending_key_uri"):
            self._state.pop(field, None)
        self.files.save_state(self._state)

    def renew(self) -> x509.Certificate:
        """RFC 7030 re-enrollment with the current certificate, onto a fresh key."""
        current = self._require_certificate()
        if self._clock.now() >= current.not_valid_after_utc or self.token_key_uri:
            # a token key cannot authenticate TLS here: it proves itself by a signature
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
        """Prove the current key by a signature over a CSR for a new one: after an outage
        past expiry (accepted only in the grace window), and every renewal of a token key."""
        current = self._require_certificate()
        old: DeviceKey
        key: DeviceKey
        if (uri := self.token_key_uri) is not None:
            tokens = TokenKeys()
            old = tokens.open(uri)
            key = tokens.successor(old.uri)
        else:
            old, key = self.files.load_key(), self.files.new_key()
        try:
            cert, chain = self._est().recover(
                current.public_bytes(serialization.Encoding.PEM).decode(),
                old, csr_der(key, self.device_id), self._clock.now())
        except (EnrollmentRefused, httpx.HTTPError, ssl.SSLError) as e:
            if isinstance(key, Pkcs11Signer):  # a refused key would pile up in the token
                tokens.retire(str(key.uri))
            if isinstance(e, EnrollmentRefused):
                expired = self._clock.now() >= current.not_valid_after_utc
                raise AgentError(f"{'recovery' if expired else 'renewal'} refused: {e}") from e
            raise AgentError(f"cannot reach {self._state['server_url']}: {e}") from e
        self._install(key, cert, chain)
        return cert

    @property
    def token_key_uri(self) -> str | None:
        """The PKCS#11 URI of the device key, when it is in a token (no key file then)."""
        uri = self._state.get("key_uri")
        return str(uri) if uri else None

    def _require_certificate(self) -> x509.Certificate:
        cert = self.files.load_certificate()
        if cert is None:
            raise AgentError("not enrolled yet; run `iotiam-agent enroll` with a claim token "
                             "or an IDevID")
        return cert

    def _install(self, key: DeviceKey, cert: x509.Certificate, chain: str | None) -> None:
        previous = self.token_key_uri
        if isinstance(key, Pkcs11Signer):
            self.files.key.unlink(missing_ok=True)  # a file key this directory held before
            self._state["key_uri"] = str(key.uri)
            write_engine_files(self.files.root, str(key.uri), TokenKeys().module_path,
                               durable=self.files.durable)
        else:
            assert not isinstance(key, ExternalKeySigner), "only token keys sign outside"
            self.files.save_key(key)
            self._state.pop("key_uri", None)
        self.files.save_certificate(cert, chain)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        jitter = lifetime * self._rng.uniform(-JITTER, JITTER)
        due = cert.not_valid_before_utc + lifetime * RENEW_AT + jitter
        self._state.update(serial=f"{cert.serial_number:x}", renew_at=due.isoformat(),
                           failures=0, retry_at=None)
        # the key is installed: a held request's copy of it is no longer needed
        self._forget_pending()
        if previous is not None and previous != self.token_key_uri:
            TokenKeys().retire(previous)  # the old certificate's key: no longer used

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
            "key": self.token_key_uri or str(self.files.key),
            **({"mqtt": engine_status(self.files.root, self.token_key_uri, self.device_id)}
               if self.token_key_uri else {}),
        }

    @property
    def server_url(self) -> str:
        """The iotiam server this agent enrolled with."""
        return str(self._state["server_url"])

    def require_file_key(self, what: str) -> None:
        """``AgentError`` unless enrolled with a key in a file (``what`` needs Python's TLS)."""
        self._require_certificate()
        if self.token_key_uri:
            raise AgentError(f"{what} needs TLS client authentication, which Python cannot "
                             "do with a key in a PKCS#11 token (docs/hsm.md)")

    # -- for applications --------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context with the device's certificate, trusting the iotiam CA."""
        self._require_certificate()
        self.require_file_key("a TLS connection with the device certificate")
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
        self.require_file_key("attestation")
        base = self._state["server_url"]
        try:
            with httpx.Client(base_url=base, verify=self.ssl_context(), timeout=30) as http:
                challenge = server_answer(http.post("/v1/attestation/challenge"), "challenge")
                evidence = sign_evidence(
                    self.files.load_key(), nonce=str(challenge["nonce"]),
                    device_id=self.device_id, firmware_version=firmware_version,
                    firmware_hash=firmware_hash,
                    measurements=[Measurement(n, d) for n, d in (measurements or {}).items()],
                    now=self._clock.now())
                return server_answer(http.post("/v1/attestation/evidence",
                                         json={"evidence": evidence}), "evidence")
        except (httpx.HTTPError, ssl.SSLError) as e:
            raise AgentError(f"cannot reach {base}: {e}") from e
        except IamError as e:
            if isinstance(e, AgentError):
                raise
            raise AgentError(f"cannot attest: {e.detail}") from e

    def access_token(self, scope: str, *, audience: str | None = None,
                     method: str | None = None) -> str:
        """An OAuth2 access token for ``scope`` from the device's own identity.

        ``tls_client_auth`` (the default with a key file) gets a token bound to the
        device certificate (present it with :meth:`ssl_context`); ``private_key_jwt`` (the
        default, and the only way, with a token key) signs a client assertion with the
        device key. Cached, and refreshed before expiry and after every renewal.
        """
        from iotiam.agent.oauth import TokenSource

        self._require_certificate()
        uri = self.token_key_uri
        method = method or ("private_key_jwt" if uri else "tls_client_auth")
        key: Callable[[], DeviceKey] = (
            (lambda: TokenKeys().open(uri)) if uri else self.files.load_key)
        sources: dict[str, TokenSource] = self.__dict__.setdefault("_token_sources", {})
        serial = str(self._state.get("serial"))
        source = sources.get(method)
        if source is None or self.__dict__.get("_token_serial") != serial:
            source = sources[method] = TokenSource(
                self._state["server_url"], self.device_id, ssl_context=self.ssl_context,
                key=key, server_ca=self.files.server_ca, clock=self._clock,
                method=method)
            if self.__dict__.get("_token_serial") != serial:
                for other in list(sources):
                    if other != method:
                        del sources[other]
                self.__dict__["_token_serial"] = serial
        return source.token(scope, audience)
