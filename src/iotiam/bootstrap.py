"""The composition root: the only module that wires every layer together."""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.admin.service import AdminTokens
from iotiam.attestation.registry import FirmwareRegistry
from iotiam.attestation.service import Attestation, DeviceCa
from iotiam.audit.anchor import CheckpointWriter
from iotiam.audit.checkpoint import Verifier
from iotiam.audit.export import checkpoint_to_syslog
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.broker.fleet import LiveFleet
from iotiam.clock import Clock, SystemClock
from iotiam.config import (
    PROFILE_FILE,
    Settings,
    ca_passphrase,
    save_settings,
    write_private_file,
)
from iotiam.credentials.sealing import SecretSealer
from iotiam.credentials.service import Psks
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.ingest import EventIngest
from iotiam.enrollment.first_contact import FirstContact
from iotiam.enrollment.manufacturers import Manufacturers
from iotiam.enrollment.queue import EnrollmentQueue, QueueLimits
from iotiam.enrollment.service import Enrollment
from iotiam.enrollment.transfer import OwnershipTransfer
from iotiam.errors import IamError, InvalidInput, NotFound, SetupError, Unauthenticated
from iotiam.fast.batching import ThreadCombiner
from iotiam.fast.leaf_encoding import DirectLeafSigner
from iotiam.fast.signature_helper import HelperProofChecks
from iotiam.fast.token_reads import ReadAhead
from iotiam.inventory.models import Criticality, DeviceClass, DeviceType, OrgUnit, OrgUnitKind
from iotiam.inventory.ports import AllCredentials
from iotiam.inventory.service import Inventory
from iotiam.kernel import ROOT_ORG_ID, ROOT_PATH, SYSTEM, Principal, Role
from iotiam.pki.authority import (
    CaMaterial,
    create_issuing_ca,
    create_ocsp_responder,
    create_root_ca,
    create_server_tls_certificate,
)
from iotiam.pki.keys import encrypt_private_key, load_private_key
from iotiam.pki.models import CaRole, KeyAlgorithm
from iotiam.pki.ports import SerialSource, StoredCa
from iotiam.pki.service import CaSet, Pki
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY, DEFAULT_DEVICE_POLICY_YAML
from iotiam.policy.inquiry import PolicyInquiry
from iotiam.policy.models import AttachmentTarget, TargetKind
from iotiam.policy.service import DecisionPoint, PolicyAdministration
from iotiam.policy.subjects import DeviceSubjects
from iotiam.response.alerts import AlertChannel, AlertDispatcher, SyslogChannel, WebhookChannel
from iotiam.response.ports import NoFirmwareData
from iotiam.response.scoring import TrustRefresher, TrustScores
from iotiam.response.service import IncidentResponse
from iotiam.storage.baseline_file import BaselineFile
from iotiam.storage.checkpoint_file import CheckpointFile, CheckpointKeyFile
from iotiam.storage.database import Database, SqlUnitOfWork, make_engine
from iotiam.storage.fleet_changes import SqlChangeLog
from iotiam.storage.migrate import upgrade_to_head
from iotiam.storage.response_store import SqlDeviceLookup
from iotiam.storage.status_reader import SqlStatusReader
from iotiam.tokens.client_auth import ClientAuthenticator, IssuingCa
from iotiam.tokens.clients import OAuthClients
from iotiam.tokens.device_codes import DeviceCodes
from iotiam.tokens.introspection import Introspection
from iotiam.tokens.models import TokenConfig
from iotiam.tokens.revocation import TokenRevocation
from iotiam.tokens.scopes import ScopeGrant
from iotiam.tokens.service import AuthorizationServer
from iotiam.tokens.signing_keys import SigningKeys

log = logging.getLogger(__name__)

SEED_DEVICE_TYPES = (
    ("sensor", DeviceClass.SENSOR, Criticality.MEDIUM, "Battery or mains powered sensor"),
    ("gateway", DeviceClass.GATEWAY, Criticality.HIGH, "Edge gateway relaying other devices"),
    ("controller", DeviceClass.CONTROLLER, Criticality.HIGH, "PLC or controller driving plant"),
)


