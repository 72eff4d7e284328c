"""Admin use cases: firmware signers, signed firmware images, minimum-version rules.

Everything lives in an org unit and covers its subtree: a signer registered at an org
unit vouches for images registered there or below; an image covers the devices there or
below; a rule applies there and below (the highest minimum on the way up wins). An
admin sees and changes only their own subtree (G9), and a signature by another
tenant's signer is simply a signature by an unknown key. A revoked signer vouches for
nothing: its metadata is refused and its images no longer make a device compliant.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from iotiam.attestation import findings
from iotiam.attestation.compliance import (
    against_minimum,
    effective_minimum,
    signed_by_revoked,
)
from iotiam.attestation.metadata import load_signer_key, verify_metadata
from iotiam.attestation.models import (
    FirmwareImage,
    FirmwareRule,
    FirmwareSigner,
    FirmwareStatus,
    NonCompliant,
)
from iotiam.attestation.ports import AttestationUnitOfWork
from iotiam.attestation.versions import FirmwareVersion
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.detection.models import Finding
from iotiam.detection.ports import FindingSink
from iotiam.errors import Conflict, NotFound
from iotiam.inventory.models import DeviceState, OrgUnit, check_identifier
from iotiam.kernel import Principal, Role, Transactions


@dataclass(frozen=True)
class RuleView:
    """The rules for one device type the caller sees, and the minimum in force at the
    caller's own org unit (which may come from an ancestor's rule)."""

    device_type: str
    rules: list[FirmwareRule]
    effective: FirmwareRule | None


@dataclass(frozen=True)
class SignerRevocation:
    """A signer just revoked, how many images it had signed and how many devices lost
    their compliance with it."""

    signer: FirmwareSigner
    images_affected: int
    devices_changed: int


@dataclass(frozen=True)
class ImageRegistration:
    """An image just registered and how many devices that had attested this very build
    became compliant with it."""

    image: FirmwareImage
    devices_changed: int


def _org_unit(uow: AttestationUnitOfWork, actor: Principal, unit_id: str | None
              ) -> OrgUnit:
    wanted = unit_id or actor.org_unit_id
    unit = uow.org_units.get(wanted) if isinstance(wanted, str) and len(wanted) <= 128 \
        else None
    if unit is None or not actor.sees(unit.path):
        raise NotFound(f"org unit {str(wanted)[:128]!r} not found")
    return unit


def _device_type(uow: AttestationUnitOfWork, name: str) -> str:
    check_identifier(name, "device type")
    if uow.device_types.get(name) is None:
        raise NotFound(f"device type {name!r} not found")
    return name


def _minimum(uow: AttestationUnitOfWork, cache: dict[str, FirmwareRule | None],
             device_path: str, device_type: str) -> FirmwareRule | None:
    """The minimum in force at ``device_path``, looked up once per path."""
    if device_path not in cache:
        cache[device_path] = effective_minimum(uow.firmware.rules_over(device_path,
                                                                       device_type))
    return cache[device_path]


class FirmwareRegistry:
    """Register firmware signers and images, and set minimum firmware per device type."""

    def __init__(self, uow: Transactions[AttestationUnitOfWork], clock: Clock,
                 audit: Auditor, finding_sink: FindingSink | None = None) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._findings: FindingSink = finding_sink or findings.DiscardingFindingSink()

    def _refused(self, actor: Principal, subject: str, action: str) -> AuditDraft:
        return AuditDraft(tag=AuditTag.FIRMWARE_REFUSED, actor=actor.name,
                          org_path=actor.org_path, subject=subject[:300],
                          details={"action": action})

    # -- signers -----------------------------------------------------------------------

    def register_signer(self, actor: Principal, *, name: str, public_key_pem: str,
                        org_unit_id: str | None = None) -> FirmwareSigner:
        """Trust a public key to sign firmware metadata for an org unit's subtree."""
        draft = self._refused(actor, f"firmware-signer:{str(name)[:128]}", "register-signer")
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "registering firmware signers")
            check_identifier(name, "signer name")
            key = load_signer_key(public_key_pem)
            with self._uow() as uow:
                unit = _org_unit(uow, actor, org_unit_id)
                revoked = next((s for s in uow.firmware.signers_over(unit.path)
                                if s.key_id == key.key_id and s.revoked_at is not None), None)
                if revoked is not None:
                    # a leaked key stays distrusted: not here, not below where it was revoked
                    raise Conflict(f"this key was revoked as firmware signer {revoked.name!r} "
                                   f"of org unit {revoked.org_unit_id!r}; a revoked key is "
                                   "never trusted again")
                if uow.firmware.signer_by_name(unit.id, name) is not None:
                    raise Conflict(f"firmware signer {name!r} already exists in org unit "
                                   f"{unit.id!r}")
                if any(s.key_id == key.key_id and s.org_unit_id == unit.id
                       for s in uow.firmware.signers_under(unit.path)):
                    raise Conflict("this key is already a firmware signer of org unit "
                                   f"{unit.id!r}")
                signer = FirmwareSigner(
                    id=secrets.token_hex(8), name=name, org_unit_id=unit.id,
                    org_path=unit.path, algorithm=key.algorithm,
                    public_key_pem=key.public_key_pem, key_id=key.key_id,
                    created_at=self._clock.now(), created_by=actor.name)
                uow.firmware.add_signer(signer)
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.FIRMWARE_SIGNER_REGISTERED, actor=actor.name,
                    org_path=unit.path, subject=f"firmware-signer:{signer.id}",
                    details={"name": name, "org": unit.id, "algorithm": str(key.algorithm),
                             "key_id": key.key_id}))
        return signer

    def revoke_signer(self, actor: Principal, name: str, org_unit_id: str | None = None
                      ) -> SignerRevocation:
        """Stop trusting a signer at once (a leaked key); final.

        In the same transaction every device whose status names an image it signed is
        judged again: it is non-compliant now, a flip moves its ``updated_at`` (decision
        caches, the broker sync and the trust scores follow), and newly non-compliant
        devices are reported as findings, as ``set_rule`` does.
        """
        draft = self._refused(actor, f"firmware-signer:{str(name)[:128]}", "revoke-signer")
        raised: list[Finding] = []
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "revoking firmware signers")
            check_identifier(name, "signer name")
            with self._uow() as uow:
                unit = _org_unit(uow, actor, org_unit_id)
                signer = uow.firmware.signer_by_name(unit.id, name)
                if signer is None:
                    raise NotFound(f"firmware signer {name!r} not found in org unit "
                                   f"{unit.id!r}")
                now = self._clock.now()
                if signer.revoked_at is not None or \
                        not uow.firmware.revoke_signer(signer.id, now, actor.name):
                    raise Conflict(f"firmware signer {name!r} is already revoked")
                signer = replace(signer, revoked_at=now, revoked_by=actor.name)
                images = uow.firmware.images_of_signer(signer.id)
                flipped = self._distrust(uow, signer, images, raised)
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.FIRMWARE_SIGNER_REVOKED, actor=actor.name,
                    org_path=unit.path, subject=f"firmware-signer:{signer.id}",
                    details={"name": name, "org": unit.id, "key_id": signer.key_id,
                             "images_affected": len(images), "devices_changed": flipped}))
        findings.report(self._findings, raised)
        return SignerRevocation(signer=signer, images_affected=len(images),
                                devices_changed=flipped)

    def _distrust(self, uow: AttestationUnitOfWork, signer: FirmwareSigner,
                  images: list[FirmwareImage], raised: list[Finding]) -> int:
        """Judge again every device whose status names an image of the revoked signer."""
        by_id = {i.id: i for i in images}
        now = self._clock.now()
        newly: list[tuple[FirmwareStatus, NonCompliant]] = []
        for status in uow.firmware.statuses_of_signer(signer.id):
            assert status.image_id is not None
            verdict = signed_by_revoked(by_id[status.image_id], signer)
            changed = replace(status, compliant=False, reason=verdict.reason,
                              image_id=verdict.image_id)
            # already non-compliant (below the minimum): the reason changes, not the flag
            if uow.firmware.put_status(changed, now):
                newly.append((changed, verdict))
        devices = uow.devices.get_many([s.device_id for s, _ in newly])
        for status, verdict in newly:
            device = devices.get(status.device_id)
            if device is not None and device.state is not DeviceState.DECOMMISSIONED:
                raised.append(findings.noncompliant(device, status, verdict, None))
        return len(newly)

    def list_signers(self, actor: Principal) -> list[FirmwareSigner]:
        """Signers in the caller's subtree."""
        with self._uow.reading() as uow:
            return uow.firmware.signers_under(actor.org_path)

    # -- images ------------------------------------------------------------------------

    def register_image(self, actor: Principal, metadata_jws: str,
                       org_unit_id: str | None = None) -> ImageRegistration:
        """Register an image from metadata signed by a signer covering the org unit.

        The same version registered there before by a since revoked signer is replaced
        (re-signed with a new key); any other earlier registration of it is a conflict.
        In the same transaction the devices it covers that attested this very build while
        it matched no live image are judged again (see ``_recognize``).
        """
        draft = self._refused(actor, "firmware:unverified", "register-image")
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "registering firmware")
            with self._uow() as uow:
                unit = _org_unit(uow, actor, org_unit_id)
                signers = uow.firmware.signers_over(unit.path)
                metadata, signer = verify_metadata(metadata_jws, signers)
                revoked = {s.id: s for s in signers if s.revoked_at is not None}
                _device_type(uow, metadata.device_type)
                replaced: FirmwareImage | None = None
                for known in uow.firmware.images_over(unit.path, metadata.device_type):
                    if known.org_unit_id == unit.id and \
                            FirmwareVersion.parse(known.version) == metadata.version:
                        if known.signer_id in revoked:
                            replaced = known
                            continue
                        same = known.sha256 == metadata.sha256
                        raise Conflict(
                            f"{metadata.device_type} {known.version} is already registered "
                            f"in org unit {unit.id!r}"
                            + ("" if same else " with another hash: give the new build a "
                               "new version"))
                image = FirmwareImage(
                    id=replaced.id if replaced else secrets.token_hex(8),
                    device_type=metadata.device_type,
                    version=metadata.version.text, sha256=metadata.sha256,
                    org_unit_id=unit.id, org_path=unit.path, signer_id=signer.id,
                    metadata_jws=metadata_jws, created_at=self._clock.now(),
                    created_by=actor.name, released_at=metadata.released_at,
                    notes=metadata.notes)
                details: dict[str, object] = {
                    "device_type": image.device_type, "version": image.version,
                    "sha256": image.sha256, "signer": signer.name,
                    "signer_key_id": signer.key_id, "org": unit.id}
                if replaced is None:
                    uow.firmware.add_image(image)
                else:
                    uow.firmware.replace_image(image)
                    details["replaced"] = {"sha256": replaced.sha256,
                                           "signer": revoked[replaced.signer_id].name}
                flipped = self._recognize(uow, image)
                details["devices_changed"] = flipped
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.FIRMWARE_REGISTERED, actor=actor.name, org_path=unit.path,
                    subject=f"firmware:{image.id}", details=details))
        return ImageRegistration(image=image, devices_changed=flipped)

    def _recognize(self, uow: AttestationUnitOfWork, image: FirmwareImage) -> int:
        """Judge again, against the new image, the devices it covers whose status names no
        image but whose attested version and hash are the image's (an unregistered build,
        or one whose signer was revoked); a status naming an image is left alone.

        Such a status was non-compliant, so none becomes newly non-compliant and no
        finding is raised: it turns compliant (a flip, counted, ``updated_at`` moves) or
        stays non-compliant below the minimum, now naming the image.
        """
        version = FirmwareVersion.parse(image.version)
        minimums: dict[str, FirmwareRule | None] = {}
        flipped = 0
        now = self._clock.now()
        for status, device_path in uow.firmware.unmatched_statuses(
                image.device_type, image.org_path, image.sha256):
            attested = FirmwareVersion.parse(status.firmware_version)
            if attested != version:
                continue
            verdict = against_minimum(image.device_type, attested, image.id, _minimum(
                uow, minimums, device_path, image.device_type))
            changed = replace(status, compliant=verdict.compliant, reason=verdict.reason,
                              image_id=image.id)
            if uow.firmware.put_status(changed, now):
                flipped += 1
        return flipped

    def list_images(self, actor: Principal, device_type: str | None = None
                    ) -> list[FirmwareImage]:
        """Images in the caller's subtree, optionally of one device type."""
        with self._uow.reading() as uow:
            return uow.firmware.images_under(actor.org_path, device_type)

    # -- rules -------------------------------------------------------------------------

    def set_rule(self, actor: Principal, device_type: str, min_version: str,
                 org_unit_id: str | None = None) -> FirmwareRule:
        """Set the minimum approved firmware of a device type for an org unit's subtree.

        Devices that attested before are judged again at once: a device whose compliance
        flips has its ``updated_at`` moved in the same transaction (decision caches and
        the broker sync follow), and newly non-compliant ones are reported as findings.
        """
        draft = self._refused(actor, f"firmware-rule:{str(device_type)[:128]}", "set-rule")
        raised: list[Finding] = []
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "setting minimum firmware rules")
            version = FirmwareVersion.parse(min_version)
            with self._uow() as uow:
                unit = _org_unit(uow, actor, org_unit_id)
                _device_type(uow, device_type)
                now = self._clock.now()
                rule = FirmwareRule(org_unit_id=unit.id, org_path=unit.path,
                                    device_type=device_type, min_version=version.text,
                                    updated_at=now, updated_by=actor.name)
                previous = uow.firmware.put_rule(rule)
                flipped = self._rejudge(uow, device_type, unit.path, raised)
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.FIRMWARE_RULE_SET, actor=actor.name, org_path=unit.path,
                    subject=f"firmware-rule:{unit.id}:{device_type}",
                    details={"device_type": device_type, "min_version": rule.min_version,
                             "previous": previous.min_version if previous else None,
                             "org": unit.id, "devices_changed": flipped}))
        findings.report(self._findings, raised)
        return rule

    def _rejudge(self, uow: AttestationUnitOfWork, device_type: str, org_path: str,
                 raised: list[Finding]) -> int:
        """Judge again every attested device of the type under ``org_path``."""
        minimums: dict[str, FirmwareRule | None] = {}
        flipped = 0
        now = self._clock.now()
        for status, device_path in uow.firmware.statuses_of_type(device_type, org_path):
            if status.image_id is None:
                continue  # matched no registered image: no minimum makes it compliant
            minimum = _minimum(uow, minimums, device_path, device_type)
            verdict = against_minimum(device_type, FirmwareVersion.parse(
                status.firmware_version), status.image_id, minimum)
            if verdict.compliant == status.compliant:
                continue
            changed = replace(status, compliant=verdict.compliant, reason=verdict.reason)
            uow.firmware.put_status(changed, now)
            flipped += 1
            if isinstance(verdict, NonCompliant):
                device = uow.devices.get(status.device_id)
                if device is not None and device.state is not DeviceState.DECOMMISSIONED:
                    raised.append(findings.noncompliant(
                        device, changed, verdict,
                        minimum.min_version if minimum else None))
        return flipped

    def rules(self, actor: Principal, device_type: str) -> RuleView:
        """The rules of one device type the caller sees, and the one in force for them."""
        with self._uow.reading() as uow:
            _device_type(uow, device_type)
            visible = [r for r in uow.firmware.rules_under(actor.org_path)
                       if r.device_type == device_type]
            effective = effective_minimum(uow.firmware.rules_over(actor.org_path,
                                                                  device_type))
        return RuleView(device_type=device_type, rules=visible, effective=effective)

    def list_rules(self, actor: Principal) -> list[FirmwareRule]:
        """Every rule set in the caller's subtree."""
        with self._uow.reading() as uow:
            return uow.firmware.rules_under(actor.org_path)

