"""What ``iotiam serve`` runs beside the requests: the background jobs and the data plane.

Composition level, like ``bootstrap.py`` (which builds the services these take): each
function here subscribes its job to the change feed and hands ``api/server.py`` what to
start and stop. Split from ``bootstrap.py`` when the risk register's job made it too long.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.background import (
    CHANGE_RETENTION,
    BackgroundJobs,
    CrlRefresher,
    Job,
    RiskRefresher,
    Waker,
    baseline_saver,
    checkpoint_signer,
    pruner,
    together,
)
from iotiam.bootstrap import Services
from iotiam.broker.event_source import LoggedSessions
from iotiam.broker.fleet import LiveFleet
from iotiam.broker.plugin_plane import PdpAnswers
from iotiam.broker.runtime import start_data_plane
from iotiam.broker.sync import BrokerSync
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    IssuingCasChanged,
    ManufacturerTrustChanged,
    PolicyChanged,
    Published,
    SightingsImported,
    TrustChanged,
)
from iotiam.config import ca_passphrase
from iotiam.election import FixedLeadership, Leadership
from iotiam.eventstream.worker import DetectionWorker
from iotiam.gateways.reports import GatewayReports
from iotiam.gateways.rotation import GATEWAY_REVOKED, SCHEDULED
from iotiam.kernel import ROOT_PATH, SYSTEM
from iotiam.metrics import Metrics
from iotiam.readiness import Draining, Status
from iotiam.response.scoring import Scored, TrustRefresher
from iotiam.server_certificate import ServerCertificate
from iotiam.storage.baseline_file import BaselineFile
from iotiam.storage.change_table import feed_backlog
from iotiam.storage.fleet_reads import SqlFleetReads

if TYPE_CHECKING:
    from iotiam.api.tls import ManufacturerTrust

log = logging.getLogger(__name__)

#: how often the tally job counts the audit records added since its last pass
ACTIVITY_TALLY_SECONDS = 20.0


def broker_fleet(services: Services) -> LiveFleet:
    """The fleet as the broker sync sees it."""
    reads = SqlFleetReads(services.database, services.clock)
    return LiveFleet(services.database, services.clock, reads, services.pki, services.psks,
                     services.decisions, posture=reads,
                     children_direct=services.settings.child_psk_direct)


#: what the broker sync acts on (``BrokerSync.follow``)
BROKER_FOLLOWS = (CertificateRevoked, CredentialRevoked, DeviceChanged, TrustChanged,
                  PolicyChanged)


def broker_plane(services: Services) -> Callable[[], None] | None:
    """Start the managed broker (or attach to an external one) and its sync, which
    follows the change feed from before its cold start; returns how to stop it."""
    before = services.changes.position
    plane = start_data_plane(broker_fleet(services), services.settings,
                             deliver=services.ingest.deliver,
                             answers=PdpAnswers(services.subjects, services.decisions,
                                                services.gateways),
                             certified=broker_certified(services),
                             reports=GatewayReports(services.gateways, services.ingest))
    if plane is None:
        return None
    services.changes.subscribe(BROKER_FOLLOWS, plane.sync.follow, after=before)
    if plane.events is not None and services.revocation_sets is not None:
        # a set revocation's dry run counts the sessions that would drop
        services.revocation_sets.sessions = LoggedSessions(plane.events)
        if services.ca_rotation is not None:  # and an issuing CA's revocation too
            services.ca_rotation.sessions = services.revocation_sets.sessions
    if isinstance(sync := plane.sync, BrokerSync):
        def broker_backlog(metrics: Metrics) -> None:
            queued, oldest = sync.backlog()
            metrics.broker_queue.set(queued)
            metrics.broker_lag.set(oldest)
        services.metrics.watch(broker_backlog)
    if (broker := plane.broker) is not None:
        services.readiness.add("broker", lambda: Status(
            broker.pid is not None,
            f"mosquitto runs (pid {broker.pid})" if broker.pid else "mosquitto is not running"))
    return plane.stop


def broker_certified(services: Services) -> Callable[[], None]:
    """Audits a new certificate of the managed broker (``broker.runtime``): made, with a
    new key, when the issuing CA that signed the old one was rotated out or revoked."""
    def certified() -> None:
        issuer_id = services.pki.cas.issuing_id
        services.audit.record(AuditDraft(
            tag=AuditTag.BROKER_CERTIFICATE_REISSUED, actor=SYSTEM.name, org_path=ROOT_PATH,
            subject="server:broker", details={"issuer": issuer_id}))
        log.warning("broker TLS certificate re-issued under %s", issuer_id)
    return certified


def server_certificate(services: Services, *, first_process: bool,
                       serving: bytes | None = None, follow: bool = True) -> ServerCertificate:
    """The API's own certificate follows the active issuing CA (``server_certificate``);
    the first process of ``serve --workers`` makes the new one, every process loads it
    (``follow``: from the change feed)."""
    own = ServerCertificate(services.settings, services.database, lambda: services.pki.cas,
                            ca_passphrase(services.settings, create=False), services.clock,
                            services.audit, reissues=first_process, serving=serving)
    if follow:
        services.changes.subscribe((IssuingCasChanged,), own.cas_changed)
    return own


def manufacturer_trust(services: Services) -> ManufacturerTrust:
    """The TLS trust store of device endpoints: every registered manufacturer CA, a new
    one as soon as it is registered in any process, and a rotated-in issuing CA as soon
    as it is made (docs/ca-rotation.md)."""
    from iotiam.api.tls import ManufacturerTrust

    def anchors() -> list[str]:
        issuing = [c.public_bytes(serialization.Encoding.PEM).decode()
                   for c in services.pki.cas.trusted_certificates()]
        return [*services.manufacturers.trust_anchors(), *issuing]

    trust = ManufacturerTrust(anchors)
    # follow_changes subscribed the PKI first: it has loaded the new CAs when this runs
    services.changes.subscribe((ManufacturerTrustChanged, IssuingCasChanged),
                               trust.anchors_changed)
    return trust


def background_jobs(services: Services, *, first_process: bool) -> BackgroundJobs:
    """Everything ``serve`` runs beside the requests in this process (``first_process``:
    the first of ``serve --workers``, which also runs its host's broker and saves the
    baselines; singleton jobs are run by their leader, ``iotiam.background``)."""
    settings = services.settings
    crls = CrlRefresher(services.pki)
    services.changes.subscribe((CertificateRevoked,), crls.revoked)
    trust, risk = device_refreshers(services)
    # every process queues what the singletons must catch up with: the one that takes
    # a job over after a leader died has the changes it missed
    singletons = [
        Job("crl-refresher", crls.run, singleton=True),
        Job("audit-checkpoints", checkpoint_signer(
            services.checkpoints, settings.audit_checkpoint_records,
            settings.audit_checkpoint_seconds), singleton=True),
        # one lock for both: the register judges what the trust refresher hands over
        Job("trust-and-risk", together(trust.run, risk.run), singleton=True),
        Job("change-pruner", pruner("the change table", lambda: services.changes.prune(
            CHANGE_RETENTION, services.clock.now())), singleton=True),
        Job("batch-pruner", pruner("event uploads", services.response.prune_batches),
            singleton=True),
        Job("child-key-rotation", child_key_rotation(services).run, singleton=True),
        # the overview's daily enrollments and revocations, from the audit log
        Job("activity-tally", Waker("activity tally", services.activity.catch_up,
                                    ACTIVITY_TALLY_SECONDS).run, singleton=True),
    ]
    jobs = [Job("change-feed", services.changes.run),
            Job("discovery-observer", services.discovery.run_observer),
            Job("metrics-sampler", services.metrics.sampler()), *singletons]
    stream = settings.event_stream
    if stream is not None:
        # every process takes its share of the stream's partitions (docs/event-stream.md)
        worker = DetectionWorker(stream, services.response, modes=services.response,
                                 zones=services.zones,
                                 learning_seconds=settings.detection_learning_seconds)
        jobs.append(Job("detection-worker", worker.run))
        services.readiness.add("stream", worker.readiness)
    leadership = singleton_leadership(services, first_process=first_process)
    if not first_process:
        background = BackgroundJobs(jobs, leadership=leadership)
    else:
        savers = [] if stream is not None else [  # with a stream: the workers' snapshots
            Job("baseline-saver", baseline_saver(lambda: save_baselines(services)),
                at_exit=lambda: save_baselines(services))]
        background = BackgroundJobs([*jobs, *savers],
                                    start_data_plane=lambda: broker_plane(services),
                                    leadership=leadership)
    watch_background(services, background, trust, risk)
    return background


def child_key_rotation(services: Services) -> Waker:
    """The job re-keying gateways' children on schedule and at once after their
    gateway's revocation (``gateways.rotation``); a revocation or a state change wakes it."""
    settings = services.settings
    period = timedelta(days=settings.child_psk_rotation_days) \
        if settings.child_psk_rotation_days else None
    overlap = timedelta(hours=settings.child_psk_overlap_hours) \
        if settings.child_psk_overlap_hours else None

    def rotate() -> None:
        report = services.gateways.rotate_child_keys(period, overlap)
        if report.rotated:
            log.info("re-keyed %d gateway child(ren): %d after their gateway's revocation, "
                     "%d on schedule", len(report.rotated),
                     report.count(GATEWAY_REVOKED), report.count(SCHEDULED))

    waker = Waker("child key rotation", rotate, settings.child_psk_check_seconds)

    def changed(published: Published) -> None:
        change = published.change
        if isinstance(change, CertificateRevoked) or (
                isinstance(change, DeviceChanged) and change.state is not None):
            waker.wake()
    services.changes.subscribe((CertificateRevoked, DeviceChanged), changed)
    return waker