@dataclass
class Services:
    """Everything the front ends (API, CLI, server) need, fully wired."""

    settings: Settings
    clock: Clock
    database: Database
    audit: AuditTrail
    #: signs audit checkpoints into the data directory (G7); run by ``serve`` and ``init``
    checkpoints: CheckpointWriter
    admin_tokens: AdminTokens
    inventory: Inventory
    pki: Pki
    enrollment: Enrollment
    psks: Psks
    manufacturers: Manufacturers
    enrollment_queue: EnrollmentQueue
    first_contact: FirstContact
    transfers: OwnershipTransfer
    policies: PolicyAdministration
    decisions: DecisionPoint
    #: decision subjects of devices (cached for the broker authorization hook)
    subjects: DeviceSubjects
    #: "would X be allowed", "what can X do", "who can publish to T" for admins
    inquiry: PolicyInquiry
    #: the OAuth2 authorization server for devices and services
    oauth: AuthorizationServer
    #: firmware signers, signed images and minimum-firmware rules (admins)
    firmware: FirmwareRegistry
    #: device attestation (challenge, evidence) and the compliance read API
    attestation: Attestation
    #: findings, their lifecycle, playbooks, modes, mitigations
    response: IncidentResponse
    #: device trust scores (explained), fed back into policy conditions
    trust: TrustScores
    #: the event pipeline: every source of events ends here
    ingest: EventIngest
    #: signed webhook and syslog delivery of findings
    alerts: AlertDispatcher

    def close(self) -> None:
        """Deliver queued alerts, release database connections."""
        self.alerts.close()
        self.database.dispose()


def open_database(settings: Settings) -> Database:
    """Connect and bring the schema up to date."""
    engine = make_engine(settings.effective_database_url)
    upgrade_to_head(engine)
    return Database(engine)


def _local_key(settings: Settings, env: str, name: str, what: str, *, create: bool) -> bytes:
    """A 32-byte key kept outside the database: ``$env`` names its file, else secrets/."""
    env_file = os.environ.get(env)
    path = Path(env_file) if env_file else settings.secrets_dir / name
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        raise SetupError(f"{what} {path} is missing; run `iotiam init`")
    key = secrets.token_bytes(32)
    write_private_file(path, key.hex() + "\n")
    return key


def audit_head_key(settings: Settings, *, create: bool) -> bytes:
    """Key that MACs the audit chain head."""
    return _local_key(settings, "IOTIAM_AUDIT_KEY_FILE", "audit.key", "audit key",
                      create=create)


def checkpoint_writer(settings: Settings, database: Database, clock: Clock,
                      passphrase: bytes) -> tuple[CheckpointWriter, Verifier, CheckpointFile]:
    """The checkpoint writer, the verifier key and the checkpoint files (G7)."""
    key = CheckpointKeyFile(settings.secrets_dir / "audit-checkpoint.key",
                            settings.audit_dir / "checkpoint.vkey").load_or_create(passphrase)
    files = CheckpointFile(settings.audit_dir)
    publish = None
    if settings.alert_syslog:
        syslog = next(c for c in alert_channels(settings) if isinstance(c, SyslogChannel))

        def publish(note: str, refused: bool) -> None:
            try:
                syslog.send(checkpoint_to_syslog(note, refused=refused).encode())
            except OSError as e:  # the file is the anchor; the SIEM copy is best effort
                log.warning("could not send the audit checkpoint to syslog: %s", e)
    return CheckpointWriter(database, clock, files, key, publish), key.verifier(), files


def data_key(settings: Settings, *, create: bool) -> bytes:
    """Key that encrypts readable secrets at rest (PSKs)."""
    return _local_key(settings, "IOTIAM_DATA_KEY_FILE", "data.key", "data key", create=create)


def ca_id(role: CaRole, certificate: x509.Certificate) -> str:
    """Stable id of a key pair: its role and the start of its key identifier."""
    ski = x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest.hex()
    return f"{role}-{ski[:12]}"


