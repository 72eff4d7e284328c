"""Proof of possession of a device's previous key, for recovery after an expired certificate.

The device signs ``iotiam-recovery-v1``, the time it signed and the SHA-256 of its new
CSR with its *old* key. The time bounds replay; the CSR hash binds the proof to this one
request; a fresh key is required, so the same proof can never be used twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from iotiam.pki.keys import PrivateKey, PublicKey

CONTEXT = b"iotiam-recovery-v1"


def recovery_message(signed_at: datetime, csr_der: bytes) -> bytes:
    """The exact bytes the old key signs."""
    return b"\n".join([CONTEXT, signed_at.isoformat().encode(),
                       hashlib.sha256(csr_der).hexdigest().encode()])


def sign(key: PrivateKey, message: bytes) -> bytes:
    """Sign with the conventional scheme of the key type (what the agent does)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(message)


def verify(public_key: PublicKey, signature: bytes, message: bytes) -> bool:
    """ECDSA-SHA256, RSA PKCS#1 v1.5 SHA-256 or Ed25519, by key type."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, message)
        else:
            return False
    except InvalidSignature:
        return False
    return True
