"""Child PSKs sealed to their gateway (ECIES over P-256): only the gateway opens them.

Format (version 1), all in one byte string::

    0x01 || ephemeral public key (65 bytes, uncompressed SEC1 point)
         || nonce (12 bytes) || AES-256-GCM ciphertext and tag

The AES key is HKDF-SHA256 over the ECDH shared secret of the ephemeral key and the
gateway certificate's public key (SEC 1 §5.1.3 ECIES, with HKDF as the KDF), salted
with the ephemeral point and bound by ``info`` to the version and ``context``; the
context (``<gateway>/<child>/<psk id>``) is also the AEAD's associated data, so a key
sealed for one child, one gateway or one PSK does not open as another's.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from iotiam.errors import InvalidInput

VERSION = 1
_POINT = 65
_NONCE = 12
_INFO = b"iotiam gateway child key v1|"


def seal_to(public_key: ec.EllipticCurvePublicKey, secret: bytes, context: str) -> bytes:
    """Encrypt ``secret`` so that only the holder of ``public_key``'s private key opens it."""
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise InvalidInput("a gateway's key must be an EC P-256 key to receive child keys")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    key = _derive(ephemeral.exchange(ec.ECDH(), public_key), point, context)
    nonce = os.urandom(_NONCE)
    return bytes([VERSION]) + point + nonce + AESGCM(key).encrypt(nonce, secret,
                                                                   context.encode())


def open_sealed(private_key: ec.EllipticCurvePrivateKey, sealed: bytes, context: str) -> bytes:
    """Decrypt what ``seal_to`` produced for this key and context (the gateway's side)."""
    if len(sealed) < 1 + _POINT + _NONCE + 16 or sealed[0] != VERSION:
        raise InvalidInput("not a version 1 sealed child key")
    point = sealed[1:1 + _POINT]
    nonce = sealed[1 + _POINT:1 + _POINT + _NONCE]
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        key = _derive(private_key.exchange(ec.ECDH(), peer), point, context)
        return AESGCM(key).decrypt(nonce, sealed[1 + _POINT + _NONCE:], context.encode())
    except (ValueError, InvalidTag) as e:
        raise InvalidInput("the sealed child key does not open with this key and context"
                           ) from e


def _derive(shared: bytes, point: bytes, context: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=point,
                info=_INFO + context.encode()).derive(shared)


def context_of(gateway_id: str, child_id: str, psk_id: str) -> str:
    """The associated data a child's key is sealed under."""
    return f"{gateway_id}/{child_id}/{psk_id}"
