"""The background jobs of ``serve``: which run where, and how they start and stop."""

from __future__ import annotations

import threading
from dataclasses import replace

from conftest import Installation
from iotiam.background import BackgroundJobs, Job
from iotiam.serving import background_jobs


def test_jobs_ok_singletons_led_host_jobs_in_the_first_process(
        installation: Installation) -> None:
    services = installation.services
    other = background_jobs(services, first_process=False)
    singletons = ["crl-refresher", "audit-checkpoints", "trust-scores", "change-pruner",
                  "risk-register"]
    # each process delivers the feed and stores the sightings of its own traffic it queued
    assert [j.name for j in other.jobs if not j.singleton] == ["change-feed",
                                                               "discovery-observer"]
    assert [j.name for j in other.jobs if j.singleton] == singletons
    assert other.start_data_plane is None
    first = background_jobs(services, first_process=True)
    assert [j.name for j in first.jobs if not j.singleton] == [
        "change-feed", "discovery-observer", "baseline-saver"]
    assert [j.name for j in first.jobs if j.singleton] == singletons
    assert first.start_data_plane is not None
    if services.database.is_sqlite:  # one host: the first process leads, the others never
        assert not other.leadership.acquire("crl-refresher")
        assert first.leadership.acquire("crl-refresher")
    else:  # replicas: whichever process takes a lock first, the others wait
        assert other.leadership.acquire("crl-refresher")
        assert not first.leadership.acquire("crl-refresher")
        other.leadership.close()
        assert first.leadership.acquire("crl-refresher")
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
