"""The domain services wired on the memory unit of work, the way ``iotiam.bootstrap``
wires them on the database, and an installation seeded the way ``iotiam init`` seeds
one: the root org unit, the three device types, the CAs, the default device policy
and a bootstrap admin token, each with its audit record.

Time is a :class:`FrozenClock`; the audit trail is the real ``AuditTrail`` over the
memory audit log, anchored by checkpoints kept in memory.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from iotiam.admin.service import AdminTokens
from iotiam.attestation.registry import FirmwareRegistry
from iotiam.attestation.service import Attestation, DeviceCa
from iotiam.audit.anchor import CheckpointWriter
from iotiam.audit.checkpoint import CheckpointKey
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DetectionModeChanged,
    DeviceChanged,
    PolicyChanged,
    TrustChanged,
)
from iotiam.clock import FrozenClock
from iotiam.credentials.sealing import SecretSealer
from iotiam.credentials.service import Psks
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.ingest import EventIngest
from iotiam.enrollment.first_contact import FirstContact
from iotiam.enrollment.manufacturers import Manufacturers
from iotiam.enrollment.queue import EnrollmentQueue, QueueLimits
from iotiam.enrollment.service import Enrollment
from iotiam.enrollment.transfer import OwnershipTransfer
from iotiam.inventory.models import Criticality, DeviceClass, DeviceType, OrgUnit, OrgUnitKind
from iotiam.inventory.ports import AllCredentials
from iotiam.inventory.service import Inventory
from iotiam.kernel import ROOT_ORG_ID, ROOT_PATH, SYSTEM, Role
from iotiam.pki.authority import (
    CaMaterial,
    create_issuing_ca,
    create_ocsp_responder,
    create_root_ca,
)
from iotiam.pki.keys import encrypt_private_key
from iotiam.pki.models import CaRole, KeyAlgorithm, PkiConfig
from iotiam.pki.ports import SerialSource, StoredCa
from iotiam.pki.service import CaSet, Pki
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY, DEFAULT_DEVICE_POLICY_YAML
from iotiam.policy.inquiry import PolicyInquiry
from iotiam.policy.models import AttachmentTarget, TargetKind
from iotiam.policy.service import DecisionPoint, PolicyAdministration
from iotiam.policy.subjects import DeviceSubjects
from iotiam.response.alerts import AlertChannel, AlertDispatcher
from iotiam.response.ports import NoFirmwareData
from iotiam.response.scoring import TrustScores
from iotiam.response.service import IncidentResponse
from iotiam.testing.fakes.audit import MemoryCheckpointLog
from iotiam.testing.fakes.changes import MemoryChangeFeed, MemoryChangeLog
from iotiam.testing.fakes.pki import MemoryStatusReader
from iotiam.testing.fakes.response import MemoryDeviceLookup
from iotiam.testing.fakes.unit_of_work import MemoryDatabase, MemoryUnitOfWork
from iotiam.tokens.client_auth import ClientAuthenticator, IssuingCa
from iotiam.tokens.clients import OAuthClients
from iotiam.tokens.device_codes import DeviceCodes
from iotiam.tokens.introspection import Introspection
from iotiam.tokens.models import TokenConfig
from iotiam.tokens.revocation import TokenRevocation
from iotiam.tokens.scopes import ScopeGrant
from iotiam.tokens.service import AuthorizationServer
from iotiam.tokens.signing_keys import SigningKeys

#: the device types ``iotiam init`` seeds (``installation.SEED_DEVICE_TYPES``; a test
#: keeps the two equal)
SEED_DEVICE_TYPES = (
    ("sensor", DeviceClass.SENSOR, Criticality.MEDIUM, "Battery or mains powered sensor"),
    ("gateway", DeviceClass.GATEWAY, Criticality.HIGH, "Edge gateway relaying other devices"),
    ("controller", DeviceClass.CONTROLLER, Criticality.HIGH, "PLC or controller driving plant"),
)
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class MemoryConfig:
    """What the services take from ``Settings`` (defaults as a fresh ``iotiam init``)."""

    pki: PkiConfig = field(default_factory=lambda: PkiConfig(
        public_base_url="http://127.0.0.1:8080"))
    tokens: TokenConfig = field(default_factory=lambda: TokenConfig(
        issuer="https://127.0.0.1:8443", access_token_lifetime=timedelta(seconds=600)))
    queue: QueueLimits = field(default_factory=QueueLimits)
    detection_learning_seconds: float = 3600.0
    organization: str = "iotiam"
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256


@dataclass
class MemoryServices:
    """The wired services of one installation in memory (the fields of
    ``bootstrap.Services`` that are domain services), with its clock and database."""

    clock: FrozenClock
    database: MemoryDatabase
    #: what committed transactions recorded, delivered at commit (``iotiam.changes``)
    changes: MemoryChangeFeed
    audit: AuditTrail
    checkpoints: CheckpointWriter
    admin_tokens: AdminTokens
    inventory: Inventory[MemoryUnitOfWork]
    pki: Pki
    enrollment: Enrollment
    psks: Psks
    manufacturers: Manufacturers
    enrollment_queue: EnrollmentQueue
    first_contact: FirstContact
    transfers: OwnershipTransfer[MemoryUnitOfWork]
    policies: PolicyAdministration
    decisions: DecisionPoint
    subjects: DeviceSubjects
    inquiry: PolicyInquiry
    oauth: AuthorizationServer
    firmware: FirmwareRegistry
    attestation: Attestation
    response: IncidentResponse[MemoryUnitOfWork]
    trust: TrustScores
    ingest: EventIngest
    alerts: AlertDispatcher
    #: the plaintext of the bootstrap admin token (``profile.json`` of a real install)
    admin_token: str = ""

    @property
    def uow(self) -> MemoryUnitOfWork:
        """The stores, to look at directly."""
        return self.database.uow

    def close(self) -> None:
        """Deliver queued alerts."""
        self.alerts.close()


def memory_services(
    config: MemoryConfig | None = None, *, clock: FrozenClock | None = None,
    serials: SerialSource | None = None, alert_channels: tuple[AlertChannel, ...] = (),
) -> MemoryServices:
    """An installation in memory, initialised like ``iotiam init`` and wired like
    ``bootstrap.build_services``."""
    config = config or MemoryConfig()
    clock = clock or FrozenClock(START)
    database = MemoryDatabase()
    passphrase = secrets.token_bytes(16).hex().encode()
    checkpoint_key = CheckpointKey(name="iotiam/audit/memory", key=Ed25519PrivateKey.generate())
    checkpoint_log = MemoryCheckpointLog()
    checkpoints = CheckpointWriter(database, clock, checkpoint_log, checkpoint_key)
    audit = AuditTrail(database, clock, secrets.token_bytes(32), checkpoint_log,
                       checkpoint_key.verifier())
    cas = _seed(database, audit, config, clock, passphrase)
    services = _wire(database, clock, audit, checkpoints, config, cas, passphrase,
                     serials or x509.random_serial_number, alert_channels)
    _ensure_default_policy(services.policies)
    services.admin_token = _bootstrap_token(services)
    audit.record(AuditDraft(tag=AuditTag.INSTALLATION_INITIALIZED, actor=SYSTEM.name,
                            org_path=ROOT_PATH, subject="installation",
                            details={"created_ca": True, "created_token": True,
                                     "api": config.tokens.issuer}))
    checkpoints.write()
    return services


def _wire(database: MemoryDatabase, clock: FrozenClock, audit: AuditTrail,
          checkpoints: CheckpointWriter, config: MemoryConfig, cas: CaSet, passphrase: bytes,
          serials: Callable[[], int], alert_channels: tuple[AlertChannel, ...]
          ) -> MemoryServices:
    """The object graph of ``bootstrap.build_services`` on the memory database."""
    pki = Pki(database, clock, audit, config.pki, cas, serials,
              MemoryStatusReader(database.uow.certificates))
    psks = Psks(database, clock, audit, SecretSealer(secrets.token_bytes(32)))
    every_credential: AllCredentials[MemoryUnitOfWork] = AllCredentials(pki, psks)
    queue = EnrollmentQueue(database, clock, audit, pki, config.queue)
    policies = PolicyAdministration(database, clock, audit)
    decisions = DecisionPoint(policies, clock)
    changes = MemoryChangeLog(database, clock)
    subjects = DeviceSubjects(changes, clock, posture=changes)
    inventory: Inventory[MemoryUnitOfWork] = Inventory(database, clock, audit, every_credential)
    trust = TrustScores(database, clock, NoFirmwareData())
    alerts = AlertDispatcher(list(alert_channels))
    response = IncidentResponse(database, clock, audit, inventory, every_credential, alerts,
                                trust)
    attestation = Attestation(database, clock, audit, DeviceCa(
        cas.issuing_id, cas.issuing.certificate.subject), finding_sink=response)
    trust.use_firmware_source(attestation)
    engine = DetectionEngine(learning_seconds=config.detection_learning_seconds)
    ingest = EventIngest(engine, response, MemoryDeviceLookup(database.uow.devices))
    response.on_false_positive(ingest.false_positive)
    return _follow_changes(MemoryServices(
        clock=clock, database=database, changes=MemoryChangeFeed.following(database),
        audit=audit, checkpoints=checkpoints,
        admin_tokens=AdminTokens(database, clock, audit), inventory=inventory, pki=pki,
        enrollment=Enrollment(database, clock, audit, pki), psks=psks,
        manufacturers=Manufacturers(database, clock, audit), enrollment_queue=queue,
        first_contact=FirstContact(database, clock, audit, pki, queue),
        transfers=OwnershipTransfer(database, clock, audit, every_credential),
        policies=policies, decisions=decisions, subjects=subjects,
        inquiry=PolicyInquiry(decisions, subjects, inventory, clock),
        oauth=_authorization_server(database, clock, audit, config.tokens, cas, decisions,
                                    passphrase),
        firmware=FirmwareRegistry(database, clock, audit, finding_sink=response),
        attestation=attestation, response=response, trust=trust, ingest=ingest,
        alerts=alerts,
    ))


def _follow_changes(services: MemoryServices) -> MemoryServices:
    """The subscriptions of ``bootstrap.follow_changes``, on the memory feed."""
    feed = services.changes
    feed.subscribe((CertificateRevoked, CredentialRevoked, DeviceChanged, TrustChanged),
                   services.subjects.changed)
    feed.subscribe((CertificateRevoked,), services.pki.forget_ocsp_response)
    feed.subscribe((PolicyChanged,), services.decisions.policies_changed)
    feed.subscribe((DetectionModeChanged,), services.response.settings_changed)
    feed.subscribe((DetectionModeChanged,), services.ingest.mode_changed)
    feed.subscribe((DeviceChanged,), services.ingest.devices_changed)
    return services


def _authorization_server(database: MemoryDatabase, clock: FrozenClock, audit: AuditTrail,
                          config: TokenConfig, cas: CaSet, decisions: DecisionPoint,
                          passphrase: bytes) -> AuthorizationServer:
    """``bootstrap.authorization_server`` on the memory database."""
    keys = SigningKeys(database, clock, audit, passphrase, config)
    scopes = ScopeGrant(decisions, clock)
    return AuthorizationServer(
        database, clock, audit, config, keys=keys,
        authenticator=ClientAuthenticator(config, IssuingCa(cas.issuing_id,
                                                            cas.issuing.certificate)),
        scopes=scopes,
        clients=OAuthClients(database, clock, audit, decisions, scopes),
        device_codes=DeviceCodes(database, clock, audit, config),
        introspection=Introspection(database, clock, audit, keys, config, cas.issuing_id),
        revocation=TokenRevocation(database, clock, audit, keys, config),
    )


def _seed(database: MemoryDatabase, audit: AuditTrail, config: MemoryConfig,
          clock: FrozenClock, passphrase: bytes) -> CaSet:
    """The root org unit, the device types and the three CAs, as ``iotiam init``."""
    now = clock.now()
    alg, organization = config.key_algorithm, config.organization
    root = create_root_ca(alg=alg, common_name=f"{organization} Root CA",
                          organization=organization, now=now,
                          serial=x509.random_serial_number())
    issuing = create_issuing_ca(root=root, alg=alg, common_name=f"{organization} Issuing CA 1",
                                organization=organization, now=now,
                                serial=x509.random_serial_number())
    responder = create_ocsp_responder(issuer=issuing, alg=alg,
                                      common_name=f"{organization} OCSP Responder 1", now=now,
                                      serial=x509.random_serial_number())
    ids: dict[CaRole, str] = {}
    with database() as uow:
        uow.org_units.add(OrgUnit(id=ROOT_ORG_ID, name="Root", kind=OrgUnitKind.ROOT,
                                  parent_id=None, path=ROOT_PATH, created_at=now))
        for name, device_class, criticality, description in SEED_DEVICE_TYPES:
            profile = "gateway" if device_class is DeviceClass.GATEWAY else "device"
            uow.device_types.add(DeviceType(name=name, device_class=device_class,
                                            criticality=criticality, description=description,
                                            certificate_profile=profile, created_at=now))
        for role, material in ((CaRole.ROOT, root), (CaRole.ISSUING, issuing),
                               (CaRole.OCSP_RESPONDER, responder)):
            ids[role] = _store_ca(uow, role, material, passphrase, now)
            audit.append(uow, AuditDraft(tag=AuditTag.CA_CREATED, actor=SYSTEM.name,
                                         org_path=ROOT_PATH, subject=f"ca:{role}",
                                         details={"algorithm": str(alg),
                                                  "subject": material.certificate.subject
                                                  .rfc4514_string()}))
    return CaSet(issuing_id=ids[CaRole.ISSUING], issuing=issuing, root_id=ids[CaRole.ROOT],
                 root=root, responder=responder)


def _store_ca(uow: MemoryUnitOfWork, role: CaRole, material: CaMaterial, passphrase: bytes,
              now: datetime) -> str:
    """Store a key pair under the id ``installation.ca_id`` gives it."""
    ski = x509.SubjectKeyIdentifier.from_public_key(
        material.certificate.public_key()).digest.hex()
    identifier = f"{role}-{ski[:12]}"
    uow.cas.add(StoredCa(
        id=identifier, role=role,
        certificate_pem=material.certificate.public_bytes(serialization.Encoding.PEM).decode(),
        encrypted_key_pem=encrypt_private_key(material.key, passphrase).decode(),
        created_at=now))
    return identifier


def _ensure_default_policy(policies: PolicyAdministration) -> None:
    """Devices may connect and use ``devices/<their id>/#``, nothing else, unless told."""
    policies.write(SYSTEM, DEFAULT_DEVICE_POLICY_YAML, owner_path=ROOT_PATH)
    policies.attach(SYSTEM, DEFAULT_DEVICE_POLICY.name,
                    AttachmentTarget(TargetKind.ORG_UNIT, ROOT_ORG_ID))


def _bootstrap_token(services: MemoryServices) -> str:
    """A root admin token named like the one ``iotiam init`` leaves in the profile."""
    with services.database() as uow:
        token, plaintext = services.admin_tokens.mint(
            uow, created_by=SYSTEM.name, name="bootstrap-admin", role=Role.ADMIN,
            org_unit_id=ROOT_ORG_ID, org_path=ROOT_PATH, ttl=None)
        services.audit.append(uow, AuditDraft(
            tag=AuditTag.TOKEN_CREATED, actor=SYSTEM.name, org_path=ROOT_PATH,
            subject=f"token:{token.id}", details={"name": token.name, "role": "admin"}))
    return plaintext
