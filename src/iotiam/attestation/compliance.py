"""The compliance rule, as a pure function of what is registered and what was attested.

A device is compliant iff the firmware it attested is a registered image — signed
metadata for its device type, covering its org unit, with the same version and the
same SHA-256, by a signer that is not revoked — and that version is at least the
minimum for its type. Minimums are set per (org unit, device type); the one that
applies to a device is the highest set at its org unit or any ancestor, so a tenant can
raise its parent's minimum but never lower it (the guardrail rule of the policy layer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from iotiam.attestation.models import (
    Compliant,
    FirmwareImage,
    FirmwareRule,
    FirmwareSigner,
    NonCompliant,
    Verdict,
)
from iotiam.attestation.versions import FirmwareVersion


def effective_minimum(rules: Sequence[FirmwareRule]) -> FirmwareRule | None:
    """The strictest of the rules that apply (None: no minimum)."""
    if not rules:
        return None
    return max(rules, key=lambda r: FirmwareVersion.parse(r.min_version))


def judge(*, device_type: str, version: FirmwareVersion, firmware_hash: str,
          images: Sequence[FirmwareImage], minimum: FirmwareRule | None,
          revoked: Mapping[str, FirmwareSigner]) -> Verdict:
    """Compliant iff a registered image matches version and hash, its signer is not
    among ``revoked`` (by id), and the version is at least ``minimum``. ``images`` are
    the type's images that cover the device."""
    same_version = [i for i in images if FirmwareVersion.parse(i.version) == version]
    if not same_version:
        return NonCompliant(f"no registered firmware image of {device_type} version "
                            f"{version}", unknown_image=True)
    matches = [i for i in same_version if i.sha256 == firmware_hash.lower()]
    if not matches:
        return NonCompliant(f"the firmware hash does not match the registered image of "
                            f"{device_type} {version}", unknown_image=True)
    # an org unit and its ancestor may both have registered the build
    live = next((i for i in matches if i.signer_id not in revoked), None)
    if live is None:
        return signed_by_revoked(matches[0], revoked[matches[0].signer_id])
    return against_minimum(device_type, version, live.id, minimum)


def signed_by_revoked(image: FirmwareImage, signer: FirmwareSigner) -> NonCompliant:
    """The verdict for an image whose signer was revoked: it no longer counts as
    registered (the leaked key may have signed anything), hence no ``image_id`` — a later
    minimum-version change must not find it compliant again."""
    return NonCompliant(f"image {image.id} ({image.device_type} {image.version}) was "
                        f"signed by revoked firmware signer {signer.name!r}",
                        unknown_image=True)


def against_minimum(device_type: str, version: FirmwareVersion, image_id: str,
                    minimum: FirmwareRule | None) -> Verdict:
    """The verdict for a matched image: compliant unless below ``minimum``."""
    if minimum is not None and version < FirmwareVersion.parse(minimum.min_version):
        return NonCompliant(f"version {version} is below the minimum {minimum.min_version} "
                            f"for {device_type}", image_id=image_id)
    if minimum is None:
        return Compliant(image_id=image_id, reason="a registered signed image; no minimum "
                                                   f"version is set for {device_type}")
    return Compliant(image_id=image_id, reason=f"a registered signed image at or above "
                                               f"the minimum {minimum.min_version}")
