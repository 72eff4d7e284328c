"""``GET /metrics``: each value moves when the thing it counts happens, routes are
labelled by template (never a device id), and the probes read the process's queues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient
from fleet import add_device, certificate_of, issue, revoke
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from conftest import Installation
from iotiam.audit.models import AuditRecord, AuditTag
from iotiam.detection.models import Finding, FindingType, Severity
from iotiam.metrics import Metrics
from iotiam.serving import background_jobs
from iotiam.storage.tables.changes import changes
from iotiam.testing import make_csr

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(public: TestClient) -> Samples:
    """Every sample of one scrape, by name and labels."""
    answer = public.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value (0 when it was never set)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, route: str, method: str = "GET", status: str = "2xx",
             listener: str = "api") -> float:
    return value(samples, "iotiam_http_request_duration_seconds_count", listener=listener,
                 method=method, route=route, status=status)


def test_metrics_ok_issuance_and_revocation_counted(installation: Installation) -> None:
    api, public = installation.api(), installation.public()
    add_device(api, "meter-7")
    before = scrape(public)
    issued = issue(api, "meter-7")
    refused = api.post("/v1/certificates", json={
        "device": "meter-7", "csr": make_csr(None, dns_names=("meter-7",)).decode()})
    assert refused.status_code == 400
    revoke(api, issued["serial"])
    after = scrape(public)
    for name, labels, moved in [
            ("iotiam_issuance_total", {"kind": "certificate", "outcome": "success"}, 1),
            ("iotiam_issuance_total", {"kind": "certificate", "outcome": "failure"}, 1),
            ("iotiam_revocations_total", {"kind": "certificate", "outcome": "success"}, 1),
            ("iotiam_audit_records_total",
             {"tag": "device:certificate:revoked", "outcome": "success"}, 1)]:
        assert value(after, name, **labels) - value(before, name, **labels) == moved, name
    assert requests(after, "/v1/certificates", "POST") - \
        requests(before, "/v1/certificates", "POST") == 1
    assert requests(after, "/v1/certificates", "POST", "4xx") - \
        requests(before, "/v1/certificates", "POST", "4xx") == 1


def test_metrics_ok_routes_by_template_never_by_path(installation: Installation) -> None:
    api, public = installation.api(), installation.public()
    add_device(api, "secret-device-42")
    assert api.get("/v1/devices/secret-device-42").status_code == 200
    assert api.head("/v1/devices/secret-device-42").status_code == 200
    assert api.get("/v1/devices/no-such-device-99").status_code == 404
    assert api.get("/no/such/path/secret-device-42").status_code == 404
    assert api.get("/console/devices/secret-device-42").status_code in (200, 303, 401)
    exposition = public.get("/metrics").text
    assert "secret-device-42" not in exposition and "no-such-device-99" not in exposition
    samples = scrape(public)
    routes = {dict(labels).get("route") for _, labels in samples} - {None}
    assert "/v1/devices/{device_id}" in routes, routes
    assert requests(samples, "/v1/devices/{device_id}") == 1
    assert requests(samples, "/v1/devices/{device_id}", "HEAD") == 1
    assert requests(samples, "/v1/devices/{device_id}", status="4xx") == 1
    assert requests(samples, "unmatched", status="4xx") == 1
    assert any(r.startswith("/console/") and "{" in r for r in routes), routes


def test_metrics_ok_ocsp_counted_on_each_listener(installation: Installation) -> None:
    services, api, public = installation.services, installation.api(), installation.public()
    add_device(api, "d1")
    certificate = certificate_of(issue(api, "d1"))
    request = ocsp.OCSPRequestBuilder().add_certificate(
        certificate, services.pki.cas.issuing.certificate, hashes.SHA256()
    ).build().public_bytes(Encoding.DER)
    for _ in range(3):
        answer = public.post("/ocsp", content=request,
                             headers={"content-type": "application/ocsp-request"})
        assert answer.status_code == 200
    assert api.get("/ocsp/not-base64!").status_code == 200  # malformedRequest, still 200
    samples = scrape(public)
    assert requests(samples, "/ocsp", "POST", listener="public") == 3
    assert requests(samples, "/ocsp/{request}", listener="api") == 1


def test_metrics_ok_findings_by_type(installation: Installation) -> None:
    api, public = installation.api(), installation.public()
    add_device(api, "s1")
    before = scrape(public)
    installation.services.response.handle([Finding(
        type=FindingType.RATE_CHANGE, severity=Severity.HIGH, at=1_772_366_400.0,
        device_id="s1", summary="rate", detector="test", evidence={})])
    after = scrape(public)
    labels = {"type": str(FindingType.RATE_CHANGE), "severity": Severity.HIGH.label}
    assert value(after, "iotiam_findings_raised_total", **labels) - \
        value(before, "iotiam_findings_raised_total", **labels) == 1


def test_metrics_ok_probes_leadership_and_change_feed_lag(installation: Installation) -> None:
    services, public = installation.services, installation.public()
    background_jobs(services, first_process=True)  # registers the probes; nothing started
    samples = scrape(public)
    for job in ("crl-refresher", "audit-checkpoints", "trust-and-risk", "change-pruner",
                "batch-pruner", "child-key-rotation", "activity-tally"):
        assert ("iotiam_singleton_leader", frozenset({("job", job)})) in samples, job
        assert value(samples, "iotiam_singleton_leader", job=job) == 0  # not started
    assert value(samples, "iotiam_change_feed_behind_changes") == 0
    assert value(samples, "iotiam_change_feed_lag_seconds") == 0
    # another process commits a change this one has not read yet
    recorded = datetime.now(UTC) - timedelta(seconds=30)  # the table keeps wall time
    with services.database.engine.begin() as conn:
        conn.execute(insert(changes).values(kind="policy-changed", body="{}",
                                            recorded_at=recorded))
    samples = scrape(public)
    assert value(samples, "iotiam_change_feed_behind_changes") == 1
    lag = value(samples, "iotiam_change_feed_lag_seconds")
    assert 30 <= lag < 90
    services.changes.deliver_pending()
    samples = scrape(public)
    assert value(samples, "iotiam_change_feed_behind_changes") == 0
    assert value(samples, "iotiam_change_feed_lag_seconds") == 0


def test_metrics_ok_a_failing_probe_leaves_the_scrape_answering(
        installation: Installation) -> None:
    def broken(_: object) -> None:
        raise OSError("gone")

    installation.services.metrics.watch(broken)
    assert installation.public().get("/metrics").status_code == 200


def test_metrics_ok_only_on_the_public_listener(installation: Installation) -> None:
    assert installation.api().get("/metrics").status_code == 404
    answer = installation.public().get("/metrics")
    assert answer.headers["cache-control"] == "no-store"
    assert "# TYPE iotiam_issuance_total counter" in answer.text


def test_request_times_ok_flush_equals_observing_each() -> None:
    """The middleware's counts reach the histogram as observe() would have put them
    (``RequestTimes.flush`` writes prometheus-client's series itself)."""
    counted, observed = Metrics(), Metrics()
    labels = ("public", "POST", "/ocsp", "2xx")

    def samples(metrics: Metrics) -> Samples:
        body = metrics.exposition()[0].decode()
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(body)
                for s in family.samples if not s.name.endswith("_created")}

    for durations in ([0.0004, 0.001, 0.0011, 0.003, 0.2, 0.2, 7.0, 42.0], [0.5]):
        for seconds in durations:
            counted.requests.observe(labels, seconds)
            observed.http.labels(*labels).observe(seconds)
        assert samples(counted) == samples(observed)
    assert value(samples(counted), "iotiam_http_request_duration_seconds_count",
                 listener="public", method="POST", route="/ocsp", status="2xx") == 9


