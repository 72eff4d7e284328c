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
from bisect import bisect_left
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


class RequestTimes:
    """Request latencies, counted in plain numbers by the serving thread and added to the
    shared histogram at each ``flush`` (``Metrics.sample``: every second and at a scrape).

    An observation of the multiprocess histogram writes its file under a lock twice
    (the sum and a bucket): ~6 µs a request with the middleware, a fifth of an OCSP
    answer's CPU in the process. Counting here costs a tenth of that.
    """

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        #: label values -> observations per bucket (the last one +Inf), then their sum
        self._pending: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        """One request of ``labels`` took ``seconds``."""
        bucket = bisect_left(LATENCY_BUCKETS, seconds)  # the first bound >= seconds: le
        with self._lock:
            row = self._pending.get(labels)
            if row is None:
                row = self._pending[labels] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            row[bucket] += 1
            row[-1] += seconds

    def flush(self) -> None:
        """Add what was counted since the last flush to the histogram."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for labels, row in pending.items():
            series = self._histogram.labels(*labels)
            # prometheus-client keeps a series as per-bucket values and a sum (it makes
            # them cumulative when collected); Histogram has no call to add many at once
            # (tests/unit/api/test_metrics.py holds this to what observe() would give)
            series._sum.inc(row[-1])
            for bucket, count in enumerate(row[:-1]):
                if count:
                    series._buckets[bucket].inc(count)


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
        #: what the request middleware counts into (``api/http_metrics.py``)
        self.requests = RequestTimes(self.http)
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def worst(name: str, doc: str, *labels: str) -> Gauge:
            # a gauge of each process's own view: the scrape shows the highest
            return Gauge(name, doc, labels, multiprocess_mode="livemax", registry=r)

        by_kind = ("kind", "outcome")
        self.issuance = counter("iotiam_issuance",
                                "Credentials issued or refused, by kind and audit outcome",
                                *by_kind)
        self.revocations = counter("iotiam_revocations",
                                   "Revocations done or refused, by kind and audit outcome",
                                   *by_kind)
        self.enrollments = counter("iotiam_enrollments",
                                   "Enrollment steps, by kind and audit outcome", *by_kind)
        self.findings = counter("iotiam_findings_raised",
                                "Findings stored, by type and severity", "type", "severity")
        self.audit_records = counter("iotiam_audit_records",
                                     "Audit records appended, by tag and outcome",
                                     "tag", "outcome")
        self.detection_events = counter(
            "iotiam_detection_events", "Detection events ingested (admitted) or rejected",
            "outcome")
        self.leader = Gauge(
            "iotiam_singleton_leader", "1 for each singleton job this process leads",
            ("job",), multiprocess_mode="liveall", registry=r)
        self.change_feed_behind = worst(
            "iotiam_change_feed_behind_changes",
            "Changes committed (newest id in the change table) not yet delivered here")
        self.change_feed_lag = worst(
            "iotiam_change_feed_lag_seconds",
            "Age of the oldest change committed but not yet delivered here (0: none)")
        self.change_feed_read = worst(
            "iotiam_change_feed_seconds_since_read",
            "Seconds since this process last read the change table (worst process)")
        self.broker_queue = worst("iotiam_broker_sync_queued_devices",
                                  "Devices queued for the broker sync's next pass")
        self.broker_lag = worst(
            "iotiam_broker_sync_oldest_queued_seconds",
            "Age of the oldest request waiting in the broker sync's queue (0: empty)")
        self.queue = worst("iotiam_queue_depth",
                           "Items waiting in a background queue, in its leader", "queue")
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
            self.requests.flush()
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
