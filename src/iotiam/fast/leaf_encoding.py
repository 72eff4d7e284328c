"""A leaf certificate encoded straight to DER (RFC 5280 §4.1), for the issuance hot path.

``CertificateBuilder`` walks a Python object per name, attribute and extension for
every certificate; a leaf under one issuer differs from the next only in its serial,
validity, subject, key and key identifier. :class:`LeafEncoder` keeps every other
byte (issuer name, signature algorithm, the issuer-only extensions) encoded once and
joins the per-certificate parts around them. :class:`DirectLeafSigner` is the
``pki.ports.LeafSigner`` that uses it: it checks at start-up that this gives exactly
the bytes ``CertificateBuilder`` gives, and signs with the builder if it does not.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from iotiam.pki.authority import PublicUrls
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.der import content, elements, tlv
from iotiam.pki.keys import PublicKey
from iotiam.pki.leaf_builder import Ext, LeafBuilder, key_kind
from iotiam.pki.models import CertificateProfile
from iotiam.pki.signer import Signer

_SEQUENCE = 0x30
_SET = 0x31
_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_OID = 0x06
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_BOOLEAN_TRUE = b"\x01\x01\xff"
# [0] EXPLICIT Version ::= v3
_VERSION_3 = b"\xa0\x03\x02\x01\x02"


def integer(value: int) -> bytes:
    """A non-negative INTEGER in the fewest octets, a leading 0 keeping it positive."""
    return tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def object_identifier(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted form (X.690 §8.19)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        septets = [arc & 0x7F]
        arc >>= 7
        while arc:
            septets.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(septets))
    return tlv(_OID, bytes(body))


def key_identifier(spki_der: bytes) -> bytes:
    """RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's value.

    The same value ``SubjectKeyIdentifier.from_public_key`` computes.
    """
    _, bit_string = elements(spki_der)
    # the first content octet counts the unused bits (0 for every key type we take)
    key_bits = content(bit_string)[1:]
    return hashlib.sha1(key_bits, usedforsecurity=False).digest()


def extension(oid: x509.ObjectIdentifier, critical: bool, value_der: bytes) -> bytes:
    """One Extension: extnID, critical (only when TRUE: DER omits the default), extnValue."""
    flag = _BOOLEAN_TRUE if critical else b""
    return tlv(_SEQUENCE, object_identifier(oid.dotted_string) + flag
               + tlv(_OCTET_STRING, value_der))


_SKI_OID = object_identifier(x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string)


def subject_key_identifier(spki_der: bytes) -> bytes:
    """The SubjectKeyIdentifier extension (not critical, RFC 5280 §4.2.1.2) of a key."""
    return tlv(_SEQUENCE, _SKI_OID + tlv(
        _OCTET_STRING, tlv(_OCTET_STRING, key_identifier(spki_der))))


@functools.lru_cache(maxsize=16)
def validity(not_before: datetime, not_after: datetime) -> bytes:
    """Validity ::= SEQUENCE { notBefore, notAfter } (a batch shares one: cached)."""
    return tlv(_SEQUENCE, _time(not_before) + _time(not_after))


def _time(value: datetime) -> bytes:
    # RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds
    t = value.astimezone(UTC)
    clock = f"{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}Z"
    if 1950 <= t.year < 2050:
        return tlv(_UTC_TIME, f"{t.year % 100:02d}{clock}".encode())
    return tlv(_GENERALIZED_TIME, f"{t.year:04d}{clock}".encode())


class LeafEncoder:
    """Joins a leaf's TBSCertificate and the signed Certificate around fixed issuer bytes."""

    def __init__(self, issuer_name: x509.Name, signature_algorithm_der: bytes) -> None:
        self._issuer_name = issuer_name.public_bytes()
        self._algorithm = signature_algorithm_der

    def tbs(
        self,
        *,
        serial: int,
        validity_der: bytes,
        subject_der: bytes,
        spki_der: bytes,
        extensions_der: Sequence[bytes],
    ) -> bytes:
        """TBSCertificate (RFC 5280 §4.1.2), v3, extensions in the order given."""
        return tlv(_SEQUENCE, b"".join((
            _VERSION_3,
            integer(serial),
            self._algorithm,
            self._issuer_name,
            validity_der,
            subject_der,
            spki_der,
            # [3] EXPLICIT Extensions
            tlv(0xA3, tlv(_SEQUENCE, b"".join(extensions_der))),
        )))

    def certificate(self, tbs_der: bytes, signature: bytes) -> bytes:
        """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }."""
        return tlv(_SEQUENCE, tbs_der + self._algorithm + tlv(_BIT_STRING, b"\x00" + signature))


