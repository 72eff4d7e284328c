"""RFC 7030 wire formats: base64 bodies, certs-only PKCS#7, CSR attributes."""

from __future__ import annotations

import base64
import binascii
import textwrap
from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from iotiam.errors import InvalidInput, PayloadTooLarge

# RFC 7030 §4.1.3 and §4.2.3: responses are application/pkcs7-mime, base64 (RFC 4648),
# wrapped: `openssl base64 -d` drops a single over-long line (docs/measured-facts.md)
PKCS7_MIME = "application/pkcs7-mime"
CSR_MIME = "application/pkcs10"
CSRATTRS_MIME = "application/csrattrs"
WRAP = 64
MAX_BODY = 16 * 1024


def wrap_base64(der: bytes, *, one_line: bool = False) -> bytes:
    """Base64 in lines of 64 characters (RFC 2045 style) and a final newline.

    ``one_line`` is for strongSwan 5.9's EST client, whose base64 decoder does not
    skip line breaks; the trailing newline falls outside its last 4-character group.
    """
    encoded = base64.b64encode(der).decode()
    if one_line:
        return (encoded + "\n").encode()
    return ("\n".join(textwrap.wrap(encoded, WRAP)) + "\n").encode()


def certs_only(certificates: Sequence[x509.Certificate], *, one_line: bool = False) -> bytes:
    """A degenerate certs-only CMS SignedData (RFC 7030 §4.1.3), base64."""
    der = pkcs7.serialize_certificates(list(certificates), serialization.Encoding.DER)
    return wrap_base64(der, one_line=one_line)


def wants_one_line(headers: Mapping[str, str]) -> bool:
    """Whether the client is a minimal EST client that cannot read wrapped base64.

    strongSwan's ``pki --est`` sends neither User-Agent nor Accept; curl, libest,
    browsers and HTTP libraries send at least one. Such clients get one line.
    """
    return "user-agent" not in headers and "accept" not in headers


def decode_csr_body(body: bytes, content_type: str | None) -> bytes:
    """The DER CSR of a simple(re)enroll body (RFC 7030 §4.2.1: base64 PKCS#10)."""
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"EST request body exceeds {MAX_BODY} bytes")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != CSR_MIME:
        raise InvalidInput(f"content type must be {CSR_MIME}, got {kind or 'none'!r}")
    text = body.strip()
    if text.startswith(b"-----BEGIN"):
        return text  # lenient: PEM is what some clients send
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput("EST body is not base64 (RFC 7030 §4.2.1)") from e
