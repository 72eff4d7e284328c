"""Signed firmware metadata: signer keys, the metadata JWS, and its verification.

Metadata is a compact JWS (RFC 7515) whose payload is a JSON object with at least
``device_type``, ``version`` and ``sha256`` (hex SHA-256 of the image), optionally
``released_at`` (ISO 8601 or epoch seconds) and ``notes``. The algorithm follows the
signer's key: ES256 for P-256, EdDSA for Ed25519, PS256 for RSA of 3072 bits or more.
The header may carry ``kid`` = the signer's key id (hex SHA-256 of its
SubjectPublicKeyInfo) and ``typ`` = ``firmware-metadata+jwt`` (plain ``JWT`` or no
``typ`` is accepted too); any other ``typ`` (an EAT, an access token) is refused, so
that one kind of signed object never passes for another. ``alg: none``, HMAC and
unsigned JSON are refused before a key is chosen.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from iotiam.attestation.models import FirmwareSigner, InvalidFirmwareMetadata, SignerAlgorithm
from iotiam.attestation.versions import FirmwareVersion
from iotiam.errors import InvalidInput
from iotiam.inventory.models import check_identifier
from iotiam.pki.keys import PrivateKey
from iotiam.tokens import jws

METADATA_TYP = "firmware-metadata+jwt"
#: RFC 9864 names Ed25519 signatures "Ed25519" and deprecates "EdDSA": both are read
METADATA_ALGORITHMS = ("ES256", "EdDSA", "Ed25519", "PS256")
_ALIASES = {"Ed25519": "EdDSA"}
MIN_RSA_BITS = 3072
MAX_NOTES = 1024
MAX_PUBLIC_KEY_PEM = 8192
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class SignerKey:
    """A checked signer public key: its algorithm, PEM and key id."""

    algorithm: SignerAlgorithm
    public_key_pem: str
    key_id: str


@dataclass(frozen=True)
class FirmwareMetadata:
    """The verified payload of a metadata JWS."""

    device_type: str
    version: FirmwareVersion
    sha256: str
    released_at: datetime | None
    notes: str | None


def algorithm_of(public_key: object) -> SignerAlgorithm:
    """The JWS algorithm a signer key signs with; other keys are refused."""
    if isinstance(public_key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if public_key.curve.name != "secp256r1":
            raise InvalidInput(f"EC signer keys must be P-256, not {public_key.curve.name}")
        return SignerAlgorithm.ES256
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return SignerAlgorithm.EDDSA
    if isinstance(public_key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise InvalidInput(f"RSA signer keys need at least {MIN_RSA_BITS} bits, "
                               f"not {public_key.key_size}")
        return SignerAlgorithm.PS256
    raise InvalidInput("a firmware signer key must be P-256, Ed25519 or RSA (3072 bits or "
                       "more)")


def key_id_of(public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
              | rsa.RSAPublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_signer_key(pem: str) -> SignerKey:
    """Parse and check a signer's PEM public key (a private key is refused, never stored)."""
    if not isinstance(pem, str) or not pem.strip() or len(pem) > MAX_PUBLIC_KEY_PEM:
        raise InvalidInput("the signer key must be a PEM public key")
    if "PRIVATE KEY" in pem:
        raise InvalidInput("that is a private key: register the signer's PUBLIC key; the "
                           "private key never leaves the signer")
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as e:
        raise InvalidInput("the signer key is not a PEM public key (SubjectPublicKeyInfo)"
                           ) from e
    algorithm = algorithm_of(key)
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | rsa.RSAPublicKey)
    clean = key.public_bytes(serialization.Encoding.PEM,
                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return SignerKey(algorithm=algorithm, public_key_pem=clean, key_id=key_id_of(key))


def jose_private_key(key: PrivateKey) -> tuple[Key, str]:
    """A joserfc signing key and its JWS algorithm (ES256/ES384/EdDSA/PS256)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(key), "ES384" if key.curve.key_size == 384 else "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return OKPKey.import_key(key), "EdDSA"
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAKey.import_key(key), "PS256"
    raise InvalidInput(f"cannot sign with a {type(key).__name__}")


def sign_metadata(key: PrivateKey, *, device_type: str, version: str, sha256: str,
                  released_at: datetime | None = None, notes: str | None = None) -> str:
    """Signed firmware metadata (done where the signer's private key lives)."""
    algorithm = algorithm_of(key)
    check_identifier(device_type, "device type")
    FirmwareVersion.parse(version)
    payload: dict[str, Any] = {"device_type": device_type, "version": version,
                               "sha256": _sha256(sha256)}
    if released_at is not None:
        payload["released_at"] = released_at.astimezone(UTC).isoformat()
    if notes:
        payload["notes"] = notes
    jose_key, _ = jose_private_key(key)
    header = {"alg": str(algorithm), "typ": METADATA_TYP,
              "kid": key_id_of(key.public_key())}
    return jwt.encode(header, payload, jose_key, algorithms=[str(algorithm)])


def verify_metadata(token: object, signers: Sequence[FirmwareSigner]
                    ) -> tuple[FirmwareMetadata, FirmwareSigner]:
    """Verify ``token`` with one of ``signers`` and parse its payload, or raise; a
    signature by a revoked signer is refused as such."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise InvalidFirmwareMetadata(
            "firmware metadata must be a compact JWS signed by a registered firmware signer "
            "(unsigned metadata is refused); make one with `iotiam firmware sign`")
    try:
        header, _ = jws.split(token)
        jws.check_header(header, METADATA_ALGORITHMS)
        typ = jws.typ_of(header)
    except InvalidInput as e:
        raise InvalidFirmwareMetadata(f"firmware metadata refused: {e.detail}") from e
    if typ not in (None, "jwt", METADATA_TYP):
        raise InvalidFirmwareMetadata(f"firmware metadata must have typ {METADATA_TYP!r} "
                                      "(or JWT, or none)")
    kid = header.get("kid")
    # live signers first: a key registered at two org units and revoked at one still
    # verifies as the other's
    candidates = sorted((s for s in signers if kid is None or s.key_id == kid),
                        key=lambda s: s.revoked_at is not None)
    if not candidates:
        raise InvalidFirmwareMetadata("the metadata is not signed by a firmware signer "
                                      "registered for this org unit")
    keys = [_public(s) for s in candidates]
    try:
        _, claims, index = jws.verify(token, keys, METADATA_ALGORITHMS)
    except InvalidInput as e:
        raise InvalidFirmwareMetadata(
            "the metadata signature does not verify with any firmware signer registered "
            "for this org unit") from e
    signer = candidates[index]
    if signer.revoked_at is not None:
        raise InvalidFirmwareMetadata(
            f"the metadata is signed by firmware signer {signer.name!r}, revoked at "
            f"{signer.revoked_at.isoformat()}: re-sign it with a signer that is not revoked")
    alg = str(header.get("alg"))
    if _ALIASES.get(alg, alg) != str(signer.algorithm):
        raise InvalidFirmwareMetadata(f"signer {signer.name!r} signs with "
                                      f"{signer.algorithm}, not {header.get('alg')}")
    return parse_payload(claims), signer


def parse_payload(claims: dict[str, Any]) -> FirmwareMetadata:
    """Check the metadata payload's fields."""
    try:
        device_type = claims.get("device_type")
        if not isinstance(device_type, str):
            raise InvalidInput("'device_type' is required")
        check_identifier(device_type, "device type")
        if "version" not in claims:
            raise InvalidInput("'version' is required")
        version = FirmwareVersion.parse(claims["version"])
        sha256 = _sha256(claims.get("sha256"))
        notes = claims.get("notes")
        if notes is not None and (not isinstance(notes, str) or len(notes) > MAX_NOTES):
            raise InvalidInput(f"'notes' must be text of at most {MAX_NOTES} characters")
        released_at = _time(claims.get("released_at"))
    except InvalidInput as e:
        raise InvalidFirmwareMetadata(f"firmware metadata: {e.detail}") from e
    return FirmwareMetadata(device_type=device_type, version=version, sha256=sha256,
                            released_at=released_at, notes=notes or None)


def _sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise InvalidInput("'sha256' must be the hex SHA-256 of the image (64 hex digits)")
    return value.lower()


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and 0 <= value < 32503680000:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.astimezone(UTC)
    raise InvalidInput("'released_at' must be ISO 8601 with a time zone, or epoch seconds")


def _public(signer: FirmwareSigner) -> Key:
    key = jws.key_from_public(serialization.load_pem_public_key(
        signer.public_key_pem.encode()))
    assert key is not None  # checked at registration
    return key