def watch_background(services: Services, background: BackgroundJobs,
                     trust: TrustRefresher, risk: RiskRefresher) -> None:
    """The metrics probes of this process: the singleton jobs it leads, the queues of
    those it leads, its change feed's backlog, the events it ingested."""
    singletons = sorted(job.name for job in background.jobs if job.singleton)

    def leadership(metrics: Metrics) -> None:
        leading = set(background.elector.leading())
        for name in singletons:
            metrics.leader.labels(name).set(1 if name in leading else 0)
        # every process queues for the singletons; the leader's queue is the one worked
        leads = "trust-and-risk" in leading
        metrics.queue.labels("trust-refresher").set(trust.queued() if leads else 0)
        metrics.queue.labels("risk-register").set(risk.queued() if leads else 0)

    def change_feed(metrics: Metrics) -> None:
        feed = services.changes
        with services.database.reading() as uow:
            newest, oldest = feed_backlog(uow.conn, feed.position)
        metrics.change_feed_behind.set(max(0, newest - feed.position))
        # the change table records the wall clock's time (storage/change_table.py)
        metrics.change_feed_lag.set(0 if oldest is None else max(
            0.0, (datetime.now(UTC) - oldest).total_seconds()))
        metrics.change_feed_read.set(feed.seconds_since_read())

    def ingest(metrics: Metrics) -> None:
        metrics.ingested(services.ingest.events_seen, services.ingest.events_rejected)

    for probe in (leadership, change_feed, ingest):
        services.metrics.watch(probe)


