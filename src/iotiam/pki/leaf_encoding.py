"""A leaf certificate encoded straight to DER (RFC 5280 §4.1), for the issuance hot path.

``CertificateBuilder`` walks a Python object per name, attribute and extension for
every certificate; a leaf under one issuer differs from the next only in its serial,
validity, subject, key and key identifier. :class:`LeafEncoder` keeps every other
byte (issuer name, signature algorithm, the issuer-only extensions) encoded once and
joins the per-certificate parts around them. ``LeafBuilder`` checks at start-up that
this gives exactly the bytes ``CertificateBuilder`` gives, and falls back to the
builder if it ever does not.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509

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


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content (X.690 §8.1)."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


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


def elements(der: bytes) -> list[bytes]:
    """The elements (whole TLVs) inside one constructed DER element."""
    content = _content(der)
    found = []
    offset = 0
    while offset < len(content):
        start = offset
        offset, size = _header(content, offset)
        offset += size
        found.append(content[start:offset])
    return found


def _header(der: bytes, offset: int) -> tuple[int, int]:
    """(offset of the content, content length) of the element at ``offset``."""
    first = der[offset + 1]
    if first < 0x80:
        return offset + 2, first
    count = first & 0x7F
    return offset + 2 + count, int.from_bytes(der[offset + 2:offset + 2 + count], "big")


def _content(der: bytes) -> bytes:
    start, size = _header(der, 0)
    return der[start:start + size]


def key_identifier(spki_der: bytes) -> bytes:
    """RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's value.

    The same value ``SubjectKeyIdentifier.from_public_key`` computes.
    """
    _, bit_string = elements(spki_der)
    # the first content octet counts the unused bits (0 for every key type we take)
    key_bits = _content(bit_string)[1:]
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
