"""Key pairs: the algorithms iotiam creates for itself and accepts from devices."""

from __future__ import annotations

from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PublicKeyTypes,
)

from iotiam.errors import InvalidInput, SetupError
from iotiam.pki.models import KeyAlgorithm

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

#: RSA moduli iotiam accepts in a leaf certificate (NIST SP 800-131A floor; the ceiling
#: bounds the CPU a hostile CSR can make us and every TLS peer spend).
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
_RSA_EXPONENT = 65537
_RSA_3072_BITS = 3072

_CURVE_NAMES = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}
_LEAF_CURVES = frozenset({"secp256r1", "secp384r1"})
_ALLOWED = "use RSA ≥ 2048, EC P-256/P-384 or Ed25519"


def generate_private_key(alg: KeyAlgorithm) -> PrivateKey:
    """Create a fresh private key for one of iotiam's own certificates."""
    if alg is KeyAlgorithm.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if alg is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if alg is KeyAlgorithm.RSA_3072:
        return rsa.generate_private_key(public_exponent=_RSA_EXPONENT, key_size=_RSA_3072_BITS)
    raise InvalidInput(f"unsupported key algorithm {alg!r}")


def encrypt_private_key(key: PrivateKey, passphrase: bytes) -> bytes:
    """Serialize ``key`` as passphrase-encrypted PKCS#8 PEM (RFC 5958 EncryptedPrivateKeyInfo)."""
    if not passphrase:
        raise InvalidInput("a CA key passphrase must not be empty")
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )


def load_private_key(pem: bytes, passphrase: bytes) -> PrivateKey:
    """Decrypt a key written by :func:`encrypt_private_key`; a bad passphrase is a SetupError."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        # cryptography cannot tell a wrong passphrase from a damaged file (both fail
        # the padding check), so the message names both.
        raise SetupError(
            "wrong CA passphrase, or the key file is not an encrypted PKCS#8 PEM key"
        ) from e
    if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        return key
    raise SetupError(f"the key file holds a {type(key).__name__}, which iotiam does not use")


def describe_public_key(pub: PublicKeyTypes) -> str:
    """A short stable label such as ``ec-p256``, ``ed25519`` or ``rsa-2048``."""
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return "ec-" + _CURVE_NAMES.get(pub.curve.name, pub.curve.name)
    if isinstance(pub, rsa.RSAPublicKey):
        return f"rsa-{pub.key_size}"
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(pub, ed448.Ed448PublicKey):
        return "ed448"
    return type(pub).__name__.removeprefix("_").lower()


def require_leaf_public_key(pub: CertificatePublicKeyTypes) -> PublicKey:
    """Return ``pub`` if iotiam will certify it for a device, else raise InvalidInput."""
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name in _LEAF_CURVES:
            return pub
        raise InvalidInput(f"{describe_public_key(pub)} keys are not accepted; {_ALLOWED}")
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return pub
    if isinstance(pub, rsa.RSAPublicKey):
        bits = pub.key_size
        if bits < MIN_RSA_BITS:
            raise InvalidInput(f"RSA-{bits} keys are too weak; {_ALLOWED}")
        if bits > MAX_RSA_BITS:
            raise InvalidInput(f"RSA-{bits} keys are larger than {MAX_RSA_BITS} bits; {_ALLOWED}")
        # Small or unusual exponents (e=3) invite padding attacks; every sane
        # generator uses F4.
        exponent = pub.public_numbers().e
        if exponent != _RSA_EXPONENT:
            raise InvalidInput(f"RSA public exponent {exponent} is not accepted; use 65537")
        return pub
    raise InvalidInput(f"{describe_public_key(pub)} keys are not accepted; {_ALLOWED}")


def check_leaf_public_key(pub: CertificatePublicKeyTypes) -> None:
    """Raise InvalidInput with a one-line reason unless ``pub`` is fit for a leaf certificate."""
    require_leaf_public_key(pub)
