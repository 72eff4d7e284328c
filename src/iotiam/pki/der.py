"""The few DER primitives (X.690) the PKI joins bytes with, written once.

``ocsp.py`` splices the responder certificate into responses, ``external_signer.py``
puts a signature made elsewhere into a certificate, CRL or OCSP response, and
``iotiam.fast.leaf_encoding`` joins whole leaf certificates from them.
"""

from __future__ import annotations


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length (X.690 §8.1.3), content."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def element_at(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``offset`` (X.690 §8.1)."""
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        octets = length & 0x7F
        length = int.from_bytes(data[start : start + octets], "big")
        start += octets
    return tag, start, start + length


def content(der: bytes) -> bytes:
    """The content octets of the one element ``der`` starts with."""
    _, start, end = element_at(der, 0)
    return der[start:end]


def elements(der: bytes) -> list[bytes]:
    """The elements (whole TLVs) inside one constructed DER element."""
    _, offset, end = element_at(der, 0)
    found = []
    while offset < end:
        _, _, after = element_at(der, offset)
        found.append(der[offset:after])
        offset = after
    return found
