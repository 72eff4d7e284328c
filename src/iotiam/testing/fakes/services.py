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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from iotiam.admin.service import AdminTokens
from iotiam.attestation.registry import FirmwareRegistry
from iotiam.attestation.service import Attestation
from iotiam.audit.anchor import CheckpointWriter
from iotiam.audit.checkpoint import CheckpointKey
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.bootstrap import authorization_server, follow_changes
from iotiam.ca_keyring import StoredCaKeys, load_ca_set
from iotiam.clock import FrozenClock
from iotiam.credentials.sealing import SecretSealer
from iotiam.credentials.service import Psks
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.ingest import EventIngest
from iotiam.discovery.adoption import Adoption
from iotiam.discovery.ports import SightingSink
from iotiam.discovery.service import Discovery
from iotiam.enrollment.first_contact import FirstContact
from iotiam.enrollment.manufacturers import Manufacturers
from iotiam.enrollment.queue import EnrollmentQueue, QueueLimits
from iotiam.enrollment.service import Enrollment
from iotiam.enrollment.transfer import OwnershipTransfer
from iotiam.gateways.service import Gateways
from iotiam.installation import ensure_cas, ensure_default_policy, seed_inventory
from iotiam.inventory.ports import AllCredentials
from iotiam.inventory.service import Inventory
from iotiam.kernel import ROOT_ORG_ID, ROOT_PATH, SYSTEM, Role
from iotiam.pki.ca_set import CaSet
from iotiam.pki.models import KeyAlgorithm, PkiConfig
from iotiam.pki.ports import SerialSource
from iotiam.pki.rotation import CaRotation
from iotiam.pki.service import Pki
from iotiam.policy.inquiry import PolicyInquiry
from iotiam.policy.lint import lint_policy
from iotiam.policy.service import DecisionPoint, PolicyAdministration
from iotiam.policy.subjects import DeviceSubjects
from iotiam.response.alerts import AlertChannel, AlertDispatcher
from iotiam.response.ports import NoFirmwareData, NoSessionView
from iotiam.response.scoring import TrustScores
from iotiam.response.service import IncidentResponse
from iotiam.risk.service import RiskRegister
from iotiam.testing.fakes.audit import MemoryCheckpointLog
from iotiam.testing.fakes.changes import MemoryChangeFeed, MemoryFleetReads
from iotiam.testing.fakes.pki import MemoryStatusReader
from iotiam.testing.fakes.response import MemoryDeviceLookup
from iotiam.testing.fakes.risk import FixedChannels
from iotiam.testing.fakes.unit_of_work import MemoryDatabase, MemoryUnitOfWork
from iotiam.tokens.models import TokenConfig
from iotiam.tokens.reads import read_when_asked
from iotiam.tokens.service import AuthorizationServer

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
    #: sightings, their reconciliation and the discovered assets
    discovery: Discovery
    adoption: Adoption
    risk: RiskRegister
    #: children under gateways, and what gateways say for them
    gateways: Gateways
    #: issuing-CA rotation and compromise
    ca_rotation: CaRotation
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
    sightings: SightingSink | None = None,
) -> MemoryServices:
    """An installation in memory, initialised like ``iotiam init`` and wired like
    ``bootstrap.build_services`` (what iotiam's own traffic sees of unmanaged identities
    goes to ``sightings``, the installation's discovery when None)."""
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
                     serials or x509.random_serial_number, alert_channels, sightings)
    ensure_default_policy(services.policies)
    services.admin_token = _bootstrap_token(services)
    audit.record(AuditDraft(tag=AuditTag.INSTALLATION_INITIALIZED, actor=SYSTEM.name,
                            org_path=ROOT_PATH, subject="installation",
                            details={"created_ca": True, "created_token": True,
                                     "api": config.tokens.issuer}))
    checkpoints.write()
    return services


