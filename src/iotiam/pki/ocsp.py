"""OCSP responder logic (RFC 6960, lightweight profile of RFC 5019), free of any transport.

The web adapter hands :meth:`OcspResponder.respond` the request bytes (POST body, or
:func:`parse_ocsp_get_path` for GET) and a status lookup, and sends back the DER.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from iotiam.errors import InvalidInput, PayloadTooLarge, SetupError
from iotiam.pki.der import content, element_at, tlv
from iotiam.pki.models import RevocationReason
from iotiam.pki.signer import Signer, SigningCa

#: A single-certificate request is ~100 bytes; anything much larger is not one.
MAX_OCSP_REQUEST_BYTES = 4 * 1024

# RFC 9654 §2.1 (obsoleting RFC 8954's 32-octet cap): a nonce is 1..128 octets and a
# request with any other length is malformedRequest.
_MAX_NONCE_BYTES = 128

# CertID hash algorithms whose issuer hashes are precomputed: openssl sends SHA-1 by
# default (RFC 5019 §2.1.1 required it); RFC 9919, which obsoletes it, adds SHA-256.
_CERT_ID_HASHES: tuple[hashes.HashAlgorithm, ...] = (
    hashes.SHA1(),  # noqa: S303 — CertID hashing, not a signature (RFC 6960 §4.1.1)
    hashes.SHA224(),
    hashes.SHA256(),
    hashes.SHA384(),
    hashes.SHA512(),
)

_DER = serialization.Encoding.DER
_MALFORMED = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST
).public_bytes(_DER)
UNAUTHORIZED = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.UNAUTHORIZED
).public_bytes(_DER)


@dataclass(frozen=True)
class CertStatusInfo:
    """What the inventory knows about one serial, as OCSP reports it (RFC 6960 §4.2.1)."""

    status: Literal["good", "revoked", "unknown"]
    revoked_at: datetime | None = None
    reason: RevocationReason | None = None

    def __post_init__(self) -> None:
        if (self.status == "revoked") != (self.revoked_at is not None):
            raise ValueError("revoked_at is required for, and only for, a revoked status")
        if self.reason is not None and self.status != "revoked":
            raise ValueError("a revocation reason only goes with a revoked status")


GOOD = CertStatusInfo("good")
UNKNOWN = CertStatusInfo("unknown")

StatusLookup = Callable[[int], CertStatusInfo]


@dataclass(frozen=True)
class _CachedResponse:
    status: CertStatusInfo
    produced_at: datetime
    der: bytes


class OcspResponder:
    """Answers OCSP requests about one issuing CA, signed by its delegated responder.

    Responses to requests without a nonce are cached per (CertID hash, serial) with the
    status they encode. ``lookup`` still runs for every request, and the cached bytes
    are served only while that status is unchanged and they are less than half their
    validity old: a revocation shows at once (G3), a cache hit costs no signature.
    """

    def __init__(
        self,
        issuer_cert: x509.Certificate,
        responder_cert: x509.Certificate,
        signer: Signer,
        *,
        validity: timedelta = timedelta(hours=1),
        cache_size: int = 100_000,
    ) -> None:
        _check_delegation(issuer_cert, responder_cert, signer)
        if validity <= timedelta(0):
            raise ValueError("OCSP response validity must be positive")
        self._responder_cert = responder_cert
        # BasicOCSPResponse.certs  [0] EXPLICIT SEQUENCE OF Certificate (RFC 6960 §4.2.1)
        self._certs_field = tlv(0xA0, tlv(0x30, responder_cert.public_bytes(_DER)))
        self._responder_not_after = responder_cert.not_valid_after_utc
        self._signer = signer
        self._validity = validity
        self._max_cache_age = validity / 2
        self._cache_size = cache_size
        self._cache: dict[tuple[str, int], _CachedResponse] = {}
        self._cache_lock = threading.Lock()
        self._issuer_hashes = _issuer_hashes(issuer_cert)

    @classmethod
    def from_material(
        cls,
        issuer_cert: x509.Certificate,
        responder: SigningCa,
        *,
        validity: timedelta = timedelta(hours=1),
        cache_size: int = 100_000,
    ) -> OcspResponder:
        """A responder signing with ``responder``'s signer (in this process or a module)."""
        return cls(
            issuer_cert,
            responder.certificate,
            responder.signer,
            validity=validity,
            cache_size=cache_size,
        )

    def respond(self, request_der: bytes, lookup: StatusLookup, now: datetime) -> bytes:
        """Answer one DER OCSPRequest with a DER OCSPResponse (never raises on bad input)."""
        request = _parse_request(request_der)
        if request is None:
            return _MALFORMED
        try:
            algorithm = request.hash_algorithm
        except UnsupportedAlgorithm:
            # We cannot tell whether the CertID names our CA, so we do not vouch for it.
            return UNAUTHORIZED
        expected = self._issuer_hashes.get(algorithm.name)
        if expected is None or expected != (request.issuer_name_hash, request.issuer_key_hash):
            # RFC 5019 §2.2.3: a responder that is not authoritative for the CertID
            # answers "unauthorized".
            return UNAUTHORIZED
        try:
            nonce = _nonce_of(request)
        except ValueError:
            return _MALFORMED
        serial = request.serial_number
        status = lookup(serial)
        if nonce is not None:
            # RFC 9654 §2.1: the nonce binds this response to this request; never cached.
            return self._build(algorithm, expected, serial, status, now, nonce)
        key = (algorithm.name, serial)
        cached = self._cache.get(key)
        if (
            cached is not None
            and cached.status == status
            and timedelta(0) <= now - cached.produced_at < self._max_cache_age
        ):
            return cached.der
        der = self._build(algorithm, expected, serial, status, now, None)
        if status.status != "unknown":
            # Unknown serials are not cached: a scan of random serials would otherwise
            # evict the entries real devices need.
            self._remember(key, _CachedResponse(status, now, der))
        return der

    def forget(self, serial: int) -> None:
        """Drop the cached responses about one serial (it was revoked)."""
        with self._cache_lock:
            for algorithm in self._issuer_hashes:
                self._cache.pop((algorithm, serial), None)

    def clear_cache(self) -> None:
        """Forget every cached response (e.g. after rotating the responder certificate)."""
        with self._cache_lock:
            self._cache.clear()

    def _build(
        self,
        algorithm: hashes.HashAlgorithm,
        issuer_hashes: tuple[bytes, bytes],
        serial: int,
        status: CertStatusInfo,
        now: datetime,
        nonce: bytes | None,
    ) -> bytes:
        if now >= self._responder_not_after:
            raise SetupError(
                "the OCSP responder certificate expired at "
                f"{self._responder_not_after.isoformat()}; rotate it"
            )
        # RFC 5019 §2.2.4: nextUpdate is mandatory; it never outlives the signer.
        next_update = min(now + self._validity, self._responder_not_after)
        revocation_time: datetime | None = None
        revocation_reason: x509.ReasonFlags | None = None
        if status.status == "revoked":
            cert_status = ocsp.OCSPCertStatus.REVOKED
            revocation_time = status.revoked_at
            # RFC 5280 §5.3.1 (as for CRL entries): omit rather than say "unspecified".
            if status.reason is not None and status.reason is not RevocationReason.UNSPECIFIED:
                revocation_reason = status.reason.flag
        elif status.status == "good":
            cert_status = ocsp.OCSPCertStatus.GOOD
        else:
            cert_status = ocsp.OCSPCertStatus.UNKNOWN
        name_hash, key_hash = issuer_hashes
        builder = (
            ocsp.OCSPResponseBuilder()
            # RFC 6960 §4.2.1: the response CertID repeats the request's hash algorithm.
            .add_response_by_hash(
                name_hash,
                key_hash,
                serial,
                algorithm,
                cert_status,
                now,
                next_update,
                revocation_time,
                revocation_reason,
            )
            # RFC 5019 §2.2.1: responder ID by key hash keeps responses small.
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self._responder_cert)
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        signed = self._signer.sign_ocsp(builder).public_bytes(_DER)
        # RFC 6960 §4.2.2.2: a delegated responder sends its certificate along. It is
        # spliced in as pre-encoded DER: letting cryptography embed it costs ~75 µs a
        # response (it re-encodes the certificate twice), more than the signature.
        return _with_certs_field(signed, self._certs_field)

    def _remember(self, key: tuple[str, int], entry: _CachedResponse) -> None:
        with self._cache_lock:
            self._cache.pop(key, None)
            while len(self._cache) >= self._cache_size > 0:
                # dicts keep insertion order: drop the oldest entry.
                del self._cache[next(iter(self._cache))]
            if self._cache_size > 0:
                self._cache[key] = entry


