"""The risk job: changes queue devices, the loop rebuilds on schedule and refreshes them."""

from __future__ import annotations

import threading
import time

import pytest

from iotiam import background
from iotiam.background import RiskRefresher
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    PolicyChanged,
    Published,
    SightingsImported,
    TrustChanged,
)
from iotiam.response.models import TrustScore

from .facts import device


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.done = threading.Event()

    def rebuild(self) -> None:
        self.calls.append(("rebuild", ()))

    def refresh_devices(self, device_ids: list[str], scored: object = None) -> int:
        self.calls.append(("refresh", tuple(device_ids)))
        self.done.set()
        return 0

    def expire_acceptances(self) -> int:
        return 0


def test_ok_changes_queue_their_devices_once() -> None:
    job = RiskRefresher(Recorder())  # type: ignore[arg-type]
    for position, change in enumerate([
            TrustChanged(("d2", "d4")), TrustChanged(("d2",)), PolicyChanged()]):
        job.changed(Published(position, change))
    job.queue(["d1", "d2"])  # the trust refresher's hand-off
    assert job.take() == ["d1", "d2", "d4"]
    assert job.take() == []


def test_ok_the_hand_off_carries_what_was_stored_and_a_read_stays_a_read() -> None:
    job = RiskRefresher(Recorder())  # type: ignore[arg-type]
    old, new = device("d1", updated_days=1), device("d1", updated_days=0)
    job.queue(["d1", "d2"], {"d1": old}, {"d1": TrustScore("d1", 90)})
    job.queue(["d1"], {"d1": new}, {"d1": TrustScore("d1", 40)})  # newer: replaces
    job.changed(Published(1, TrustChanged(("d3",))))  # a finding's rescore: read it
    job.queue(["d3"], {"d3": device("d3")}, {"d3": TrustScore("d3", 80)})
    assert job.take_scored() == {"d1": (new, TrustScore("d1", 40)), "d2": None, "d3": None}
    assert job.take_scored() == {}


def test_ok_what_the_trust_refresher_scored_comes_by_its_hand_off_only() -> None:
    # a device change or a revocation is judged once its new score is stored: the trust
    # refresher hands the device over, and its own TrustChanged would judge it twice
    job = RiskRefresher(Recorder())  # type: ignore[arg-type]
    for position, change in enumerate([
            DeviceChanged(("d1",)), TrustChanged(("d1",), refreshed=True),
            CertificateRevoked(serial=1, issuer_id="i", device_id="d3"),
            CredentialRevoked(kind="psk", credential_id="p", device_id="d3")]):
        job.changed(Published(position, change))
    assert job.take() == []


def test_ok_run_rebuilds_first_then_refreshes_queued_devices() -> None:
    recorder = Recorder()
    job = RiskRefresher(recorder, every_seconds=3600)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not recorder.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        job.changed(Published(1, TrustChanged(("d9",))))
        assert recorder.done.wait(5)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert recorder.calls[0] == ("rebuild", ())
    assert ("refresh", ("d9",)) in recorder.calls


def test_ok_an_import_brings_the_next_rebuild_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "RISK_AFTER_IMPORT_SECONDS", 0.2)
    recorder = Recorder()
    job = RiskRefresher(recorder, every_seconds=3600)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not recorder.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.calls == [("rebuild", ())]
        job.changed(Published(1, SightingsImported("/root/", 3)))
        deadline = time.monotonic() + 5
        while len(recorder.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)
    # the scheduled rebuild was an hour away: the import brought it to within a second
    assert recorder.calls[:2] == [("rebuild", ()), ("rebuild", ())]
    assert job.take() == []
