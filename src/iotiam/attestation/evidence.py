"""Device evidence: an EAT-style signed JWT (RFC 9711 claims, ``typ`` ``eat+jwt``).

The device signs with the private key of the very iotiam certificate it presents on
the TLS connection, so the evidence is bound to an identity iotiam issued. Claims:

- ``eat_nonce`` (RFC 9711 §4.1): the server nonce from ``/v1/attestation/challenge``;
- ``iat``: when it was signed (seconds); ``exp`` optional;
- ``sub``: the device id;
- ``fw_version``, ``fw_hash`` (hex SHA-256 of the running image);
- ``measurements``: boot measurements, a list of ``{"name", "digest"}``.

Algorithms follow the certificate key: ES256 (P-256), ES384 (P-384), EdDSA or Ed25519,
PS256 (RSA). ``none`` and HMAC are refused before a key is looked at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from joserfc import jwt

from iotiam.attestation.metadata import jose_private_key
from iotiam.attestation.models import InvalidEvidence, Measurement
from iotiam.attestation.versions import FirmwareVersion
from iotiam.errors import InvalidInput
from iotiam.pki.keys import PrivateKey
from iotiam.tokens import jws

EVIDENCE_TYP = "eat+jwt"
#: "Ed25519" is RFC 9864's fully specified name for what "EdDSA" signs here
EVIDENCE_ALGORITHMS = ("ES256", "ES384", "EdDSA", "Ed25519", "PS256")
#: how far ``iat`` may be from the server's clock (the nonce gives the real freshness)
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_MEASUREMENTS = 64
MAX_MEASUREMENT_NAME = 128
MAX_DIGEST = 256
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_DIGEST = re.compile(r"[A-Za-z0-9_+/=:-]{1,256}")


@dataclass(frozen=True)
class Evidence:
    """Verified evidence claims."""

    nonce: str
    issued_at: datetime
    firmware_version: FirmwareVersion
    firmware_hash: str
    measurements: tuple[Measurement, ...]


def sign_evidence(key: PrivateKey, *, nonce: str, device_id: str, firmware_version: str,
                  firmware_hash: str, measurements: Sequence[Measurement],
                  now: datetime) -> str:
    """The evidence JWT, signed on the device with its certificate's key."""
    jose_key, alg = jose_private_key(key)
    claims: dict[str, Any] = {
        "eat_nonce": nonce, "iat": int(now.timestamp()), "sub": device_id,
        "fw_version": firmware_version, "fw_hash": firmware_hash.lower(),
        "measurements": [{"name": m.name, "digest": m.digest} for m in measurements],
    }
    return jwt.encode({"alg": alg, "typ": EVIDENCE_TYP}, claims, jose_key, algorithms=[alg])


def verify_evidence(token: object, public_key: PublicKeyTypes, device_id: str,
                    now: datetime) -> Evidence:
    """Check the signature with the certificate's key, then every claim; or raise."""
    if not isinstance(token, str):
        raise InvalidEvidence("'evidence' must be a signed JWT (compact JWS)")
    try:
        header, _ = jws.split(token)
        jws.check_header(header, EVIDENCE_ALGORITHMS)
        typ = jws.typ_of(header)
    except InvalidInput as e:
        raise InvalidEvidence(f"evidence refused: {e.detail}") from e
    if typ != EVIDENCE_TYP:
        raise InvalidEvidence(f"evidence must have typ {EVIDENCE_TYP!r}")
    key = jws.key_from_public(public_key)
    if key is None:
        raise InvalidEvidence("the certificate's key type cannot sign evidence")
    try:
        _, claims, _ = jws.verify(token, [key], EVIDENCE_ALGORITHMS)
    except InvalidInput as e:
        raise InvalidEvidence("the evidence is not signed by the key of the certificate "
                              "presented on this connection") from e
    return _claims(claims, device_id, now)


def _claims(claims: dict[str, Any], device_id: str, now: datetime) -> Evidence:
    sub = claims.get("sub")
    if sub != device_id:
        raise InvalidEvidence(f"the evidence is about {str(sub)[:128]!r}, but the "
                              f"certificate is device {device_id!r}")
    nonce = claims.get("eat_nonce")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise InvalidEvidence("'eat_nonce' must be the nonce from /v1/attestation/challenge")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) \
            or not 0 <= iat < 32503680000:  # year 3000
        raise InvalidEvidence("'iat' (seconds since the epoch) is required")
    issued_at = datetime.fromtimestamp(iat, UTC)
    if abs(now - issued_at) > MAX_CLOCK_SKEW:
        raise InvalidEvidence(f"the evidence is not fresh: 'iat' is more than "
                              f"{int(MAX_CLOCK_SKEW.total_seconds())} s from the server's time")
    exp = claims.get("exp")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float)
                            or exp <= now.timestamp()):
        raise InvalidEvidence("the evidence has expired ('exp')")
    try:
        version = FirmwareVersion.parse(claims.get("fw_version"))
    except InvalidInput as e:
        raise InvalidEvidence(f"'fw_version': {e.detail}") from e
    fw_hash = claims.get("fw_hash")
    if not isinstance(fw_hash, str) or not _HEX64.fullmatch(fw_hash):
        raise InvalidEvidence("'fw_hash' must be the hex SHA-256 of the running image")
    return Evidence(nonce=nonce, issued_at=issued_at, firmware_version=version,
                    firmware_hash=fw_hash.lower(),
                    measurements=parse_measurements(claims.get("measurements")))


def parse_measurements(value: object) -> tuple[Measurement, ...]:
    """``[{"name": ..., "digest": ...}]``, bounded; names unique."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_MEASUREMENTS:
        raise InvalidEvidence(f"'measurements' must be a list of at most {MAX_MEASUREMENTS} "
                              "{name, digest} objects")
    seen: set[str] = set()
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"name", "digest"}:
            raise InvalidEvidence("each measurement must be an object with 'name' and "
                                  "'digest'")
        name, digest = item["name"], item["digest"]
        if not isinstance(name, str) or not 0 < len(name) <= MAX_MEASUREMENT_NAME \
                or not name.isprintable():
            raise InvalidEvidence(f"a measurement 'name' must be 1-{MAX_MEASUREMENT_NAME} "
                                  "printable characters")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise InvalidEvidence(f"measurement {name!r}: 'digest' must be hex or base64 "
                                  f"(at most {MAX_DIGEST} characters)")
        if name in seen:
            raise InvalidEvidence(f"measurement {name!r} appears twice")
        seen.add(name)
        out.append(Measurement(name=name, digest=digest))
    return tuple(out)