def load_ca_set(database: Database, passphrase: bytes) -> CaSet:
    """Decrypt the CA keys for this process."""
    with database.reading() as uow:
        stored = {role: uow.cas.active(role) for role in CaRole}
    missing = [str(r) for r in (CaRole.ROOT, CaRole.ISSUING, CaRole.OCSP_RESPONDER)
               if stored[r] is None]
    if missing:
        raise SetupError(f"no {', '.join(missing)} CA in the database; run `iotiam init`")

    def material(role: CaRole) -> tuple[str, CaMaterial]:
        item = stored[role]
        assert item is not None
        cert = x509.load_pem_x509_certificate(item.certificate_pem.encode())
        return item.id, CaMaterial(cert, load_private_key(item.encrypted_key_pem.encode(),
                                                          passphrase))

    root_id, root = material(CaRole.ROOT)
    issuing_id, issuing = material(CaRole.ISSUING)
    _, responder = material(CaRole.OCSP_RESPONDER)
    return CaSet(issuing_id=issuing_id, issuing=issuing, root_id=root_id, root=root,
                 responder=responder)


def certificate_authority(settings: Settings, database: Database, clock: Clock,
                          audit: AuditTrail, passphrase: bytes, serials: SerialSource) -> Pki:
    """The built-in CA, with its fast paths (``iotiam.fast``): leaf DER joined directly,
    proofs of possession checked on the other core, concurrent callers sharing batches."""
    return Pki(database, clock, audit, settings.pki, load_ca_set(database, passphrase),
               serials, SqlStatusReader(database.engine), leaf_signers=DirectLeafSigner,
               proofs=HelperProofChecks(), batching=ThreadCombiner)


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    serials: SerialSource | None = None,
    database: Database | None = None,
) -> Services:
    """Wire the services for an initialised data directory."""
    clock = clock or SystemClock()
    database = database or open_database(settings)
    passphrase = ca_passphrase(settings, create=False)
    checkpoints, verifier, checkpoint_files = checkpoint_writer(settings, database, clock,
                                                                passphrase)
    audit = AuditTrail(database, clock, audit_head_key(settings, create=False),
                       checkpoint_files, verifier)
    pki = certificate_authority(settings, database, clock, audit, passphrase,
                                serials or x509.random_serial_number)
    psks = Psks(database, clock, audit, SecretSealer(data_key(settings, create=False)))
    every_credential = AllCredentials(pki, psks)
    queue = EnrollmentQueue(database, clock, audit, pki, QueueLimits(
        retry_after_seconds=settings.est_retry_after_seconds))
    policies = PolicyAdministration(database, clock, audit)
    decisions = DecisionPoint(policies, clock)
    policies.on_change(decisions.invalidate)
    changes = SqlChangeLog(database, clock)
    subjects = DeviceSubjects(changes, clock, posture=changes)
    inventory = Inventory(database, clock, audit, every_credential)
    trust = TrustScores(database, clock, NoFirmwareData())
    alerts = AlertDispatcher(alert_channels(settings))
    response = IncidentResponse(database, clock, audit, every_credential, alerts, trust)
    attestation = Attestation(database, clock, audit, DeviceCa(
        pki.cas.issuing_id, pki.cas.issuing.certificate.subject), finding_sink=response)
    trust.use_firmware_source(attestation)
    ingest = EventIngest(detection_engine(settings, response), response,
                         SqlDeviceLookup(database.engine))
    response.on_mode_change(ingest.set_mode)
    response.on_false_positive(ingest.false_positive)
    return Services(
        settings=settings,
        clock=clock,
        database=database,
        audit=audit,
        checkpoints=checkpoints,
        admin_tokens=AdminTokens(database, clock, audit),
        inventory=inventory,
        pki=pki,
        enrollment=Enrollment(database, clock, audit, pki),
        psks=psks,
        manufacturers=Manufacturers(database, clock, audit),
        enrollment_queue=queue,
        first_contact=FirstContact(database, clock, audit, pki, queue),
        transfers=OwnershipTransfer(database, clock, audit, every_credential),
        policies=policies,
        decisions=decisions,
        subjects=subjects,
        inquiry=PolicyInquiry(decisions, subjects, inventory, clock),
        oauth=authorization_server(settings, database, clock, audit, pki, decisions,
                                   passphrase),
        firmware=FirmwareRegistry(database, clock, audit, finding_sink=response),
        attestation=attestation,
        response=response,
        trust=trust,
        ingest=ingest,
        alerts=alerts,
    )