class DirectLeafSigner(LeafBuilder):
    """A :class:`LeafBuilder` whose :meth:`issue_der` joins the DER itself (one SKI hash,
    one signature and a few byte joins a certificate), when the start-up probe shows it
    gives the builder's bytes for this issuer and signer."""

    def __init__(self, signer: Signer, issuer_cert: x509.Certificate,
                 urls: PublicUrls | None) -> None:
        super().__init__(signer, issuer_cert, urls)
        # DER of the builder's extensions; basic constraints lead every leaf
        self._key_usage_der = {
            kind: _der(self._basic_constraints) + _der(usage)
            for kind, usage in self._key_usage.items()
        }
        self._eku_der: dict[tuple[bool, bool], bytes] = {}
        self._issuer_extensions_der = b"".join(_der(e) for e in self._issuer_extensions)
        self._encoder: LeafEncoder | None = None
        self._encoder = self._checked_encoder(issuer_cert)

    def issue_der(
        self,
        public_key: PublicKey,
        identity: LeafIdentity,
        profile: CertificateProfile,
        serial: int,
        not_before: datetime,
        *,
        spki_der: bytes | None = None,
    ) -> bytes:
        """:meth:`issue`, as DER, without building Python objects for the certificate.

        ``spki_der`` is the key's SubjectPublicKeyInfo if the caller already has it.
        """
        encoder = self._encoder
        if encoder is None:
            return super().issue_der(public_key, identity, profile, serial, not_before)
        not_after = self._not_after(identity, profile, serial, not_before)
        if spki_der is None:
            spki_der = public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        # the order issue() gives CertificateBuilder, so both paths sign the same bytes
        parts = [
            self._key_usage_der[key_kind(public_key)],
            self._extended_key_usage_der(profile),
            subject_key_identifier(spki_der),
            self._issuer_extensions_der,
        ]
        names = identity.general_names()
        if names:
            san = x509.SubjectAlternativeName(names)
            parts.append(extension(san.oid, not identity.subject, san.public_bytes()))
        tbs = encoder.tbs(
            serial=serial,
            validity_der=validity(not_before, not_after),
            subject_der=identity.subject.public_bytes(),
            spki_der=spki_der,
            extensions_der=parts,
        )
        return encoder.certificate(tbs, self._signer.sign_bytes(tbs))

    @property
    def encodes_directly(self) -> bool:
        """Whether :meth:`issue_der` skips the builder (the start-up probe matched)."""
        return self._encoder is not None

    def _checked_encoder(self, issuer_cert: x509.Certificate) -> LeafEncoder | None:
        """The direct encoder, if it gives the builder's bytes for this issuer and signer."""
        probe_identity = LeafIdentity(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iotiam-probe")]),
            dns_names=("probe.iotiam.invalid",),
        )
        probe_profile = CertificateProfile("probe", timedelta(hours=1), True, True)
        # never published, so any instant the issuer allows: this one needs no clock
        not_before = issuer_cert.not_valid_before_utc
        key = self._signer.public_key()
        probe = self.issue(key, probe_identity, probe_profile, 1, not_before)
        probe_der = probe.public_bytes(serialization.Encoding.DER)
        _, algorithm, _ = elements(probe_der)
        encoder = LeafEncoder(self._issuer_name, algorithm)
        self._encoder = encoder
        try:
            ours = x509.load_der_x509_certificate(
                self.issue_der(key, probe_identity, probe_profile, 1, not_before))
        finally:
            self._encoder = None
        if ours.tbs_certificate_bytes != probe.tbs_certificate_bytes:
            return None
        # the signature must verify as the builder's would (e.g. an HSM signing wrongly)
        try:
            ours.verify_directly_issued_by(issuer_cert)
        except (ValueError, TypeError, InvalidSignature):
            return None
        return encoder

    def _extended_key_usage_der(self, profile: CertificateProfile) -> bytes:
        wanted = (profile.client_auth, profile.server_auth)
        der = self._eku_der.get(wanted)
        if der is None:
            eku = self._extended_key_usage(profile)
            der = self._eku_der[wanted] = _der(eku) if eku is not None else b""
        return der


def _der(built: Ext) -> bytes:
    """The DER of an extension ``LeafBuilder`` encoded once (``UnrecognizedExtension``)."""
    value = built.value
    assert isinstance(value, x509.UnrecognizedExtension)
    return extension(built.oid, built.critical, value.value)
