"""What a certificate shows a discovery source, in ``Sighting``'s terms.

Written once for every source that sees certificates: iotiam's own traffic
(``sources/own_traffic.py``: the EST queue, the token endpoint) and the logs that carry
them (``sources/_common.py``: Zeek, Suricata). Pure values: no store, no service, so the
published ``own_traffic`` may use it too.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from iotiam.discovery.models import normalize_serial


def read_certificate(cert: x509.Certificate, der: bytes | None = None, *,
                     lenient_key: bool = False) -> dict[str, Any]:
    """The ``Sighting`` fields a certificate fills (RFC 5280 §4.1), issuer and subject as
    whole RFC 4514 text for the caller to bound; ``der`` is the certificate's encoding
    when the caller has it. An unloadable key raises, or is None when ``lenient_key``."""
    if der is None:
        der = cert.public_bytes(serialization.Encoding.DER)
    try:
        key = public_key_label(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        if not lenient_key:
            raise
        key = None
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # an algorithm cryptography does not know: still seen
        algorithm = None
    return {"certificate": hashlib.sha256(der).hexdigest(),
            "issuer": cert.issuer.rfc4514_string(),
            "subject": cert.subject.rfc4514_string(),
            "serial": normalize_serial(cert.serial_number),
            "not_after": cert.not_valid_after_utc.timestamp(), "key": key,
            "signature_hash": algorithm.name if algorithm is not None else None}


def public_key_label(key: PublicKeyTypes) -> str | None:
    """``rsa:2048``, ``ec:secp256r1``, ``ed25519`` ... as ``Sighting.key`` reads."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa:{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ec:{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"dsa:{key.key_size}"
    return None
