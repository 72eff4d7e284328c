"""Firmware signers, images, minimum-version rules, nonces and per-device status."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from iotiam.errors import InvalidInput


class SignerAlgorithm(enum.StrEnum):
    """Keys a firmware signer may use, each with the one JWS algorithm it signs with."""

    ES256 = "ES256"  # P-256
    EDDSA = "EdDSA"  # Ed25519
    PS256 = "PS256"  # RSA, at least 3072 bits


@dataclass(frozen=True)
class FirmwareSigner:
    """A public key trusted to sign firmware metadata for one org unit's subtree."""

    id: str
    name: str
    org_unit_id: str
    org_path: str
    algorithm: SignerAlgorithm
    public_key_pem: str
    #: hex SHA-256 of the SubjectPublicKeyInfo; a metadata JWS may name it as ``kid``
    key_id: str
    created_at: datetime
    created_by: str
    #: once set, nothing it signed counts: its metadata is refused, its images are not
    #: registered images any more (a leaked key). Final: trust a new key instead
    revoked_at: datetime | None = None
    revoked_by: str | None = None


@dataclass(frozen=True)
class FirmwareImage:
    """A firmware build registered with signed metadata (the JWS is kept as the proof)."""

    id: str
    device_type: str
    version: str
    sha256: str
    org_unit_id: str
    org_path: str
    signer_id: str
    metadata_jws: str
    created_at: datetime
    created_by: str
    released_at: datetime | None = None
    notes: str | None = None


@dataclass(frozen=True)
class FirmwareRule:
    """Devices of ``device_type`` under ``org_path`` must run at least ``min_version``."""

    org_unit_id: str
    org_path: str
    device_type: str
    min_version: str
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class AttestationNonce:
    """A server challenge (stored as the SHA-256 of the nonce), single use, short-lived."""

    nonce_hash: str
    device_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True)
class Measurement:
    """One boot measurement from the evidence: what was measured and its digest."""

    name: str
    digest: str


@dataclass(frozen=True)
class FirmwareStatus:
    """What a device last proved about its firmware, and whether that is compliant."""

    device_id: str
    firmware_version: str
    firmware_hash: str
    compliant: bool
    reason: str
    attested_at: datetime
    #: the registered image the evidence matched (None: it matched none)
    image_id: str | None = None
    measurements: tuple[Measurement, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Challenge:
    """What a device gets back from ``POST /v1/attestation/challenge``."""

    nonce: str
    expires_at: datetime


@dataclass(frozen=True)
class Compliant:
    """The firmware is a registered, signed image at or above the type's minimum."""

    image_id: str
    reason: str = "a registered signed image at or above the minimum version"

    @property
    def compliant(self) -> bool:
        """Always True."""
        return True


@dataclass(frozen=True)
class NonCompliant:
    """Why the attested firmware is not acceptable; ``image_id`` when it matched one."""

    reason: str
    image_id: str | None = None
    #: True when the hash matches no registered image (possibly tampered firmware)
    unknown_image: bool = False

    @property
    def compliant(self) -> bool:
        """Always False."""
        return False


Verdict = Compliant | NonCompliant


class InvalidFirmwareMetadata(InvalidInput):
    """Firmware metadata that is unsigned, badly signed, by an untrusted key or malformed."""

    kind = "invalid-firmware-metadata"
    title = "Invalid firmware metadata"


class InvalidEvidence(InvalidInput):
    """Attestation evidence that is malformed, wrongly signed or about another device."""

    kind = "invalid-evidence"
    title = "Invalid attestation evidence"


class NonceRefused(InvalidEvidence):
    """The evidence's nonce is unknown, expired, used before or issued to another device."""

    kind = "nonce-refused"
    title = "Attestation nonce refused"