def alert_webhook_key(settings: Settings) -> bytes:
    """The key that signs alert webhooks (share it with the receiver)."""
    return _local_key(settings, "IOTIAM_ALERT_WEBHOOK_KEY_FILE", "alert-webhook.key",
                      "alert webhook key", create=True)


def alert_channels(settings: Settings) -> list[AlertChannel]:
    """The configured alert channels (none: findings are stored, not sent)."""
    channels: list[AlertChannel] = []
    if settings.alert_webhook_url:
        channels.append(WebhookChannel(settings.alert_webhook_url, alert_webhook_key(settings)))
    if settings.alert_syslog:
        target, _, transport = settings.alert_syslog.partition("/")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit() or transport not in ("", "udp", "tcp"):
            raise SetupError(f"IOTIAM_ALERT_SYSLOG {settings.alert_syslog!r}: use host:port "
                             "or host:port/tcp")
        channels.append(SyslogChannel(host, int(port), tcp=transport == "tcp"))
    return channels


def detection_engine(settings: Settings, response: IncidentResponse) -> DetectionEngine:
    """The detection engine: carrying on from its saved baselines when they fit, in the
    stored per-type modes."""
    learning = settings.detection_learning_seconds
    saved_file = BaselineFile(settings.baselines_file)
    saved = saved_file.load()
    engine: DetectionEngine | None = None
    if saved is not None:
        try:
            engine = DetectionEngine.restore(saved)
        except InvalidInput as e:
            saved_file.set_aside(e.detail)
        if engine is not None and engine.learning_seconds != learning:
            engine = None  # a changed learning period: the saved baselines do not fit it
    engine = engine or DetectionEngine(learning_seconds=learning)
    for device_type, mode in response.modes().items():
        engine.set_mode(device_type, mode)
    return engine


def token_config(settings: Settings) -> TokenConfig:
    """The authorization server's settings: ``IOTIAM_OAUTH_ISSUER`` (default: the API URL)
    and ``IOTIAM_TOKEN_LIFETIME`` (seconds, default 600)."""
    issuer = (os.environ.get("IOTIAM_OAUTH_ISSUER") or settings.api_url).rstrip("/")
    lifetime = os.environ.get("IOTIAM_TOKEN_LIFETIME")
    try:
        seconds = int(lifetime) if lifetime else 600
        return TokenConfig(issuer=issuer, access_token_lifetime=timedelta(seconds=seconds))
    except (ValueError, IamError) as e:
        raise SetupError("IOTIAM_TOKEN_LIFETIME must be 30-86400 seconds") from e


def authorization_server(
    settings: Settings, database: Database, clock: Clock, audit: AuditTrail, pki: Pki,
    decisions: DecisionPoint, passphrase: bytes,
) -> AuthorizationServer:
    """Wire the OAuth2 authorization server (signing keys encrypted like the CA keys)."""
    config = token_config(settings)
    keys = SigningKeys(database, clock, audit, passphrase, config)
    scopes = ScopeGrant(decisions, clock)
    return AuthorizationServer(
        database, clock, audit, config, keys=keys,
        authenticator=ClientAuthenticator(
            config, IssuingCa(pki.cas.issuing_id, pki.cas.issuing.certificate),
            reads_ahead=ReadAhead),
        scopes=scopes,
        clients=OAuthClients(database, clock, audit, decisions, scopes),
        device_codes=DeviceCodes(database, clock, audit, config),
        introspection=Introspection(database, clock, audit, keys, config, pki.cas.issuing_id),
        revocation=TokenRevocation(database, clock, audit, keys, config),
    )


def broker_fleet(services: Services) -> LiveFleet:
    """The fleet as the broker sync sees it."""
    changes = SqlChangeLog(services.database, services.clock)
    return LiveFleet(services.database, services.clock, changes, services.pki, services.psks,
                     services.decisions, posture=changes)


def save_baselines(services: Services) -> None:
    """Write the detection engine's baselines to the data directory."""
    BaselineFile(services.settings.baselines_file).save(services.ingest.engine.snapshot())


def trust_scores_refresher(services: Services) -> TrustRefresher:
    """Rescoring of devices whose record, credentials or firmware verdict changed."""
    return TrustRefresher(services.trust, SqlChangeLog(services.database, services.clock),
                          services.clock)


