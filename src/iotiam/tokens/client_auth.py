"""Client authentication: ``private_key_jwt`` (RFC 7523) and ``tls_client_auth`` (RFC 8705).

No shared secrets: ``client_secret_*`` and HTTP Basic are refused. A device client
authenticates with its iotiam identity, either the TLS client certificate itself or
an assertion signed with the key of one of its live certificates (or a registered
JWK); a service client signs with a key of its registered JWKS. A device that is not
active or whose certificate was revoked cannot authenticate (G3); one that is
quarantined or suspended is told so with ``access_denied`` once it proved who it is.

``check`` only reads; ``consume`` records the assertion's ``jti`` as used. The token
endpoint runs every other check before it consumes, so a refused request writes nothing
and many requests can share one transaction.

A client id nobody registered, or a TLS client certificate iotiam did not issue, is also
a sighting for discovery (source ``api``): something out there holds an identity that
nobody manages and tries it here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from joserfc.jwk import Key

from iotiam.discovery.ports import SightingSink
from iotiam.discovery.sources.own_traffic import (
    NO_SIGHTINGS,
    RecentSightings,
    sighting_of_refused_client,
)
from iotiam.inventory.lifecycle import Transport, refusal
from iotiam.inventory.models import Device, DeviceState
from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.pki.ports import DeviceIssuers
from iotiam.tokens import jws
from iotiam.tokens.assertions import claimed_client, verify_assertion
from iotiam.tokens.models import (
    CLIENT_ASSERTION_TYPE,
    AccessDenied,
    AuthenticatedClient,
    AuthMethod,
    ClientCredentials,
    ClientKind,
    InvalidClient,
    OAuthClient,
    TokenConfig,
)
from iotiam.tokens.ports import TokensUnitOfWork
from iotiam.tokens.reads import ClientReads, ReadsAhead, read_when_asked

log = logging.getLogger("iotiam.tokens")

#: what a client whose device is out of service for now is told (a client can act on it:
#: stop asking until an administrator acts); a decommissioned device is gone for good
_WHY_NO_TOKEN = {
    DeviceState.QUARANTINED: "detection or an administrator isolated it; it gets no token "
                             "until an administrator lifts the quarantine, so do not retry "
                             "before then",
    DeviceState.SUSPENDED: "an administrator suspended it; it gets no token until it is "
                           "made active again, so do not retry before then",
    DeviceState.PENDING: "it is not active yet; it gets a token once it has enrolled",
}
_KEY_CACHE = 4096
#: certificates presented over TLS, by SHA-256 of the DER: serial number, or None when
#: another CA issued it (parsing a certificate costs more than the database lookup)
_PRESENTED_CACHE = 4096


def x5t_s256(certificate_der: bytes) -> str:
    """RFC 8705 §3.1: base64url SHA-256 of the DER certificate, without padding."""
    digest = hashlib.sha256(certificate_der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Unrecognised(InvalidClient):
    """``invalid_client`` because iotiam does not know the identity presented: an
    unregistered client id, or a TLS client certificate it did not issue (``check``
    reports a sighting and raises a plain ``InvalidClient``)."""

    def __init__(self, detail: str, client_id: str | None) -> None:
        super().__init__(detail)
        #: the client id the request named or its assertion claimed
        self.client_id = client_id


class ClientAuthenticator:
    """Turns presented credentials into an ``AuthenticatedClient`` or ``InvalidClient``."""

    def __init__(self, config: TokenConfig, issuing: DeviceIssuers,
                 reads_ahead: ReadsAhead = read_when_asked, *,
                 sightings: SightingSink = NO_SIGHTINGS) -> None:
        self._config = config
        self._issuing = issuing
        self._reads_ahead = reads_ahead
        self._sightings = sightings
        self._recent = RecentSightings()
        # parsing a PEM per request costs more than the signature check: keep the keys
        self._cert_keys: OrderedDict[str, Key | None] = OrderedDict()
        self._presented: dict[str, tuple[str, int] | None] = {}

    def authenticate(self, uow: TokensUnitOfWork, credentials: ClientCredentials, now: datetime
                     ) -> AuthenticatedClient:
        """Authenticate the client of a request inside ``uow`` (records a used jti)."""
        client = self.check(uow, credentials, now)
        self.consume(uow, client)
        return client

    def consume(self, uow: TokensUnitOfWork, client: AuthenticatedClient) -> None:
        """Record the client assertion's jti as used; InvalidClient if it was used before."""
        if client.assertion_jti is None or client.assertion_expires_at is None:
            return
        # RFC 7523 §3 item 7: single use; the insert is the lock, like a claim token (G8),
        # and the database decides across threads, workers and replicas
        if not uow.oauth_assertion_jtis.use(client.client.client_id, client.assertion_jti,
                                            client.assertion_expires_at):
            raise InvalidClient("client assertion replayed: its jti was used before")

    def read_ahead(self, uow: TokensUnitOfWork, requests: Sequence[ClientCredentials]
                   ) -> ClientReads:
        """Reads for these requests, told the rows ``check`` will ask for."""
        client_ids: list[str] = []
        serials: list[int] = []
        # a request this cannot read is only not read ahead: ``check`` runs the same code
        # for it alone, in its turn, and its error (even a bug) fails that request only
        for credentials in requests:
            if credentials.client_id:
                client_ids.append(credentials.client_id)
            elif credentials.assertion:
                with contextlib.suppress(Exception):
                    client_ids.append(claimed_client(credentials.assertion))
            der = credentials.certificate_der
            if der is not None:
                with contextlib.suppress(Exception):
                    presented = self._presented_serial(der, hashlib.sha256(der).hexdigest())
                    if presented is not None and presented[0] == self._issuing.issuing_id:
                        serials.append(presented[1])
        return self._reads_ahead(uow, client_ids=client_ids,
                                 issuer_id=self._issuing.issuing_id, serials=serials)

    def check(self, uow: TokensUnitOfWork, credentials: ClientCredentials, now: datetime,
              reads: ClientReads | None = None) -> AuthenticatedClient:
        """Authenticate without writing: the assertion's jti is left for ``consume``.

        ``reads`` may hold rows read ahead for a batch (``read_ahead``) of this ``uow``.
        """
        try:
            return self._check(reads or ClientReads(uow), credentials, now)
        except _Unrecognised as e:
            self._sighted(credentials, e, now)
            # the client is answered, and the refusal audited, like any invalid client
            raise InvalidClient(e.detail) from None

    def _sighted(self, credentials: ClientCredentials, error: _Unrecognised,
                 now: datetime) -> None:
        """Tell discovery who tried an identity iotiam does not know (the sink queues)."""
        try:
            sighting = sighting_of_refused_client(
                client_id=error.client_id, source_ip=credentials.source,
                certificate_der=credentials.certificate_der, reason=error.detail,
                seen_at=now.timestamp())
            fresh = self._recent.fresh([sighting] if sighting is not None else [])
            if fresh:
                self._sightings.observe(fresh)
        except Exception:  # discovery's trouble must not change the client's answer
            log.exception("handing a refused client's sighting to discovery failed")

    def _check(self, reads: ClientReads, credentials: ClientCredentials, now: datetime
               ) -> AuthenticatedClient:
        if credentials.secret_presented:
            raise InvalidClient("client secrets are not accepted; authenticate with "
                                "private_key_jwt or tls_client_auth")
        if credentials.assertion is not None or credentials.assertion_type is not None:
            return self._by_assertion(reads, credentials, now)
        if credentials.certificate_der is not None and credentials.client_id:
            return self._by_certificate(reads, credentials, now)
        if credentials.client_id:
            raise InvalidClient("client authentication is required: send a client_assertion "
                                "(private_key_jwt) or a TLS client certificate "
                                "(tls_client_auth)")
        raise InvalidClient("client authentication is required (client_id with "
                            "private_key_jwt or tls_client_auth)")

    # -- private_key_jwt -----------------------------------------------------------------

    def _by_assertion(self, reads: ClientReads, credentials: ClientCredentials,
                      now: datetime) -> AuthenticatedClient:
        if credentials.assertion_type != CLIENT_ASSERTION_TYPE:
            raise InvalidClient(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE!r}")
        if not credentials.assertion:
            raise InvalidClient("client_assertion is empty")
        client_id = claimed_client(credentials.assertion)
        if credentials.client_id is not None and credentials.client_id != client_id:
            raise InvalidClient("client_id does not match the client assertion's issuer")
        client = self._client(reads, client_id, AuthMethod.PRIVATE_KEY_JWT)
        keys: list[Key] = []
        records: list[CertificateRecord | None] = []
        if client.jwks is not None:
            for key in jws.public_key_set(client.jwks):
                keys.append(key)
                records.append(None)
        if client.kind is ClientKind.DEVICE and client.device_id is not None:
            for live in self._live_certificates(reads.uow, client.device_id, now):
                cert_key = self._certificate_key(live)
                if cert_key is not None:
                    keys.append(cert_key)
                    records.append(live)
        verified = verify_assertion(credentials.assertion, keys, client_id=client_id,
                                    config=self._config, now=now)
        device = self._require_active_device(reads, client)
        record = records[verified.key_index]
        bound = self._binding(reads, client, credentials, now)
        if record is None and bound is not None:
            record = bound
        return AuthenticatedClient(
            client=client, method=AuthMethod.PRIVATE_KEY_JWT,
            certificate_serial=record.serial_hex if record else None,
            certificate_not_after=record.not_after if record else None,
            x5t_s256=x5t_s256(credentials.certificate_der)
            if bound is not None and credentials.certificate_der else None,
            assertion_jti=verified.jti, assertion_expires_at=verified.expires_at,
            device=device,
        )

    def _binding(self, reads: ClientReads, client: OAuthClient,
                 credentials: ClientCredentials, now: datetime) -> CertificateRecord | None:
        """A TLS certificate of this device on the same request binds the token to it.

        A presented certificate that is not the client's is refused, not ignored: the
        client would get an unbound token while believing it bound (RFC 8705 §3), and a
        certificate of another device says the request is not what it claims.
        """
        if credentials.certificate_der is None:
            return None
        if client.device_id is None:
            raise InvalidClient(f"the TLS client certificate does not belong to client "
                                f"{client.client_id!r}: a service client has none; connect "
                                f"without one")
        return self._device_certificate(reads, client, credentials.certificate_der, now)

    # -- tls_client_auth -----------------------------------------------------------------

    def _by_certificate(self, reads: ClientReads, credentials: ClientCredentials,
                        now: datetime) -> AuthenticatedClient:
        assert credentials.client_id is not None and credentials.certificate_der is not None
        client = self._client(reads, credentials.client_id, AuthMethod.TLS_CLIENT_AUTH)
        if client.kind is not ClientKind.DEVICE:
            raise InvalidClient("tls_client_auth is for device clients")
        record = self._device_certificate(reads, client, credentials.certificate_der, now)
        device = self._require_active_device(reads, client)
        return AuthenticatedClient(
            client=client, method=AuthMethod.TLS_CLIENT_AUTH,
            certificate_serial=record.serial_hex, certificate_not_after=record.not_after,
            x5t_s256=x5t_s256(credentials.certificate_der), device=device,
        )

    def _device_certificate(self, reads: ClientReads, client: OAuthClient, der: bytes,
                            now: datetime) -> CertificateRecord:
        """RFC 8705 §2.1: the presented certificate is a live iotiam certificate of the
        client's device (checked here even though TLS verified the chain: a trusted
        proxy may have forwarded it)."""
        fingerprint = hashlib.sha256(der).hexdigest()
        presented = self._presented_serial(der, fingerprint)
        if presented is None:
            raise _Unrecognised("the TLS client certificate was not issued by iotiam",
                                     client.client_id)
        issuer_id, serial = presented
        # the fingerprint must be that of the very certificate iotiam issued and stored:
        # stronger than a signature check (which it makes redundant), and cheaper
        record = reads.certificate(issuer_id, serial)
        if record is None or record.fingerprint_sha256 != fingerprint:
            # iotiam's issuer name on a certificate iotiam never issued
            raise _Unrecognised(f"the TLS client certificate does not belong to client "
                                     f"{client.client_id!r}", client.client_id)
        if record.device_id != client.device_id:
            raise InvalidClient(f"the TLS client certificate does not belong to client "
                                f"{client.client_id!r}")
        if record.status is not CertificateStatus.ISSUED:
            raise InvalidClient(f"certificate {record.serial_hex} is {record.status}")
        if not record.not_before <= now < record.not_after:
            raise InvalidClient(f"certificate {record.serial_hex} is not valid now")
        return record

    def _presented_serial(self, der: bytes, fingerprint: str) -> tuple[str, int] | None:
        """The issuer id and serial of a presented certificate, None if none of iotiam's
        issuing CAs issued it (a rotation leaves several); parsed once per certificate
        (the live status is read every time)."""
        if fingerprint in self._presented:
            return self._presented[fingerprint]
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise InvalidClient("the TLS client certificate cannot be parsed") from e
        issuer_id = self._issuing.issuer_named(cert.issuer)
        serial = None if issuer_id is None else (issuer_id, cert.serial_number)
        if len(self._presented) >= _PRESENTED_CACHE:
            self._presented.clear()
        self._presented[fingerprint] = serial
        return serial

    # -- shared --------------------------------------------------------------------------

    @staticmethod
    def _client(reads: ClientReads, client_id: str, method: AuthMethod) -> OAuthClient:
        client = reads.client(client_id)
        if client is None:
            raise _Unrecognised(f"unknown client {client_id[:128]!r}", client_id)
        if not client.active:
            raise InvalidClient(f"client {client_id!r} was revoked")
        if method not in client.auth_methods:
            raise InvalidClient(f"client {client_id!r} may not authenticate with {method}")
        return client

    @staticmethod
    def _require_active_device(reads: ClientReads, client: OAuthClient) -> Device | None:
        if client.device_id is None:
            return None
        device = reads.device(client.device_id)
        if device is None:
            raise InvalidClient(f"the device of client {client.client_id!r} is gone")
        refused = refusal(device.id, device.state, Transport.OAUTH)
        if refused is not None:
            # the client proved who it is: say why it gets nothing, and what ends it
            why = _WHY_NO_TOKEN.get(device.state)
            if why is not None:
                raise AccessDenied(f"device {device.state}: {why}")
            raise InvalidClient(refused)
        return device

    @staticmethod
    def _live_certificates(uow: TokensUnitOfWork, device_id: str, now: datetime
                           ) -> list[CertificateRecord]:
        return [c for c in uow.certificates.for_device(device_id)
                if c.status is CertificateStatus.ISSUED and c.pem is not None
                and c.not_before <= now < c.not_after]

    def _certificate_key(self, record: CertificateRecord) -> Key | None:
        cache_key = f"{record.issuer_id}:{record.serial_hex}"
        if cache_key in self._cert_keys:
            self._cert_keys.move_to_end(cache_key)
            return self._cert_keys[cache_key]
        assert record.pem is not None
        key = jws.key_from_public(x509.load_pem_x509_certificate(record.pem.encode())
                                  .public_key())
        self._cert_keys[cache_key] = key
        if len(self._cert_keys) > _KEY_CACHE:
            self._cert_keys.popitem(last=False)
        return key
