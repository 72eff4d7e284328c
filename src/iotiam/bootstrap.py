"""The composition root: the only module that wires every layer together.

``build_services(settings)`` gives the object graph of an initialised data directory;
``iotiam init`` (``installation``) makes that directory.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cryptography import x509

from iotiam.admin.service import AdminTokens
from iotiam.attestation.registry import FirmwareRegistry
from iotiam.attestation.service import Attestation
from iotiam.audit.activity import DailyActivity
from iotiam.audit.anchor import CheckpointWriter
from iotiam.audit.checkpoint import Verifier
from iotiam.audit.export import checkpoint_to_syslog
from iotiam.audit.ports import AuditObserver, Auditor
from iotiam.audit.service import AuditTrail
from iotiam.background import (
    ChangeDispatcher,
)
from iotiam.ca_keyring import StoredCaKeys
from iotiam.changes import (
    AdminTokenRevoked,
    CertificateRevoked,
    ChangeFeed,
    CredentialRevoked,
    DetectionModeChanged,
    DeviceChanged,
    IssuingCasChanged,
    PolicyChanged,
    TrustChanged,
)
from iotiam.clock import Clock, SystemClock
from iotiam.compliance.service import ComplianceReports
from iotiam.config import Settings, ca_passphrase, pkcs11_config
from iotiam.credentials.sealing import SecretSealer
from iotiam.credentials.service import Psks
from iotiam.detection.ingest import EventIngest
from iotiam.detection_wiring import alert_channels, detection_and_response
from iotiam.discovery.adoption import Adoption
from iotiam.discovery.ports import SightingSink
from iotiam.discovery.service import Discovery
from iotiam.discovery.sources.own_traffic import NO_SIGHTINGS
from iotiam.enrollment.first_contact import FirstContact
from iotiam.enrollment.manufacturers import Manufacturers
from iotiam.enrollment.queue import EnrollmentQueue, QueueLimits
from iotiam.enrollment.service import Enrollment
from iotiam.enrollment.transfer import OwnershipTransfer
from iotiam.errors import IamError, SetupError
from iotiam.fast.batching import ThreadCombiner
from iotiam.fast.leaf_encoding import DirectLeafSigner
from iotiam.fast.signature_helper import HelperProofChecks
from iotiam.fast.token_reads import ReadAhead
from iotiam.gateways.service import Gateways
from iotiam.hsm.pkcs11_signer import Pkcs11Signer
from iotiam.hsm.token_keys import Pkcs11KeyVault
from iotiam.inventory.ports import AllCredentials
from iotiam.inventory.service import Inventory
from iotiam.kernel import Transactions
from iotiam.local_keys import audit_head_key, data_key
from iotiam.metrics import Metrics
from iotiam.pki.ports import SerialSource
from iotiam.pki.rotation import CaRotation
from iotiam.pki.service import Pki
from iotiam.policy.inquiry import PolicyInquiry
from iotiam.policy.lint import lint_policy
from iotiam.policy.service import DecisionPoint, PolicyAdministration
from iotiam.policy.subjects import DeviceSubjects
from iotiam.readiness import Readiness
from iotiam.response.alerts import AlertChannel, AlertDispatcher, SyslogChannel
from iotiam.response.ports import NoSessionView
from iotiam.response.scoring import TrustScores
from iotiam.response.service import IncidentResponse
from iotiam.response.set_revocation import SetRevocation
from iotiam.risk.models import FleetChannels
from iotiam.risk.ports import StaticChannels
from iotiam.risk.service import RiskRegister
from iotiam.sso.models import CALLBACK_PATH
from iotiam.sso.service import SingleSignOn
from iotiam.storage.checkpoint_file import CheckpointFile, CheckpointKeyFile
from iotiam.storage.database import Database, SqlUnitOfWork, make_engine
from iotiam.storage.fleet_counts import Recount, recount
from iotiam.storage.fleet_reads import SqlFleetReads
from iotiam.storage.migrate import upgrade_to_head
from iotiam.storage.polling_feed import PollingChangeFeed
from iotiam.storage.site_zones import SqlSiteZones
from iotiam.storage.status_reader import SqlStatusReader
from iotiam.tokens.client_auth import ClientAuthenticator
from iotiam.tokens.clients import OAuthClients
from iotiam.tokens.device_codes import DeviceCodes
from iotiam.tokens.introspection import Introspection
from iotiam.tokens.models import TokenConfig
from iotiam.tokens.ports import TokensUnitOfWork
from iotiam.tokens.reads import ReadsAhead
from iotiam.tokens.revocation import TokenRevocation
from iotiam.tokens.scopes import ScopeGrant
from iotiam.tokens.service import AuthorizationServer
from iotiam.tokens.signing_keys import SigningKeys

log = logging.getLogger(__name__)


if TYPE_CHECKING:  # loaded where used: uvicorn weighs on every CLI start
    pass


@dataclass
class Services:
    """Everything the front ends (API, CLI, server) need, fully wired."""

    settings: Settings
    clock: Clock
    database: Database
    #: every published change (revocations, device state, policies...), after commit
    changes: ChangeDispatcher
    audit: AuditTrail
    #: signs audit checkpoints into the data directory (G7); run by ``serve`` and ``init``
    checkpoints: CheckpointWriter
    admin_tokens: AdminTokens
    inventory: Inventory[SqlUnitOfWork]
    pki: Pki
    enrollment: Enrollment
    psks: Psks
    manufacturers: Manufacturers
    enrollment_queue: EnrollmentQueue
    first_contact: FirstContact
    transfers: OwnershipTransfer[SqlUnitOfWork]
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
    response: IncidentResponse[SqlUnitOfWork]
    #: device trust scores (explained), fed back into policy conditions
    trust: TrustScores
    #: the event pipeline: every source of events ends here
    ingest: EventIngest
    #: signed webhook and syslog delivery of findings
    alerts: AlertDispatcher
    #: sightings, their reconciliation with the fleet, the discovered assets
    discovery: Discovery
    #: discovered assets brought under management (registered, with a claim token)
    adoption: Adoption
    #: the identity risk register (issue 13)
    risk: RiskRegister
    #: children under gateways, and what gateways say for them (docs/gateways.md)
    gateways: Gateways
    #: what ``/readyz`` checks (``serve`` registers them: ``serving.readiness_checks``)
    readiness: Readiness = field(default_factory=Readiness)
    #: what ``/metrics`` answers (its counters are fed by the audit trail)
    metrics: Metrics = field(default_factory=Metrics)
    #: console sign-in through an OpenID Connect provider, when one is configured
    sso: SingleSignOn | None = None
    #: revocation by set (SQL stores only: None in the in-memory installation)
    revocation_sets: SetRevocation | None = None
    #: issuing-CA rotation and compromise (docs/ca-rotation.md)
    ca_rotation: CaRotation | None = None
    #: each device's time zone, its site's, which the detection engine reads (None: the
    #: engine judges in UTC — the in-memory installation of the tests)
    zones: SqlSiteZones | None = None

    @functools.cached_property
    def compliance(self) -> ComplianceReports:
        """The fleet against ETSI EN 303 645, NIST IR 8259A and CRA Annex I, from the
        services above (built on first use)."""
        return ComplianceReports(
            inventory=self.inventory, risk=self.risk, policies=self.policies,
            firmware=self.firmware, findings=self.response, checkpoints=self.audit,
            clock=self.clock, rotation_age=self.settings.rotation_age)

    @functools.cached_property
    def activity(self) -> DailyActivity:
        """Enrollments and revocations by day, kept from the audit log (the tally job
        runs in ``serve``; the console's overview reads them)."""
        return DailyActivity(self.database, self.clock)

    def close(self) -> None:
        """Deliver queued alerts, flush published events, release database connections."""
        self.alerts.close()
        self.ingest.close()
        if self.sso is not None:
            self.sso.close()
        self.database.dispose()


def open_database(settings: Settings) -> Database:
    """Connect and bring the schema up to date."""
    engine = make_engine(settings.effective_database_url)
    upgrade_to_head(engine)
    return Database(engine)


def migrate_database(settings: Settings) -> None:
    """``iotiam db migrate``: bring the schema up to date (what ``serve`` does first)."""
    open_database(settings).dispose()


def recount_fleet(settings: Settings) -> Recount:
    """``iotiam db recount``: rebuild the report's maintained counts from the devices and
    certificates, in one transaction; what was wrong is in the answer."""
    database = open_database(settings)
    try:
        with database() as uow:
            return recount(uow.conn)
    finally:
        database.dispose()


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


def certificate_authority(settings: Settings, database: Database, clock: Clock,
                          audit: AuditTrail, passphrase: bytes, serials: SerialSource) -> Pki:
    """The built-in CA, with its fast paths (``iotiam.fast``): leaf DER joined directly,
    proofs of possession checked on the other core, concurrent callers sharing batches."""
    keyring = StoredCaKeys(database, passphrase)
    return Pki(database, clock, audit, settings.pki, keyring.load(),
               serials, SqlStatusReader(database.engine), leaf_signers=DirectLeafSigner,
               proofs=HelperProofChecks(), batching=ThreadCombiner, reload=keyring.load)


def build_services(settings: Settings, *, clock: Clock | None = None,
                   serials: SerialSource | None = None, database: Database | None = None,
                   metrics: Metrics | None = None) -> Services:
    """Wire the services for an initialised data directory."""
    clock, metrics = clock or SystemClock(), metrics or Metrics()
    database = database or open_database(settings)
    passphrase = ca_passphrase(settings, create=False)
    audit, checkpoints = audit_trail(settings, database, clock, passphrase,
                                     observer=metrics.audited)
    pki = certificate_authority(settings, database, clock, audit, passphrase,
                                serials or x509.random_serial_number)
    psks = Psks(database, clock, audit, SecretSealer(data_key(settings, create=False)))
    every_credential: AllCredentials[SqlUnitOfWork] = AllCredentials(pki, psks)
    # the queue, the event pipeline and the token endpoint report unknown identities
    discovery = Discovery(database, clock, audit,
                          read_ahead=not database.is_sqlite)
    queue = EnrollmentQueue(database, clock, audit, pki, QueueLimits(
        retry_after_seconds=settings.est_retry_after_seconds), sightings=discovery)
    policies, decisions, subjects = policy_services(database, clock, audit)
    inventory = Inventory(database, clock, audit, every_credential)
    channels = alert_channels(settings)
    alerts, enrollment = AlertDispatcher(channels), Enrollment(database, clock, audit, pki)
    response, trust, attestation, ingest, zones = detection_and_response(
        settings, database, clock, audit, pki, inventory, every_credential, alerts,
        discovery)
    gateways = Gateways(database, clock, audit, psks, pki, decisions, subjects, response)
    inventory.use_children(gateways)
    return follow_site_zones(follow_changes(Services(
        settings=settings,
        clock=clock,
        database=database,
        changes=change_feed(database),
        audit=audit,
        checkpoints=checkpoints,
        admin_tokens=AdminTokens(database, clock, audit),
        inventory=inventory,
        pki=pki,
        enrollment=enrollment,
        psks=psks,
        manufacturers=Manufacturers(database, clock, audit),
        enrollment_queue=queue,
        first_contact=FirstContact(database, clock, audit, pki, queue),
        transfers=OwnershipTransfer(database, clock, audit, every_credential, policies),
        policies=policies,
        decisions=decisions,
        subjects=subjects,
        inquiry=PolicyInquiry(decisions, subjects, inventory, clock),
        oauth=authorization_server(token_config(settings), database, clock, audit, pki,
                                   decisions, passphrase, sightings=discovery),
        firmware=FirmwareRegistry(database, clock, audit, finding_sink=response),
        attestation=attestation, response=response, trust=trust,
        ingest=ingest, zones=zones, alerts=alerts, discovery=discovery,
        adoption=Adoption(discovery, inventory, enrollment, audit),
        risk=risk_register(settings, database, clock, audit, discovery, channels),
        metrics=metrics,
        sso=single_sign_on(settings, database, clock, audit), gateways=gateways,
        revocation_sets=SetRevocation(database, clock, audit, NoSessionView()),
        ca_rotation=CaRotation(database, clock, audit, pki, StoredCaKeys(database, passphrase),
                               serials or x509.random_serial_number, NoSessionView()),
    )))


def follow_site_zones(services: Services) -> Services:
    """Each device's time zone, its site's, which the detection engine asks, follows
    devices and sites (built with the engine, it subscribes here, like the jobs: see
    ``follow_changes``)."""
    if services.zones is not None:
        services.changes.subscribe((DeviceChanged,), services.zones.devices_changed)
        services.changes.subscribe((PolicyChanged,), services.zones.sites_changed)
    return services


def single_sign_on(settings: Settings, database: Database, clock: Clock, audit: Auditor
                   ) -> SingleSignOn | None:
    """Console sign-in through the configured OpenID Connect provider (None: none is)."""
    if settings.oidc is None:
        return None
    from iotiam.web.identity_provider import OidcProvider

    # the provider sends the browser back to the console on the API's own URL
    redirect_uri = settings.oidc.redirect_uri or settings.api_url + CALLBACK_PATH
    return SingleSignOn(settings.oidc, OidcProvider(settings.oidc, redirect_uri), database,
                        audit, clock)


def risk_register(settings: Settings, database: Database, clock: Clock, audit: AuditTrail,
                  discovery: Discovery, channels: list[AlertChannel]) -> RiskRegister:
    """The risk register over discovery's reads, judging the fleet's alert and audit
    export channels too."""
    # audit checkpoints leave the host only through the syslog target
    fleet = FleetChannels(bool(settings.alert_syslog), tuple(c.name for c in channels))
    return RiskRegister(database, audit, clock, discovery.reader, StaticChannels(fleet),
                        lint_policy)


def change_feed(database: Database) -> ChangeDispatcher:
    """The change feed: ``LISTEN/NOTIFY`` on PostgreSQL (replicas on several hosts), the
    polled change table on SQLite (one host)."""
    if database.is_sqlite:
        return PollingChangeFeed(database)
    from iotiam.storage.pg_feed import ListeningChangeFeed  # psycopg: PostgreSQL only
    return ListeningChangeFeed(database)


class ChangeFollowers(Protocol):
    """The services that follow the feed in every process (``Services``, and the
    in-memory installation of ``iotiam.testing.fakes``, which subscribes the same way)."""

    @property
    def changes(self) -> ChangeFeed:
        """The feed."""
        ...

    @property
    def subjects(self) -> DeviceSubjects:
        """The decision subjects cached for the broker hook."""
        ...

    @property
    def pki(self) -> Pki:
        """The PKI (its cached OCSP answers)."""
        ...

    @property
    def admin_tokens(self) -> AdminTokens:
        """Admin tokens (the ones authenticated before)."""
        ...

    @property
    def decisions(self) -> DecisionPoint:
        """The policy decision point."""
        ...

    @property
    def response(self) -> IncidentResponse[Any]:
        """The response settings (detection modes)."""
        ...

    @property
    def ingest(self) -> EventIngest:
        """The event pipeline (its device cache)."""
        ...


FollowersT = TypeVar("FollowersT", bound=ChangeFollowers)


def follow_changes(services: FollowersT) -> FollowersT:
    """Who follows which published change, in every process. (The jobs that follow
    changes subscribe where they are built: ``background_jobs``, ``trust_scores_refresher``,
    ``manufacturer_trust``; the broker sync in ``broker_plane``; the sites' zones in
    ``build_services``.)"""
    feed = services.changes
    # G3: the broker hook's subjects, OCSP's cached answers
    feed.subscribe((CertificateRevoked, CredentialRevoked, DeviceChanged, TrustChanged),
                   services.subjects.changed)
    feed.subscribe((CertificateRevoked,), services.pki.forget_ocsp_response)
    # a rotated or revoked issuing CA: issuance, OCSP and the chains follow in every process
    feed.subscribe((IssuingCasChanged,), services.pki.cas_changed)
    # a revoked admin token is refused by every process within the feed's delay
    feed.subscribe((AdminTokenRevoked,), services.admin_tokens.forget)
    feed.subscribe((PolicyChanged,), services.decisions.policies_changed)
    # the modes, held once by the response settings (the detection engine asks them)
    feed.subscribe((DetectionModeChanged,), services.response.settings_changed)
    feed.subscribe((DeviceChanged,), services.ingest.devices_changed)
    return services


def audit_trail(settings: Settings, database: Database, clock: Clock,
                passphrase: bytes, *, observer: AuditObserver | None = None
                ) -> tuple[AuditTrail, CheckpointWriter]:
    """The audit trail (its head MAC'd with the local audit key) and its checkpoints."""
    checkpoints, verifier, checkpoint_files = checkpoint_writer(settings, database, clock,
                                                                passphrase)
    audit = AuditTrail(database, clock, audit_head_key(settings, create=False),
                       checkpoint_files, verifier, observer=observer)
    return audit, checkpoints


def policy_services(database: Database, clock: Clock, audit: AuditTrail
                    ) -> tuple[PolicyAdministration, DecisionPoint, DeviceSubjects]:
    """Policy administration, the decision point it invalidates, decision subjects."""
    policies = PolicyAdministration(database, clock, audit)
    decisions = DecisionPoint(policies, clock)
    reads = SqlFleetReads(database, clock)
    return policies, decisions, DeviceSubjects(reads, clock, posture=reads)


def token_config(settings: Settings) -> TokenConfig:
    """The authorization server's settings: its issuer (default: the API URL) and the
    access token lifetime."""
    issuer = (settings.oauth_issuer or settings.api_url).rstrip("/")
    try:
        return TokenConfig(issuer=issuer, access_token_lifetime=timedelta(
            seconds=settings.token_lifetime_seconds))
    except IamError as e:
        raise SetupError(f"IOTIAM_TOKEN_LIFETIME: {e.diagnostics()}") from e


def authorization_server(
    config: TokenConfig, database: Transactions[TokensUnitOfWork], clock: Clock,
    audit: AuditTrail, pki: Pki, decisions: DecisionPoint, passphrase: bytes, *,
    reads_ahead: ReadsAhead = ReadAhead, sightings: SightingSink = NO_SIGHTINGS,
) -> AuthorizationServer:
    """Wire the OAuth2 authorization server (signing keys encrypted like the CA keys, or
    made in the issuing CA's PKCS#11 token if that holds its key; a batch's rows read
    ahead, ``fast.token_reads``, unless told otherwise; clients it does not know
    reported to ``sightings``)."""
    issuing_signer = pki.cas.issuing.signer
    vault = (Pkcs11KeyVault(issuing_signer.uri, pkcs11_config())
             if isinstance(issuing_signer, Pkcs11Signer) else None)
    keys = SigningKeys(database, clock, audit, passphrase, config, vault)
    scopes = ScopeGrant(decisions, clock)
    return AuthorizationServer(
        database, clock, audit, config, keys=keys,
        authenticator=ClientAuthenticator(
            config, pki,
            reads_ahead=reads_ahead, sightings=sightings),
        scopes=scopes,
        clients=OAuthClients(database, clock, audit, decisions, scopes),
        device_codes=DeviceCodes(database, clock, audit, config),
        introspection=Introspection(database, clock, audit, keys, config),
        revocation=TokenRevocation(database, clock, audit, keys, config),
    )
