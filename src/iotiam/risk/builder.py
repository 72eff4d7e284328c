"""Turns what the other domains hold into register entries: values in, entries out.

Like python-tuf's ``TrustedMetadataSet``, the builder does no I/O: the register
(``service.py``) reads the stores, hands the builder the fleet-wide indexes once
(:class:`FleetIndex`) and then each device, asset and credential, and writes what comes
back in batches. Every entry's score counts only the factors no live acceptance hides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from iotiam.attestation.models import FirmwareStatus
from iotiam.credentials.models import Psk, PskStatus
from iotiam.discovery.models import CredentialSeen, DeviceSeen, DiscoveredAsset, IdentifierKind
from iotiam.inventory.models import Device, DeviceType
from iotiam.kernel import ROOT_PATH, within
from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.policy.models import Attachment, TargetKind
from iotiam.response.models import StoredFinding, TrustScore
from iotiam.risk import credentials, fleet, posture, presence
from iotiam.risk.models import (
    Acceptance,
    CaFacts,
    FactorHit,
    FleetChannels,
    PolicyFacts,
    RiskEntry,
    RiskSettings,
    Subject,
    Weighting,
    entry_id,
)
from iotiam.risk.scoring import score

FLEET_ID = "installation"


@dataclass
class FleetIndex:
    """What the checks need to know of the whole fleet before judging one identity."""

    now: float
    settings: RiskSettings
    types: Mapping[str, DeviceType] = field(default_factory=dict)
    cas: Sequence[CaFacts] = ()
    #: every attachment with the facts of its policy
    attachments: Sequence[tuple[Attachment, PolicyFacts]] = ()
    #: group id -> members, for the groups some policy is attached to
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    certificates: Mapping[str, Sequence[CertificateRecord]] = field(default_factory=dict)
    psks: Mapping[str, Sequence[Psk]] = field(default_factory=dict)
    seen_credentials: Mapping[tuple[IdentifierKind, str], CredentialSeen] = \
        field(default_factory=dict)
    seen_devices: Mapping[str, DeviceSeen] = field(default_factory=dict)
    registered_ids: frozenset[str] = frozenset()
    #: public key hash -> devices holding a certificate for it
    key_holders: Mapping[str, frozenset[str]] = field(default_factory=dict)
    acceptances: Mapping[str, Sequence[Acceptance]] = field(default_factory=dict)
    #: None: not known (the channel checks are skipped)
    channels: FleetChannels | None = None


class RegisterBuilder:
    """Judges identities against a :class:`FleetIndex`; pure."""

    def __init__(self, index: FleetIndex) -> None:
        self.index = index
        self._revoked_ca_ids = {c.id: c.revoked_at for c in index.cas
                                if c.revoked_at is not None}
        self._revoked_ca_subjects = {c.subject: c.revoked_at for c in index.cas
                                     if c.revoked_at is not None}
        self._ca_subjects = frozenset(c.subject for c in index.cas)
        self._ca_subject_of = {c.id: c.subject for c in index.cas}
        self._group_of: dict[str, set[str]] = {}
        for group, members in index.groups.items():
            for member in members:
                self._group_of.setdefault(member, set()).add(group)

    def entry(self, subject: Subject, subject_id: str, org_path: str, site: str | None,
              type_name: str | None, hits: Sequence[FactorHit],
              weighting: Weighting) -> RiskEntry:
        """An entry with its acceptances and a score over what they leave visible."""
        ident = entry_id(subject, subject_id)
        acceptances = self.index.acceptances.get(ident)
        if not acceptances:  # nearly every entry: nothing to hide
            return RiskEntry(ident, subject, subject_id, org_path, site, type_name,
                             score(hits, weighting), tuple(hits), (), weighting)
        accepted = tuple(a for a in acceptances
                         if a.live(self.index.now) and any(h.factor is a.factor for h in hits))
        hidden = {a.factor for a in accepted}
        return RiskEntry(ident, subject, subject_id, org_path, site, type_name,
                         score([h for h in hits if h.factor not in hidden], weighting),
                         tuple(hits), accepted, weighting)

    def weighting(self, device: Device, policies: Sequence[PolicyFacts] | None = None
                  ) -> Weighting:
        """Criticality and class of the device's type, and whether it may publish
        (``policies``: the device's, when the caller has them already)."""
        device_type = self.index.types.get(device.type_name)
        if policies is None:
            policies = self.policies_of(device)
        can_write = any(p.can_write for p in policies)
        if device_type is None:
            return Weighting(can_write=can_write)
        return Weighting(device_type.criticality, device_type.device_class, can_write)

    def policies_of(self, device: Device) -> list[PolicyFacts]:
        """The policies attached to the device, its groups, its type or its org units."""
        groups = self._group_of.get(device.id, set())
        found: dict[str, PolicyFacts] = {}
        for attachment, facts in self.index.attachments:
            target = attachment.target
            applies = (
                (target.kind is TargetKind.DEVICE and target.id == device.id)
                or (target.kind is TargetKind.GROUP and target.id in groups)
                or (target.kind is TargetKind.DEVICE_TYPE and target.id == device.type_name
                    and within(device.org_path, attachment.scope))
                or (target.kind is TargetKind.ORG_UNIT
                    and within(device.org_path, attachment.scope)))
            if applies:
                found[facts.name] = facts
        return list(found.values())

    def device_entries(self, device: Device, *, findings: Sequence[StoredFinding] = (),
                       trust: TrustScore | None = None,
                       firmware: FirmwareStatus | None = None) -> list[RiskEntry]:
        """The entries of one device: itself, and each of its credentials with factors."""
        policies = self.policies_of(device)  # a scan of every attachment: once a device
        weighting = self.weighting(device, policies)
        certs = self.index.certificates.get(device.id, ())
        psks = self.index.psks.get(device.id, ())
        entries = self._credential_entries(device, certs, psks, weighting)
        live = sum(1 for c in certs if c.status is CertificateStatus.ISSUED
                   and c.not_after.timestamp() > self.index.now) \
            + sum(1 for p in psks if p.status is PskStatus.ACTIVE)
        seen = self.index.seen_devices.get(device.id)
        hits = presence.device_presence_checks(device, seen, now=self.index.now,
                                               live_credentials=live,
                                               settings=self.index.settings)
        optional = (presence.shared_device_places(seen), posture.firmware_check(firmware),
                    posture.findings_check(findings),
                    posture.trust_check(trust, self.index.settings),
                    posture.policy_check(policies))
        hits += [h for h in optional if h is not None]
        if hits:
            entries.append(self.entry(Subject.DEVICE, device.id, device.org_path, device.site,
                                      device.type_name, hits, weighting))
        return entries

    def _credential_entries(self, device: Device, certs: Sequence[CertificateRecord],
                            psks: Sequence[Psk], weighting: Weighting) -> list[RiskEntry]:
        index = self.index
        device_type = index.types.get(device.type_name)
        max_age = device_type.rotation.max_credential_age.total_seconds() \
            if device_type else None
        key_since: dict[str | None, float] = {}
        for cert in certs:
            first = key_since.get(cert.public_key_sha256)
            if first is None or cert.not_before.timestamp() < first:
                key_since[cert.public_key_sha256] = cert.not_before.timestamp()
        newest = max((c.not_before for c in certs if c.status is CertificateStatus.ISSUED),
                     default=None)
        entries: list[RiskEntry] = []
        for cert in certs:
            seen = self._seen_certificate(cert)
            holders = index.key_holders.get(cert.public_key_sha256 or "", frozenset())
            hits = credentials.certificate_checks(
                cert, now=index.now, settings=index.settings, max_key_age=max_age,
                key_since=key_since.get(cert.public_key_sha256),
                renewed=newest is not None and newest > cert.not_before, seen=seen,
                key_holders=tuple(sorted(holders)) if len(holders) > 1 else ())
            revoked = fleet.under_revoked_ca(cert, self._revoked_ca_ids, index.now)
            hits += [revoked] if revoked else []
            if hits:
                entries.append(self.entry(Subject.CERTIFICATE,
                                          f"{cert.issuer_id}/{cert.serial_hex}",
                                          cert.org_path, device.site, device.type_name,
                                          hits, weighting))
        for psk in psks:
            seen = index.seen_credentials.get((IdentifierKind.PSK_IDENTITY, psk.identity))
            hits = credentials.psk_checks(psk, now=index.now, settings=index.settings,
                                          max_key_age=max_age, seen=seen)
            if hits:
                entries.append(self.entry(Subject.PSK, psk.identity, psk.org_path,
                                          device.site, device.type_name, hits, weighting))
        return entries

    def _seen_certificate(self, cert: CertificateRecord) -> CredentialSeen | None:
        """What the sources saw of an issued certificate: by its fingerprint, else by
        its issuer's subject and its serial (RFC 5280 §4.1.2.2: unique per issuer) for
        sensors that log only those."""
        seen = self.index.seen_credentials
        found = seen.get((IdentifierKind.CERTIFICATE, cert.fingerprint_sha256 or ""))
        issuer = self._ca_subject_of.get(cert.issuer_id)
        if found is None and issuer is not None:
            found = seen.get((IdentifierKind.ISSUER_SERIAL, f"{issuer}|{cert.serial_hex}"))
        return found

    def asset_entry(self, asset: DiscoveredAsset) -> RiskEntry | None:
        """The entry of one discovered asset (None: nothing against it)."""
        hits = presence.asset_checks(asset, self.index.registered_ids)
        if not hits:
            return None
        return self.entry(Subject.ASSET, asset.id, asset.org_path, asset.site, None, hits,
                          Weighting(device_class=presence.guess_class(asset)))

    def seen_credential_entry(self, seen: CredentialSeen, *,
                              registered: bool) -> RiskEntry | None:
        """The entry of a credential the sources saw that iotiam did not issue
        (``registered``: it did, and :meth:`device_entries` judged it)."""
        if registered:
            return None
        if seen.kind is IdentifierKind.CERTIFICATE:
            hits = credentials.seen_certificate_checks(
                seen, ca_subjects=self._ca_subjects,
                revoked_cas={k: v for k, v in self._revoked_ca_subjects.items()
                             if v is not None})
            subject = Subject.CERTIFICATE
        elif seen.kind is IdentifierKind.PSK_IDENTITY:
            hits = credentials.seen_psk_checks(seen, self.index.settings)
            subject = Subject.PSK
        else:
            return None
        if not hits:
            return None
        return self.entry(subject, seen.value, seen.org_path, None, None, hits, Weighting())

    def fleet_entries(self) -> list[RiskEntry]:
        """One entry per CA with factors, and one for the installation's channels."""
        entries: list[RiskEntry] = []
        ca_weight = Weighting(device_class=None, can_write=True)
        for ca in self.index.cas:
            hits = fleet.ca_checks(ca, now=self.index.now, settings=self.index.settings)
            if hits:
                entries.append(self.entry(Subject.CA, ca.id, ROOT_PATH, None, None, hits,
                                          ca_weight))
        hits = fleet.channel_checks(self.index.channels) if self.index.channels else []
        if hits:
            entries.append(self.entry(Subject.FLEET, FLEET_ID, ROOT_PATH, None, None, hits,
                                      Weighting()))
        return entries