def test_audited_ok_each_mapped_tag_counts_once_by_kind_and_outcome() -> None:
    """Every audit tag the metrics name lands in its counter, with the record's outcome
    (enrollment, PSKs and tokens here; the API tests above drive certificates)."""
    metrics = Metrics()

    def record(tag: str, outcome: str = "success") -> AuditRecord:
        return AuditRecord(seq=1, at=datetime.now(UTC), tag=tag, actor="test", org_path="/",
                           subject="device:d1", outcome=outcome, reason=None, details={},
                           prev_hash="", hash="")

    metrics.audited([record(AuditTag.ENROLLMENT_SUCCEEDED),
                     record(AuditTag.ENROLLMENT_REFUSED, "denied"),
                     record(AuditTag.ENROLLMENT_HELD),
                     record(AuditTag.PSK_ISSUED), record(AuditTag.PSK_REVOKED),
                     record(AuditTag.OAUTH_TOKEN_ISSUED), record(AuditTag.OAUTH_TOKEN_ISSUED),
                     record(AuditTag.OAUTH_TOKEN_REFUSED, "failure"),
                     record(AuditTag.SITE_SAVED)])
    body = metrics.exposition()[0].decode()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    for name, labels, expected in [
            ("iotiam_enrollments_total", {"kind": "enrollment", "outcome": "success"}, 1),
            ("iotiam_enrollments_total", {"kind": "enrollment", "outcome": "denied"}, 1),
            ("iotiam_enrollments_total",
             {"kind": "held-for-approval", "outcome": "success"}, 1),
            ("iotiam_issuance_total", {"kind": "psk", "outcome": "success"}, 1),
            ("iotiam_revocations_total", {"kind": "psk", "outcome": "success"}, 1),
            ("iotiam_issuance_total", {"kind": "access-token", "outcome": "success"}, 2),
            ("iotiam_issuance_total", {"kind": "access-token", "outcome": "failure"}, 1),
            ("iotiam_audit_records_total",
             {"tag": "admin:site:saved", "outcome": "success"}, 1)]:
        assert value(samples, name, **labels) == expected, (name, labels)
