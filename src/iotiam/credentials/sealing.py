"""Encryption at rest for secrets iotiam must be able to read back (PSKs).

AES-256-GCM with a data key kept outside the database; the identity is bound as
associated data, so a ciphertext moved to another row does not decrypt.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from iotiam.errors import SetupError

_NONCE = 12


class SecretSealer:
    """Seals and opens small secrets with one data key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SetupError("the data key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, secret: bytes, context: str) -> bytes:
        """nonce || ciphertext+tag."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, secret, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        """Decrypt what ``seal`` produced for the same context."""
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode())
        except InvalidTag as e:
            raise SetupError("a stored secret does not decrypt: wrong data key or tampering"
                             ) from e