@dataclass(frozen=True)
class InitResult:
    """What ``iotiam init`` did."""

    created_ca: bool
    created_token: bool
    profile_path: Path
    api_url: str
    http_url: str


def initialize(
    settings: Settings,
    *,
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    organization: str = "iotiam",
    clock: Clock | None = None,
) -> InitResult:
    """Create or complete an installation. Running it again never destroys keys."""
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_settings(settings)
    passphrase = ca_passphrase(settings, create=True)
    key = audit_head_key(settings, create=True)
    data_key(settings, create=True)
    database = open_database(settings)
    audit = AuditTrail(database, clock, key)
    try:
        with database() as uow:
            _seed_inventory(uow, clock)
            created_ca = _ensure_cas(uow, audit, settings, key_algorithm, organization,
                                     passphrase, clock)
        _write_tls_files(database, settings, passphrase, clock, key_algorithm)
        _ensure_default_policy(PolicyAdministration(database, clock, audit))
        created_token = _ensure_profile(database, audit, settings, clock)
        if created_ca or created_token:
            audit.record(
                AuditDraft(
                    tag=AuditTag.INSTALLATION_INITIALIZED,
                    actor=SYSTEM.name,
                    org_path=ROOT_PATH,
                    subject="installation",
                    details={"created_ca": created_ca, "created_token": created_token,
                             "api": settings.api_url},
                )
            )
        # anchor what init wrote: from here on a wiped database is told from a new one
        checkpoint_writer(settings, database, clock, passphrase)[0].write()
    finally:
        database.dispose()
    return InitResult(
        created_ca=created_ca,
        created_token=created_token,
        profile_path=settings.data_dir / PROFILE_FILE,
        api_url=settings.api_url,
        http_url=f"http://{settings.host}:{settings.http_port}",
    )


def _ensure_default_policy(policies: PolicyAdministration) -> None:
    """Devices may connect and use ``devices/<their id>/#``, nothing else, unless told."""
    name = DEFAULT_DEVICE_POLICY.name
    try:
        policies.get(SYSTEM, name)
    except NotFound:
        policies.write(SYSTEM, DEFAULT_DEVICE_POLICY_YAML, owner_path=ROOT_PATH)
        policies.attach(SYSTEM, name, AttachmentTarget(TargetKind.ORG_UNIT, ROOT_ORG_ID))


def _seed_inventory(uow: SqlUnitOfWork, clock: Clock) -> None:
    now = clock.now()
    if uow.org_units.get(ROOT_ORG_ID) is None:
        uow.org_units.add(OrgUnit(id=ROOT_ORG_ID, name="Root", kind=OrgUnitKind.ROOT,
                                  parent_id=None, path=ROOT_PATH, created_at=now))
    for name, device_class, criticality, description in SEED_DEVICE_TYPES:
        if uow.device_types.get(name) is None:
            profile = "gateway" if device_class is DeviceClass.GATEWAY else "device"
            uow.device_types.add(DeviceType(name=name, device_class=device_class,
                                            criticality=criticality, description=description,
                                            certificate_profile=profile, created_at=now))


def _ensure_cas(
    uow: SqlUnitOfWork, audit: AuditTrail, settings: Settings, alg: KeyAlgorithm,
    organization: str, passphrase: bytes, clock: Clock,
) -> bool:
    if uow.cas.active(CaRole.ISSUING) is not None:
        return False
    now = clock.now()
    root = create_root_ca(alg=alg, common_name=f"{organization} Root CA",
                          organization=organization, now=now,
                          serial=x509.random_serial_number())
    issuing = create_issuing_ca(root=root, alg=alg, common_name=f"{organization} Issuing CA 1",
                                organization=organization, now=now,
                                serial=x509.random_serial_number())
    responder = create_ocsp_responder(issuer=issuing, alg=alg,
                                      common_name=f"{organization} OCSP Responder 1", now=now,
                                      serial=x509.random_serial_number())
    for role, material in ((CaRole.ROOT, root), (CaRole.ISSUING, issuing),
                           (CaRole.OCSP_RESPONDER, responder)):
        _store_material(uow, role, material, passphrase, clock)
        audit.append(uow, AuditDraft(tag=AuditTag.CA_CREATED, actor=SYSTEM.name,
                                     org_path=ROOT_PATH, subject=f"ca:{role}",
                                     details={"algorithm": str(alg),
                                              "subject": material.certificate.subject
                                              .rfc4514_string()}))
    return True