def parse_ocsp_get_path(path_segment: str) -> bytes:
    """Decode the URL-encoded base64 DER request of an OCSP GET (RFC 6960 Appendix A.1)."""
    # Some clients do not escape "/" in the base64, so the adapter passes everything
    # after the responder's base path; a leading "/" is not part of the request.
    text = unquote(path_segment.lstrip("/"))
    if len(text) > MAX_OCSP_REQUEST_BYTES * 4 // 3 + 4:
        raise PayloadTooLarge("OCSP GET request is too long")
    # Some clients strip the base64 padding from the URL; restore it.
    text += "=" * (-len(text) % 4)
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput("OCSP GET path is not a base64-encoded OCSP request") from e
    if not der:
        raise InvalidInput("OCSP GET path is empty")
    return der


def _parse_request(request_der: bytes) -> ocsp.OCSPRequest | None:
    if not request_der or len(request_der) > MAX_OCSP_REQUEST_BYTES:
        return None
    try:
        return ocsp.load_der_ocsp_request(request_der)
    except (ValueError, NotImplementedError):
        # NotImplementedError: cryptography refuses requests for more than one
        # certificate; RFC 5019 §2.1.1 clients send exactly one.
        return None


def _nonce_of(request: ocsp.OCSPRequest) -> bytes | None:
    """The request's nonce, or None; ValueError if the extensions or the nonce are bad."""
    try:
        extension = request.extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        return None
    except (x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise ValueError(str(e)) from e
    nonce = extension.value.nonce
    if not 1 <= len(nonce) <= _MAX_NONCE_BYTES:
        raise ValueError(f"nonce of {len(nonce)} octets")
    return nonce


def _issuer_hashes(issuer_cert: x509.Certificate) -> dict[str, tuple[bytes, bytes]]:
    """(issuerNameHash, issuerKeyHash) of ``issuer_cert`` per CertID hash algorithm.

    RFC 6960 §4.1.1: the name hash covers the DER of the issuer's subject name, the key
    hash the value of its subjectPublicKey BIT STRING (no tag, length or unused-bits).
    """
    name_der = issuer_cert.subject.public_bytes()
    key_bits = _subject_public_key_bits(issuer_cert)
    result = {}
    for algorithm in _CERT_ID_HASHES:
        name_hash = hashes.Hash(algorithm)
        name_hash.update(name_der)
        key_hash = hashes.Hash(algorithm)
        key_hash.update(key_bits)
        result[algorithm.name] = (name_hash.finalize(), key_hash.finalize())
    return result


def _subject_public_key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's bytes from the certificate's SPKI (RFC 5280 §4.1)."""
    spki = cert.public_key().public_bytes(_DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier,
    #                                     subjectPublicKey BIT STRING }
    _, body, _ = element_at(spki, 0)
    _, _, after_algorithm = element_at(spki, body)
    tag, bits, end = element_at(spki, after_algorithm)
    if tag != _DER_BIT_STRING or spki[bits] != 0:
        raise SetupError("the issuing CA's public key is not a whole-octet BIT STRING")
    return spki[bits + 1 : end]


def _with_certs_field(response_der: bytes, certs_field: bytes) -> bytes:
    """Append ``certs_field`` to the BasicOCSPResponse inside an encoded OCSPResponse.

    RFC 6960 §4.2.1: ``certs`` follows the signature in BasicOCSPResponse and is not
    covered by it, so appending it leaves the signature valid.
    """
    return replace_basic_response(
        response_der, lambda basic: tlv(0x30, content(basic) + certs_field))


def replace_basic_response(response_der: bytes, change: Callable[[bytes], bytes]) -> bytes:
    """The OCSPResponse with its BasicOCSPResponse (DER) passed through ``change``.

    The path walked is OCSPResponse SEQUENCE → responseStatus, responseBytes [0]
    EXPLICIT SEQUENCE → responseType, response OCTET STRING → BasicOCSPResponse.
    """
    der = response_der
    _, outer, _ = element_at(der, 0)
    _, _, after_status = element_at(der, outer)
    _, explicit, _ = element_at(der, after_status)
    _, response_bytes, _ = element_at(der, explicit)
    _, _, after_type = element_at(der, response_bytes)
    tag, octets, octets_end = element_at(der, after_type)
    if tag != _DER_OCTET_STRING:
        raise ValueError("not a successful OCSPResponse")
    basic_der = change(der[octets:octets_end])
    response_bytes_der = tlv(0x30, der[response_bytes:after_type] + tlv(0x04, basic_der))
    return tlv(0x30, der[outer:after_status] + tlv(0xA0, response_bytes_der))


_DER_BIT_STRING = 0x03
_DER_OCTET_STRING = 0x04




def _check_delegation(
    issuer_cert: x509.Certificate, responder_cert: x509.Certificate, signer: Signer
) -> None:
    """RFC 6960 §4.2.2.2: a delegated responder is certified by the CA it answers for."""
    if responder_cert.issuer != issuer_cert.subject:
        raise SetupError("the OCSP responder certificate was not issued by this CA")
    try:
        eku = responder_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise SetupError("the OCSP responder certificate lacks the id-kp-OCSPSigning EKU")
    if signer.public_key() != responder_cert.public_key():
        raise SetupError("the OCSP signing key does not match the responder certificate")
