"""The background jobs of ``serve``: which run where, and how they start and stop."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from expect import audit_records

from conftest import Installation
from iotiam import background
from iotiam.background import BackgroundJobs, Job
from iotiam.kernel import SYSTEM
from iotiam.response import scoring
from iotiam.risk.models import RiskFactor, Subject
from iotiam.serving import background_jobs, device_refreshers
from iotiam.storage.pg_leadership import TAKEOVER_SECONDS

#: rows an import request of the test sends, and how many requests
ROWS, REQUESTS = 400, 3


def test_jobs_ok_singletons_led_host_jobs_in_the_first_process(
        installation: Installation) -> None:
    services = installation.services
    other = background_jobs(services, first_process=False)
    singletons = ["crl-refresher", "audit-checkpoints", "trust-and-risk", "change-pruner",
                  "batch-pruner", "child-key-rotation", "activity-tally"]
    # each process delivers the feed, stores the sightings of its own traffic it queued
    # and samples its metrics into the files the scraped process sums
    assert [j.name for j in other.jobs if not j.singleton] == [
        "change-feed", "discovery-observer", "metrics-sampler"]
    assert [j.name for j in other.jobs if j.singleton] == singletons
    assert other.start_data_plane is None
    first = background_jobs(services, first_process=True)
    assert [j.name for j in first.jobs if not j.singleton] == [
        "change-feed", "discovery-observer", "metrics-sampler", "baseline-saver"]
    assert [j.name for j in first.jobs if j.singleton] == singletons
    assert first.start_data_plane is not None
    if services.database.is_sqlite:  # one host: the first process leads, the others never
        assert other.leadership.acquire("crl-refresher") is None
        assert first.leadership.acquire("crl-refresher") == 0
    else:  # replicas: whichever process takes a lock first, the others wait
        assert other.leadership.acquire("crl-refresher") == 0  # nobody led before
        assert first.leadership.acquire("crl-refresher") is None
        other.leadership.close()  # as if cut off: its term was never released
        assert first.leadership.acquire("crl-refresher") == TAKEOVER_SECONDS
        first.leadership.release("crl-refresher")
        assert other.leadership.acquire("crl-refresher") == 0
        other.leadership.close()
        first.leadership.close()


def test_jobs_ok_stop_ends_every_loop_then_runs_at_exit() -> None:
    happened: list[str] = []
    started = threading.Event()

    def loop(stop: threading.Event) -> None:
        started.set()
        stop.wait()
        happened.append("loop ended")

    stopped_plane: list[bool] = []
    jobs = BackgroundJobs([Job("loop", loop, at_exit=lambda: happened.append("at exit"))],
                          start_data_plane=lambda: lambda: stopped_plane.append(True))
    jobs.start()
    assert started.wait(5)
    jobs.stop()
    assert happened == ["loop ended", "at exit"]
    jobs.stop_data_plane()
    jobs.stop_data_plane()  # once only
    assert stopped_plane == [True]


def test_jobs_ok_with_an_event_stream_every_process_runs_a_detection_worker(
        installation: Installation) -> None:
    services = replace(installation.services, settings=replace(
        installation.services.settings, events_url="nats://127.0.0.1:4222"))
    other = background_jobs(services, first_process=False)
    assert [j.name for j in other.jobs][-1] == "detection-worker"
    first = [j.name for j in background_jobs(services, first_process=True).jobs]
    # the baselines are the workers' snapshots in the stream, not a file
    assert "detection-worker" in first and "baseline-saver" not in first


def wait_for(condition: object, seconds: float = 60.0) -> None:
    """Poll ``condition()`` until it holds (the jobs run in their own threads)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert condition(), "the background jobs did not get there in time"  # type: ignore[operator]


def test_jobs_ok_an_api_import_is_scored_and_judged_once_a_device(
        installation: Installation, monkeypatch: pytest.MonkeyPatch) -> None:
    # serve's trust refresher and risk register job, chained as background_jobs chains
    # them: every imported device gets a score and is judged, each exactly once (it was
    # judged twice: on the DeviceChanged and again on the TrustChanged of its new score)
    services = installation.services
    # a new device scores 80 (pending, no credential): under this threshold its entry
    # names its score, which a judgement made before the scoring could not
    services.risk.settings = replace(services.risk.settings, low_trust_below=90)
    # scoring that takes longer than the register waits for changes to settle (a busy
    # server): a register that judged on the device change judged before the score
    monkeypatch.setattr(scoring, "GATHER", 2 * background.RISK_SETTLE_SECONDS)
    trust, risk = device_refreshers(services)
    jobs = BackgroundJobs([Job("change-feed", services.changes.run),
                           Job("trust-and-risk", background.together(trust.run, risk.run))])
    jobs.start()
    try:
        # the job's first rebuild (of an empty fleet) is done before the import
        wait_for(lambda: services.risk.summary(SYSTEM).rebuilt_at is not None)
        api = installation.api()
        ids: list[str] = []
        for request in range(REQUESTS):
            rows = [{"row": n + 1, "data": {"id": f"imp-{request}-{n:04d}", "type": "sensor",
                                            "site": f"hall-{n % 4}"}} for n in range(ROWS)]
            answer = api.post("/v1/devices/import", json={"rows": rows})
            assert answer.status_code == 200 and answer.json()["imported"] == ROWS, answer.text
            ids += [r["data"]["id"] for r in rows]
        wait_for(lambda: trust.scored >= len(ids) and risk.judged >= len(ids))
        # a full trust pass reads the import's window back, and the register settles:
        # neither may take the devices again
        time.sleep(2 * 2.0 + background.RISK_SETTLE_SECONDS)
    finally:
        jobs.stop()
    assert (trust.scored, risk.judged) == (len(ids), len(ids))
    with services.database.reading() as uow:
        assert set(uow.trust.for_devices(ids)) == set(ids)
    # judged with the score stored: each device's entry is its low trust score
    judged = {e.subject_id: [(h.factor, h.evidence["score"]) for h in e.factors]
              for e in installation.risk_entries().values() if e.subject is Subject.DEVICE}
    assert all(judged.get(d) == [(RiskFactor.LOW_TRUST, 80)] for d in ids), judged
    # one audit record per request, naming its rows' digest
    records = [r for r in audit_records(api) if r["tag"] == "admin:device:imported"]
    assert [r["details"]["imported"] for r in records] == [ROWS] * REQUESTS
    assert all(len(r["details"]["rows_sha256"]) == 64 for r in records)