def _store_material(
    uow: SqlUnitOfWork, role: CaRole, material: CaMaterial, passphrase: bytes, clock: Clock
) -> str:
    identifier = ca_id(role, material.certificate)
    uow.cas.add(StoredCa(
        id=identifier,
        role=role,
        certificate_pem=material.certificate.public_bytes(serialization.Encoding.PEM).decode(),
        encrypted_key_pem=encrypt_private_key(material.key, passphrase).decode(),
        created_at=clock.now(),
    ))
    return identifier


def _write_tls_files(
    database: Database, settings: Settings, passphrase: bytes, clock: Clock,
    alg: KeyAlgorithm,
) -> None:
    """The server's own TLS certificate; re-issued when the configured names change."""
    cas = load_ca_set(database, passphrase)
    tls = settings.tls_dir
    cert_file, key_file = tls / "server.pem", tls / "server.key"
    names = list(dict.fromkeys(settings.server_names))
    with database() as uow:
        current = uow.cas.active(CaRole.SERVER_TLS)
        if current is not None:
            cert = x509.load_pem_x509_certificate(current.certificate_pem.encode())
            if _san_names(cert) == set(names) and cert.not_valid_after_utc - clock.now() > \
                    timedelta(days=30):
                material = CaMaterial(cert, load_private_key(current.encrypted_key_pem.encode(),
                                                             passphrase))
            else:
                current = None
        if current is None:
            material = create_server_tls_certificate(
                issuer=cas.issuing, alg=KeyAlgorithm.EC_P256 if alg is KeyAlgorithm.ED25519
                else alg, names=names, now=clock.now(), serial=x509.random_serial_number(),
                urls=None,
            )
            _store_material(uow, CaRole.SERVER_TLS, material, passphrase, clock)
    chain = material.certificate.public_bytes(serialization.Encoding.PEM).decode()
    write_private_file(cert_file, chain + cas.chain_pem())
    write_private_file(key_file, encrypt_private_key(material.key, passphrase))
    # trust anchors for API clients, and the CAs device client certificates chain to
    # (issuing CA included, so a device that sends only its leaf still verifies)
    write_private_file(tls / "ca.pem", cas.root.certificate.public_bytes(
        serialization.Encoding.PEM))
    write_private_file(tls / "client-ca.pem", cas.chain_pem())


def _san_names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }


def _ensure_profile(
    database: Database, audit: AuditTrail, settings: Settings, clock: Clock
) -> bool:
    """Leave a local profile (API URL + a root admin token) unless a working one exists."""
    path = settings.data_dir / PROFILE_FILE
    tokens = AdminTokens(database, clock, audit)
    if path.exists():
        try:
            profile = json.loads(path.read_text())
            tokens.authenticate(str(profile.get("token", "")))
            profile["url"] = settings.api_url
            profile["ca_file"] = str(settings.tls_dir / "ca.pem")
            write_private_file(path, json.dumps(profile, indent=2) + "\n")
            return False
        except (ValueError, OSError, Unauthenticated):
            pass
    with database() as uow:
        token, plaintext = tokens.mint(
            uow, created_by=SYSTEM.name, name="bootstrap-admin", role=Role.ADMIN,
            org_unit_id=ROOT_ORG_ID, org_path=ROOT_PATH, ttl=None,
        )
        audit.append(uow, AuditDraft(tag=AuditTag.TOKEN_CREATED, actor=SYSTEM.name,
                                     org_path=ROOT_PATH, subject=f"token:{token.id}",
                                     details={"name": token.name, "role": "admin"}))
    profile = {"url": settings.api_url, "token": plaintext,
               "ca_file": str(settings.tls_dir / "ca.pem")}
    write_private_file(path, json.dumps(profile, indent=2) + "\n")
    return True


def root_principal() -> Principal:
    """The built-in system principal (for in-process callers such as benchmarks)."""
    return SYSTEM
