"""What ``iotiam serve`` runs beside the requests: the background jobs and the data plane.

Composition level, like ``bootstrap.py`` (which builds the services these take): each
function here subscribes its job to the change feed and hands ``api/server.py`` what to
start and stop. Split from ``bootstrap.py`` when the risk register's job made it too long.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from iotiam.background import (
    BackgroundJobs,
    CrlRefresher,
    Job,
    RiskRefresher,
    baseline_saver,
    change_pruner,
    checkpoint_signer,
)
from iotiam.bootstrap import Services
from iotiam.broker.fleet import LiveFleet
from iotiam.broker.runtime import start_data_plane
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    ManufacturerTrustChanged,
    PolicyChanged,
    SightingsImported,
    TrustChanged,
)
from iotiam.response.scoring import Scored, TrustRefresher
from iotiam.storage.baseline_file import BaselineFile
from iotiam.storage.fleet_reads import SqlFleetReads

if TYPE_CHECKING:
    from iotiam.api.tls import ManufacturerTrust

log = logging.getLogger(__name__)


def broker_fleet(services: Services) -> LiveFleet:
    """The fleet as the broker sync sees it."""
    reads = SqlFleetReads(services.database, services.clock)
    return LiveFleet(services.database, services.clock, reads, services.pki, services.psks,
                     services.decisions, posture=reads)


#: what the broker sync acts on (``BrokerSync.follow``)
BROKER_FOLLOWS = (CertificateRevoked, CredentialRevoked, DeviceChanged, TrustChanged,
                  PolicyChanged)


def broker_plane(services: Services) -> Callable[[], None] | None:
    """Start the managed broker (or attach to an external one) and its sync, which
    follows the change feed from before its cold start; returns how to stop it."""
    before = services.changes.position
    plane = start_data_plane(broker_fleet(services), services.settings,
                             deliver=services.ingest.deliver)
    if plane is None:
        return None
    services.changes.subscribe(BROKER_FOLLOWS, plane.sync.follow, after=before)
    return plane.stop


def manufacturer_trust(services: Services) -> ManufacturerTrust:
    """The TLS trust store of device endpoints: every registered manufacturer CA, a new
    one as soon as it is registered in any process."""
    from iotiam.api.tls import ManufacturerTrust
    trust = ManufacturerTrust(services.manufacturers.trust_anchors)
    services.changes.subscribe((ManufacturerTrustChanged,), trust.anchors_changed)
    return trust


def background_jobs(services: Services, *, singletons: bool) -> BackgroundJobs:
    """Everything ``serve`` runs beside the requests in this process (``singletons``: the
    jobs only the first process runs too; ``iotiam.background``)."""
    settings = services.settings
    crls = CrlRefresher(services.pki)
    services.changes.subscribe((CertificateRevoked,), crls.revoked)
    jobs = [Job("change-feed", services.changes.run), Job("crl-refresher", crls.run),
            Job("discovery-observer", services.discovery.run_observer)]
    if not singletons:
        return BackgroundJobs(jobs)
    trust, risk = device_refreshers(services)
    return BackgroundJobs([
        *jobs,
        Job("audit-checkpoints", checkpoint_signer(
            services.checkpoints, settings.audit_checkpoint_records,
            settings.audit_checkpoint_seconds)),
        Job("trust-scores", trust.run),
        Job("baseline-saver", baseline_saver(lambda: save_baselines(services)),
            at_exit=lambda: save_baselines(services)),
        Job("change-pruner", change_pruner(services.changes, services.clock)),
        Job("risk-register", risk.run),
    ], start_data_plane=lambda: broker_plane(services))


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