def _wire(database: MemoryDatabase, clock: FrozenClock, audit: AuditTrail,
          checkpoints: CheckpointWriter, config: MemoryConfig, cas: CaSet, passphrase: bytes,
          serials: Callable[[], int], alert_channels: tuple[AlertChannel, ...],
          sightings: SightingSink | None) -> MemoryServices:
    """The object graph of ``bootstrap.build_services`` on the memory database."""
    discovery = Discovery(database, clock, audit)
    sightings = sightings or discovery
    keyring = StoredCaKeys(database, passphrase)
    pki = Pki(database, clock, audit, config.pki, cas, serials,
              MemoryStatusReader(database.uow.certificates), reload=keyring.load)
    psks = Psks(database, clock, audit, SecretSealer(secrets.token_bytes(32)))
    every_credential: AllCredentials[MemoryUnitOfWork] = AllCredentials(pki, psks)
    queue = EnrollmentQueue(database, clock, audit, pki, config.queue, sightings=sightings)
    policies = PolicyAdministration(database, clock, audit)
    decisions = DecisionPoint(policies, clock)
    reads = MemoryFleetReads(database, clock)
    subjects = DeviceSubjects(reads, clock, posture=reads)
    inventory: Inventory[MemoryUnitOfWork] = Inventory(database, clock, audit, every_credential)
    enrollment = Enrollment(database, clock, audit, pki)
    trust = TrustScores(database, clock, NoFirmwareData())
    alerts = AlertDispatcher(list(alert_channels))
    response = IncidentResponse(database, clock, audit, inventory, every_credential, alerts,
                                trust)
    attestation = Attestation(database, clock, audit, pki, finding_sink=response)
    trust.use_firmware_source(attestation)
    engine = DetectionEngine(learning_seconds=config.detection_learning_seconds,
                             modes=response)
    ingest = EventIngest(engine, response, MemoryDeviceLookup(database.uow.devices),
                         sightings=sightings)
    response.on_false_positive(ingest.false_positive)
    gateways = Gateways(database, clock, audit, psks, pki, decisions, subjects, response)
    inventory.use_children(gateways)
    return follow_changes(MemoryServices(
        clock=clock, database=database, changes=MemoryChangeFeed.following(database),
        audit=audit, checkpoints=checkpoints,
        admin_tokens=AdminTokens(database, clock, audit), inventory=inventory, pki=pki,
        enrollment=enrollment, psks=psks,
        manufacturers=Manufacturers(database, clock, audit), enrollment_queue=queue,
        first_contact=FirstContact(database, clock, audit, pki, queue),
        transfers=OwnershipTransfer(database, clock, audit, every_credential, policies),
        policies=policies, decisions=decisions, subjects=subjects,
        inquiry=PolicyInquiry(decisions, subjects, inventory, clock),
        oauth=authorization_server(config.tokens, database, clock, audit, pki, decisions,
                                   passphrase, reads_ahead=read_when_asked,
                                   sightings=sightings),
        firmware=FirmwareRegistry(database, clock, audit, finding_sink=response),
        attestation=attestation, response=response, trust=trust, ingest=ingest,
        alerts=alerts, discovery=discovery,
        adoption=Adoption(discovery, inventory, enrollment, audit),
        risk=RiskRegister(database, audit, clock, discovery.reader, FixedChannels(),
                          lint_policy),
        gateways=gateways,
        ca_rotation=CaRotation(database, clock, audit, pki, keyring, serials,
                               NoSessionView()),
    ))


def _seed(database: MemoryDatabase, audit: AuditTrail, config: MemoryConfig,
          clock: FrozenClock, passphrase: bytes) -> CaSet:
    """The root org unit, the device types and the three CAs, by ``iotiam init``'s own
    steps (``installation.py``)."""
    with database() as uow:
        seed_inventory(uow, clock)
        ensure_cas(uow, audit, config.key_algorithm, config.organization, passphrase, clock)
    return load_ca_set(database, passphrase)


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