def singleton_leadership(services: Services, *, first_process: bool) -> Leadership:
    """Advisory locks on PostgreSQL (replicas on several hosts); on SQLite (one host)
    the first process leads, as before replicas existed."""
    if services.database.is_sqlite:
        return FixedLeadership(leads=first_process)
    from iotiam.storage.pg_leadership import AdvisoryLocks  # psycopg: PostgreSQL only
    return AdvisoryLocks(services.database)


#: a change feed that has not read the table for this long leaves the replica's caches
#: behind the others': not ready (the PostgreSQL listener reads at least every second)
FEED_LAG_SECONDS = 5.0


def readiness_checks(services: Services, jobs: BackgroundJobs, draining: Draining) -> None:
    """Register what ``/readyz`` checks in this process (the broker's check comes with
    the broker, ``broker_plane``)."""
    def database() -> Status:
        with services.database.reading() as uow:
            uow.counters.current("healthz")
        return Status(True, "answers")

    def change_feed() -> Status:
        lag = services.changes.seconds_since_read()
        return Status(lag < FEED_LAG_SECONDS, f"read {lag:.1f} s ago",
                      {"seconds_since_read": round(lag, 3)})

    def singletons() -> Status:
        leading = jobs.elector.leading()
        return Status(True, f"leads {', '.join(leading) or 'no singleton job'}",
                      {"leading": leading})

    readiness = services.readiness
    readiness.add("draining", draining)
    readiness.add("database", database)
    readiness.add("change-feed", change_feed)
    readiness.add("singletons", singletons)


def save_baselines(services: Services) -> None:
    """Write the detection engine's baselines to the data directory."""
    BaselineFile(services.settings.baselines_file).save(services.ingest.engine.snapshot())


def device_refreshers(services: Services) -> tuple[TrustRefresher, RiskRefresher]:
    """The trust refresher and the risk register's job, chained: the register judges what
    the refresher scored once it is scored (a changed device is judged once, with its new
    score; ``RiskRefresher``)."""
    risk = risk_refresher(services)
    return trust_scores_refresher(services, then=risk.queue), risk


def trust_scores_refresher(services: Services, *, then: Scored | None = None
                           ) -> TrustRefresher:
    """Rescoring of devices whose record, credentials or firmware verdict changed; ``then``
    is handed the devices each pass scored."""
    refresher = TrustRefresher(services.trust, SqlFleetReads(services.database, services.clock),
                               services.clock, then=then)
    services.changes.subscribe((CertificateRevoked, CredentialRevoked, DeviceChanged),
                               refresher.rescore_later)
    return refresher


#: what changes send a device's risk entries (an import: the register) to be judged
#: again; a device change or a revocation reaches the register through the trust
#: refresher's hand-off (``background_jobs``), once the device's score is stored
RISK_FOLLOWS = (TrustChanged, SightingsImported)


def risk_refresher(services: Services) -> RiskRefresher:
    """The register judged again for each device a finding rescored, each device the
    trust refresher hands over, and in full on a schedule (a singleton: the rebuild
    writes the whole register)."""
    refresher = RiskRefresher(services.risk)
    services.changes.subscribe(RISK_FOLLOWS, refresher.changed)
    return refresher
