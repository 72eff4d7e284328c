"""Access-token signing keys made and kept in the PKCS#11 token of the issuing CA.

A ``tokens.ports.KeyVault``: each rotation generates a new P-256 key pair in the token
(labelled ``oauth-signing-<random>``); the database keeps its URI where an encrypted key
would be.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from iotiam.config import Pkcs11Config
from iotiam.errors import SetupError
from iotiam.hsm.pkcs11_signer import open_signer
from iotiam.hsm.uri import Pkcs11Uri, parse_pkcs11_uri

#: the label every access-token signing key in a token starts with
LABEL_PREFIX = "oauth-signing-"


class Pkcs11KeyVault:
    """Token signing keys on the token ``where`` names (its object is replaced)."""

    def __init__(self, where: Pkcs11Uri, config: Pkcs11Config) -> None:
        self._where = where
        self._config = config

    def create(self) -> tuple[ec.EllipticCurvePublicKey, str]:
        """A new key pair in the token: its public key and its URI (no PIN)."""
        uri = self._where.for_object(LABEL_PREFIX + secrets.token_hex(6))
        signer = open_signer(uri, self._config, create=True)
        public = signer.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return public, str(uri)

    def signer(self, reference: str) -> Callable[[bytes], bytes]:
        """DER ECDSA P-256 / SHA-256 with the key ``reference`` (a PKCS#11 URI) names."""
        if not reference.startswith("pkcs11:"):
            raise SetupError("an access-token signing key reference is not a PKCS#11 URI")
        return open_signer(parse_pkcs11_uri(reference), self._config).sign_bytes
