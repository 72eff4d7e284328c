"""Reads what the checks need of the whole fleet, once per rebuild, into a
:class:`~iotiam.risk.builder.FleetIndex` (bulk reads only: no query per device)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from iotiam.credentials.models import Psk, PskStatus
from iotiam.discovery.models import CredentialSeen, IdentifierKind
from iotiam.discovery.ports import DiscoveryReader
from iotiam.inventory.models import Device
from iotiam.kernel import ROOT_PATH
from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.policy.actions import PUBLISH
from iotiam.policy.models import Attachment, TargetKind
from iotiam.risk import credentials, posture
from iotiam.risk.builder import FleetIndex, RegisterBuilder
from iotiam.risk.fleet import ca_facts
from iotiam.risk.models import (
    Acceptance,
    CaFacts,
    PolicyFacts,
    RiskEntry,
    RiskSettings,
    Subject,
)
from iotiam.risk.ports import FleetSettings, PolicyLinter, RiskUnitOfWork


@dataclass
class Snapshot:
    """The index, and what the register needs to tell registered credentials apart."""

    index: FleetIndex
    fingerprints: set[str] = field(default_factory=set)
    psk_identities: set[str] = field(default_factory=set)
    #: revoked PSKs whose identity the sources still see, with their holder
    revoked_psks: list[tuple[Psk, Device]] = field(default_factory=list)

    def registered(self, seen: CredentialSeen) -> bool:
        """Whether iotiam issued this credential (its own entry judges it)."""
        if seen.kind is IdentifierKind.CERTIFICATE:
            return seen.value in self.fingerprints
        return seen.value in self.psk_identities

    def revoked_psk_entries(self, builder: RegisterBuilder) -> list[tuple[RiskEntry, str]]:
        """Entries of revoked PSKs the sources still see (revoked in use, still shared),
        each with the device that held the PSK (a refresh of it replaces the entry)."""
        found: list[tuple[RiskEntry, str]] = []
        index = builder.index
        for psk, device in self.revoked_psks:
            seen = index.seen_credentials.get((IdentifierKind.PSK_IDENTITY, psk.identity))
            hits = credentials.psk_checks(psk, now=index.now, settings=index.settings,
                                          max_key_age=None, seen=seen)
            if hits:
                found.append((builder.entry(Subject.PSK, psk.identity, psk.org_path,
                                            device.site, device.type_name, hits,
                                            builder.weighting(device)), device.id))
        return found


def read_index(uow: RiskUnitOfWork, discovery: DiscoveryReader, linter: PolicyLinter,
               fleet: FleetSettings, settings: RiskSettings, now: float, *,
               devices: Sequence[str] | None = None) -> Snapshot:
    """Everything fleet-wide the checks read; ``devices`` narrows the per-device parts to
    those devices (a refresh): their presence, and what the sources saw of their own
    certificates and PSKs (revoked ones too: a revoked PSK still seen keeps its entry),
    read by key instead of every sighting of the fleet."""
    certificates, key_holders = _certificates(uow, devices)
    psks: dict[str, list[Psk]] = defaultdict(list)
    #: a refresh's devices' revoked PSKs whose identity no live PSK of theirs took over
    revoked: list[tuple[str, Psk]] = []
    if devices is None:
        for psk in uow.psks.iter_active(org_path=ROOT_PATH):
            psks[psk.device_id].append(psk)
    else:
        # one read for the batch, not one per device: a refresh after an import names
        # thousands
        held_by_device = uow.psks.for_devices(devices)
        for device_id in devices:
            held = held_by_device.get(device_id, [])
            psks[device_id] = [p for p in held if p.status is PskStatus.ACTIVE]
            live = {p.identity for p in psks[device_id]}
            for identity in sorted({p.identity for p in held} - live):
                last = last_revoked(held, identity)
                if last is not None:
                    revoked.append((device_id, last))
    cas = _cas(uow)
    if devices is None:
        seen_credentials = {(s.kind, s.value): s
                            for s in discovery.iter_credentials_seen(org_path=ROOT_PATH)}
        seen_devices = {s.device_id: s
                        for s in discovery.iter_devices_seen(org_path=ROOT_PATH)}
    else:
        keys = _credential_keys(certificates, psks, cas)
        keys.extend((IdentifierKind.PSK_IDENTITY, p.identity) for _, p in revoked)
        seen_credentials = {(s.kind, s.value): s for s in discovery.credentials_seen(
            org_path=ROOT_PATH, keys=keys)}
        seen_devices = {s.device_id: s for s in discovery.devices_seen(
            org_path=ROOT_PATH, device_ids=devices)}
    acceptances: dict[str, list[Acceptance]] = defaultdict(list)
    for acceptance in uow.risk.live_acceptances(now):
        acceptances[acceptance.entry_id].append(acceptance)
    index = FleetIndex(
        now=now, settings=settings, types={t.name: t for t in uow.device_types.list_all()},
        cas=cas, attachments=_attachments(uow, linter),
        groups=_groups(uow), certificates=certificates, psks=psks,
        seen_credentials=seen_credentials, seen_devices=seen_devices,
        key_holders=key_holders, acceptances=acceptances, channels=fleet.channels())
    snapshot = Snapshot(index, {c.fingerprint_sha256 for cs in certificates.values()
                                for c in cs if c.fingerprint_sha256},
                        {p.identity for ps in psks.values() for p in ps})
    if devices is None:
        _revoked_psks_seen(uow, snapshot)
    else:
        for device_id, psk in revoked:
            _add_revoked_if_seen(uow, snapshot, psk, device_id)
    return snapshot


def last_revoked(psks: Sequence[Psk], identity: str) -> Psk | None:
    """Of one device's PSKs (none of them live under ``identity``), the one whose
    revocation ended ``identity``: the end of its rotation chain (rotating revokes the
    old key as superseded, naming its successor), else the one revoked last. A rotated
    identity has one entry, judged by when the identity stopped being valid."""
    candidates = [p for p in psks if p.identity == identity and p.status is PskStatus.REVOKED]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.replaced_by is None,
                                          p.revoked_at or p.created_at, p.id))


def _credential_keys(certificates: Mapping[str, Sequence[CertificateRecord]],
                     psks: Mapping[str, Sequence[Psk]], cas: Sequence[CaFacts]
                     ) -> list[tuple[IdentifierKind, str]]:
    """How the sources would name these devices' credentials: a certificate by its
    fingerprint or its issuer's subject and serial (``RegisterBuilder._seen_certificate``),
    a PSK by its identity."""
    subject_of = {ca.id: ca.subject for ca in cas}
    keys: list[tuple[IdentifierKind, str]] = []
    for certs in certificates.values():
        for cert in certs:
            if cert.fingerprint_sha256:
                keys.append((IdentifierKind.CERTIFICATE, cert.fingerprint_sha256))
            issuer = subject_of.get(cert.issuer_id)
            if issuer is not None:
                keys.append((IdentifierKind.ISSUER_SERIAL, f"{issuer}|{cert.serial_hex}"))
    keys.extend((IdentifierKind.PSK_IDENTITY, p.identity) for ps in psks.values() for p in ps)
    return keys


def _certificates(uow: RiskUnitOfWork, devices: Sequence[str] | None
                  ) -> tuple[dict[str, list[CertificateRecord]], dict[str, frozenset[str]]]:
    by_device: dict[str, list[CertificateRecord]] = defaultdict(list)
    if devices is None:
        for cert in uow.certificates.iter_device_certificates(org_path=ROOT_PATH):
            if cert.device_id is not None:
                by_device[cert.device_id].append(cert)
    else:
        held = uow.certificates.for_devices(devices)  # one read for the batch, as the PSKs
        for device_id in devices:
            by_device[device_id] = [c for c in held.get(device_id, ())
                                    if c.status is not CertificateStatus.RESERVED]
    holders: dict[str, set[str]] = defaultdict(set)
    if devices is None:
        for device_id, certs in by_device.items():
            for cert in certs:
                if cert.public_key_sha256:
                    holders[cert.public_key_sha256].add(device_id)
    else:
        keys = sorted({c.public_key_sha256 for cs in by_device.values() for c in cs
                       if c.public_key_sha256})
        for key, holder in uow.certificates.key_holders(keys):
            if holder is not None:
                holders[key].add(holder)
    return by_device, {k: frozenset(v) for k, v in holders.items() if len(v) > 1}


def _cas(uow: RiskUnitOfWork) -> list[CaFacts]:
    """The CAs iotiam runs that sign (roots and issuing CAs), each with its revocation."""
    found: list[CaFacts] = []
    for stored in uow.cas.list_all():
        if str(stored.role) not in ("root", "issuing"):
            continue
        facts = ca_facts(stored, None)
        serial = _serial_of(stored.certificate_pem)
        revoked = [c for c in uow.certificates.find_by_serial(serial)
                   if c.status is CertificateStatus.REVOKED and c.issuer_id != stored.id]
        if revoked and revoked[0].revoked_at is not None:
            facts = ca_facts(stored, revoked[0].revoked_at.timestamp())
        found.append(facts)
    return found


def _serial_of(pem: str) -> int:
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def _attachments(uow: RiskUnitOfWork, linter: PolicyLinter
                 ) -> list[tuple[Attachment, PolicyFacts]]:
    facts: dict[str, PolicyFacts] = {}
    for stored in uow.policies.current():
        document = stored.document
        problems = tuple((str(f.severity), f.code, f.statement) for f in linter(document)
                         if str(f.severity) in posture.FLAGGED_LINT)
        can_write = any(str(s.effect) == "allow" and PUBLISH in s.covered_actions()
                        for s in document.statements)
        facts[document.name] = PolicyFacts(document.name, problems, can_write)
    return [(a, facts[a.policy]) for a in uow.policy_attachments.all() if a.policy in facts]


def _groups(uow: RiskUnitOfWork) -> dict[str, frozenset[str]]:
    groups = {a.target.id for a in uow.policy_attachments.all()
              if a.target.kind is TargetKind.GROUP}
    return {g: frozenset(uow.groups.members(g)) for g in sorted(groups)}


def _revoked_psks_seen(uow: RiskUnitOfWork, snapshot: Snapshot) -> None:
    """Every revoked PSK the sources still see whose identity no live PSK holds."""
    candidates = [(value, device_id)
                  for (kind, value), seen in snapshot.index.seen_credentials.items()
                  if kind is IdentifierKind.PSK_IDENTITY and value not in snapshot.psk_identities
                  for device_id in seen.device_ids]
    # one read for every device seen with such an identity, not one per device
    held = uow.psks.for_devices(sorted({device_id for _, device_id in candidates}))
    for value, device_id in candidates:
        psk = last_revoked(held.get(device_id, []), value)
        if psk is not None:
            _add_revoked_if_seen(uow, snapshot, psk, device_id)


def _add_revoked_if_seen(uow: RiskUnitOfWork, snapshot: Snapshot, psk: Psk,
                         device_id: str) -> None:
    """Judge ``psk`` (revoked, of ``device_id``) when the sources saw its identity on
    that device: the same test for a rebuild and a refresh."""
    seen = snapshot.index.seen_credentials.get((IdentifierKind.PSK_IDENTITY, psk.identity))
    if seen is None or device_id not in seen.device_ids \
            or psk.identity in snapshot.psk_identities:
        return
    device = uow.devices.get(device_id)
    if device is not None:
        snapshot.revoked_psks.append((psk, device))
        snapshot.psk_identities.add(psk.identity)
