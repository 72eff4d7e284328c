"""Prometheus metrics of ``iotiam serve``, summed over its worker processes.

An adapter, like ``storage``: no domain imports it (or ``prometheus_client``). What it
counts comes from three places, none of them an increment added to a domain's code:

- the audit trail hands every record it appends to ``Metrics.audited`` (issuance,
  revocation, enrollment, findings: each one is audited already, with its outcome);
- the HTTP middleware (``api/http_metrics.py``) times every request by route template;
- probes (``Metrics.watch``) read what a process already keeps (queues, the change
  feed's cursor, the singleton jobs it leads, the ingest counters) once a second and
  at every scrape.

``serve --workers N`` forks N processes on one listening socket, so a scrape reaches
any one of them. prometheus-client's multiprocess mode makes every process write its
values to memory-mapped files in one directory (``Settings.metrics_dir``, emptied at
start: ``share_between_processes``) and the process that is scraped sums them
(docs/observability.md says why this and not a label per worker).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from iotiam.audit.models import AuditRecord, AuditTag
from iotiam.config import export_prometheus_dir
from iotiam.errors import SetupError

log = logging.getLogger(__name__)

#: request latencies: OCSP and tokens answer in about a millisecond, signing in a few
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)

#: audit tags counted by a named metric: (metric, kind); the outcome is the record's
ISSUANCE: dict[str, str] = {
    AuditTag.CERTIFICATE_ISSUED: "certificate", AuditTag.CERTIFICATE_REFUSED: "certificate",
    AuditTag.PSK_ISSUED: "psk", AuditTag.PSK_ROTATED: "psk-rotation",
    AuditTag.OAUTH_TOKEN_ISSUED: "access-token", AuditTag.OAUTH_TOKEN_REFUSED: "access-token",
}
REVOCATION: dict[str, str] = {
    AuditTag.CERTIFICATE_REVOKED: "certificate", AuditTag.REVOCATION_REFUSED: "certificate",
    AuditTag.PSK_REVOKED: "psk", AuditTag.OAUTH_TOKEN_REVOKED: "access-token",
    AuditTag.OAUTH_CLIENT_REVOKED: "oauth-client", AuditTag.TOKEN_REVOKED: "admin-token",
}
ENROLLMENT: dict[str, str] = {
    AuditTag.ENROLLMENT_SUCCEEDED: "enrollment", AuditTag.ENROLLMENT_REFUSED: "enrollment",
    AuditTag.ENROLLMENT_HELD: "held-for-approval",
    AuditTag.ENROLLMENT_APPROVED: "approval", AuditTag.ENROLLMENT_REJECTED: "rejection",
    AuditTag.REENROLLMENT_SUCCEEDED: "reenrollment",
    AuditTag.REENROLLMENT_REFUSED: "reenrollment",
    AuditTag.RECOVERY_SUCCEEDED: "recovery", AuditTag.RECOVERY_REFUSED: "recovery",
}

#: a probe reads one part of the process into its gauges (``Metrics.watch``)
Probe = Callable[["Metrics"], None]


def share_between_processes(directory: Path) -> None:
    """Before any ``Metrics`` is built: keep the values in memory-mapped files under
    ``directory``, emptied now (what a previous run left would be summed in)."""
    if not directory.parent.is_dir():
        raise SetupError(f"{directory.parent} is not a data directory: run `iotiam init` "
                         "first")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700)
    export_prometheus_dir(directory)
    # prometheus-client picks its value class from the environment when it is first
    # imported; this module imported it before the directory was known
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class Metrics:
    """Every metric of one process; ``exposition`` answers a scrape."""

    def __init__(self, shared_dir: Path | None = None) -> None:
        #: the multiprocess directory (``share_between_processes``), or None: this
        #: process alone
        self.shared_dir = shared_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.http = Histogram(
            "iotiam_http_request_duration_seconds",
            "HTTP requests by listener, method, route template and status class",
            ("listener", "method", "route", "status"), buckets=LATENCY_BUCKETS, registry=r)
        self.issuance = Counter(
            "iotiam_issuance", "Credentials issued or refused, by kind and audit outcome",
            ("kind", "outcome"), registry=r)
        self.revocations = Counter(
            "iotiam_revocations", "Revocations done or refused, by kind and audit outcome",
            ("kind", "outcome"), registry=r)
        self.enrollments = Counter(
            "iotiam_enrollments", "Enrollment steps, by kind and audit outcome",
            ("kind", "outcome"), registry=r)
        self.findings = Counter(
            "iotiam_findings_raised", "Findings stored, by type and severity",
            ("type", "severity"), registry=r)
        self.audit_records = Counter(
            "iotiam_audit_records", "Audit records appended, by tag and outcome",
            ("tag", "outcome"), registry=r)
        self.detection_events = Counter(
            "iotiam_detection_events", "Detection events ingested (admitted) or rejected",
            ("outcome",), registry=r)
        self.leader = Gauge(
            "iotiam_singleton_leader", "1 for each singleton job this process leads",
            ("job",), multiprocess_mode="liveall", registry=r)
        self.change_feed_behind = Gauge(
            "iotiam_change_feed_behind_changes",
            "Changes committed (newest id in the change table) not yet delivered here",
            multiprocess_mode="livemax", registry=r)
        self.change_feed_lag = Gauge(
            "iotiam_change_feed_lag_seconds",
            "Age of the oldest change committed but not yet delivered here (0: none)",
            multiprocess_mode="livemax", registry=r)
        self.change_feed_read = Gauge(
            "iotiam_change_feed_seconds_since_read",
            "Seconds since this process last read the change table (worst process)",
            multiprocess_mode="livemax", registry=r)
        self.broker_queue = Gauge(
            "iotiam_broker_sync_queued_devices",
            "Devices queued for the broker sync's next pass",
            multiprocess_mode="livemax", registry=r)
        self.broker_lag = Gauge(
            "iotiam_broker_sync_oldest_queued_seconds",
            "Age of the oldest request waiting in the broker sync's queue (0: empty)",
            multiprocess_mode="livemax", registry=r)
        self.queue = Gauge(
            "iotiam_queue_depth", "Items waiting in a background queue, in its leader",
            ("queue",), multiprocess_mode="livemax", registry=r)
        self._probes: list[Probe] = []
        self._sampling = threading.Lock()
        self._ingest_seen = (0, 0)

    # -- what the audit trail appends ---------------------------------------------------

    def audited(self, records: Sequence[AuditRecord]) -> None:
        """Count appended audit records (``AuditTrail``'s observer)."""
        for record in records:
            tag, outcome = record.tag, record.outcome
            self.audit_records.labels(tag, outcome).inc()
            if (kind := ISSUANCE.get(tag)) is not None:
                self.issuance.labels(kind, outcome).inc()
            elif (kind := REVOCATION.get(tag)) is not None:
                self.revocations.labels(kind, outcome).inc()
            elif (kind := ENROLLMENT.get(tag)) is not None:
                self.enrollments.labels(kind, outcome).inc()
            elif tag == AuditTag.FINDING_RAISED:
                details = record.details
                self.findings.labels(str(details.get("type", "unknown")),
                                     str(details.get("severity", "unknown"))).inc()

    def ingested(self, admitted: int, rejected: int) -> None:
        """The event pipeline's running totals: counted from their last reading."""
        before = self._ingest_seen
        self._ingest_seen = (admitted, rejected)
        self.detection_events.labels("admitted").inc(max(0, admitted - before[0]))
        self.detection_events.labels("rejected").inc(max(0, rejected - before[1]))

    # -- probes -------------------------------------------------------------------------

    def watch(self, probe: Probe) -> None:
        """Run ``probe`` at every ``sample``."""
        with self._sampling:
            self._probes.append(probe)

    def sample(self) -> None:
        """Run every probe (a failing one is logged and skipped: a scrape still answers)."""
        with self._sampling:
            for probe in self._probes:
                try:
                    probe(self)
                except Exception as e:
                    log.warning("metrics probe %s failed: %s",
                                getattr(probe, "__name__", probe), e)

    def sampler(self, every_seconds: float = 1.0) -> Callable[[threading.Event], None]:
        """A background loop sampling this process (its gauges reach the other
        processes' scrapes through the shared files)."""
        def run(stop: threading.Event) -> None:
            while not stop.wait(every_seconds):
                self.sample()
        return run

    # -- a scrape ----------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format of every process's metrics, and its media type."""
        self.sample()
        if self.shared_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self.shared_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST
