"""Revoke → every consumer, driven by the change feed (the wiring in ``bootstrap.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from fleet import add_device, certificate_of, issue, revoke

from conftest import Installation
from iotiam.background import CrlRefresher
from iotiam.bootstrap import build_services
from iotiam.broker.layout import BrokerFiles
from iotiam.broker.sync import BrokerSync
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    PolicyChanged,
    Published,
)
from iotiam.clock import FrozenClock
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.models import DetectionMode
from iotiam.inventory.models import DeviceState
from iotiam.kernel import SYSTEM
from iotiam.serving import BROKER_FOLLOWS, background_jobs


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_revoke_ok_crl_refresher_woken_by_the_feed(installation: Installation) -> None:
    """The refresher would sleep 30 s: the revocation wakes it, and the CRL lists it."""
    services = installation.services
    api = installation.api()
    add_device(api, "d1")
    serial = int(issue(api, "d1")["serial"], 16)
    (job,) = [j for j in background_jobs(services, first_process=False).jobs
              if j.name == "crl-refresher"]
    assert isinstance(getattr(job.run, "__self__", None), CrlRefresher)
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    thread.start()
    issuing = services.pki.cas.issuing_id

    def listed() -> bool:
        with services.database.reading() as uow:
            stored = uow.crls.latest(issuing)
        crl = x509.load_der_x509_crl(stored.der) if stored is not None else None
        return crl is not None and crl.get_revoked_certificate_by_serial_number(serial) \
            is not None

    try:
        assert _until(lambda: services.pki.crl_version(issuing)[0] > 0)
        revoke(api, f"{serial:x}")
        assert _until(listed, seconds=5.0), "the revocation did not reach the CRL"
    finally:
        stop.set()
        thread.join(10)


def test_revoke_ok_subject_cache_drops_the_device_at_once(installation: Installation) -> None:
    services = installation.services
    api = installation.api()
    add_device(api, "d1")
    add_device(api, "d2")
    serial = issue(api, "d1")["serial"]
    issue(api, "d2")
    # the activations (pending -> active) may still be on their way from the issuing
    # thread: deliver them until both devices are seen credentialed, so that what
    # follows sees only the revocation's effect
    def activated() -> bool:
        services.changes.deliver_pending()
        return all((subject := services.subjects.cached(device)) is not None
                   and subject.credentialed for device in ("d1", "d2"))

    assert _until(activated)
    first, other = services.subjects.cached("d1"), services.subjects.cached("d2")
    assert first is not None
    revoke(api, serial)
    again = services.subjects.cached("d1")
    assert again is not None and again is not first and again.credentialed is False
    assert services.subjects.cached("d2") is other


def test_revoke_ok_ocsp_cache_forgets_the_serial(installation: Installation) -> None:
    services = installation.services
    api = installation.api()
    add_device(api, "d1")
    issued = issue(api, "d1")
    request = ocsp.OCSPRequestBuilder().add_certificate(
        certificate_of(issued), services.pki.cas.issuing.certificate, hashes.SHA256()
    ).build().public_bytes(Encoding.DER)
    good = ocsp.load_der_ocsp_response(services.pki.ocsp_response(request))
    assert good.certificate_status is ocsp.OCSPCertStatus.GOOD
    cached = services.pki._ocsp[0][1]._cache  # the active CA responder's cache, from outside
    assert ("sha256", good.serial_number) in cached
    revoke(api, issued["serial"])
    assert ("sha256", good.serial_number) not in cached
    revoked = ocsp.load_der_ocsp_response(services.pki.ocsp_response(request))
    assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED


def test_revoke_ok_broker_sync_kicks_through_the_feed(installation: Installation,
                                                      tmp_path: Path) -> None:
    """The sync subscribes from a position read before its cold start: a revocation in
    between is not lost; the kick wakes its loop."""
    services = installation.services
    api = installation.api()
    add_device(api, "d1")
    serial = issue(api, "d1")["serial"]
    before = services.changes.position
    revoke(api, serial)  # while the sync was being built
    sync = BrokerSync(None, installation.clock, BrokerFiles(tmp_path),  # type: ignore[arg-type]
                      lambda: None, None)  # type: ignore[arg-type,return-value]
    services.changes.subscribe(BROKER_FOLLOWS, sync.follow, after=before)
    assert sync._pending_kicks == {"d1"} and sync.wake.is_set()
    sync.wake.clear()
    services.inventory.set_state(SYSTEM, "d1", DeviceState.SUSPENDED)
    assert "d1" in sync._pending and sync.wake.is_set()


def test_follow_ok_what_each_change_asks_of_the_broker(tmp_path: Path) -> None:
    sync = BrokerSync(None, FrozenClock(), BrokerFiles(tmp_path),  # type: ignore[arg-type]
                      lambda: None, None)  # type: ignore[arg-type,return-value]
    sync._needs_full = False
    sync.follow(Published(1, CredentialRevoked("psk", "p1", "d1")))
    sync.follow(Published(2, CertificateRevoked(7, "issuing", None)))  # no device: no kick
    sync.follow(Published(3, DeviceChanged(("d2", "d3"))))
    assert sync._pending_kicks == {"d1"} and sync._pending == {"d1", "d2", "d3"}
    assert not sync._needs_full
    sync.follow(Published(4, PolicyChanged("baseline")))
    assert sync._needs_full


def test_revoke_ok_other_process_learns_by_its_poll(installation: Installation) -> None:
    """Two processes on one SQLite file: B's subject cache drops the device when B's
    feed polls the change table."""
    a = installation.services
    b = build_services(installation.settings, clock=installation.clock)
    try:
        api = installation.api()
        add_device(api, "d1")
        serial = issue(api, "d1")["serial"]
        b.changes.deliver_pending()
        first = b.subjects.cached("d1")
        assert first is not None and first.credentialed
        revoke(api, serial)
        assert a.changes.position > 0
        assert b.changes.deliver_pending() >= 1
        again = b.subjects.cached("d1")
        assert again is not first and again is not None and again.credentialed is False
    finally:
        b.close()


def test_mode_ok_held_once_and_followed_by_the_feed(installation: Installation) -> None:
    """Two processes on one SQLite file: the mode is held by each one's response settings
    and nowhere else (its engine asks them); A's mode change reaches B when B's feed
    delivers it, and B's engine judges the next event in it."""
    a = installation.services
    b = build_services(installation.settings, clock=installation.clock)
    try:
        engine = b.ingest.engine
        assert isinstance(engine, DetectionEngine) and engine.modes is b.response
        assert "modes" not in engine.snapshot()
        assert b.response.mode_of("sensor") is DetectionMode.LEARN
        a.response.set_mode(SYSTEM, "sensor", "monitor")
        assert a.response.mode_of("sensor") is DetectionMode.MONITOR  # delivered at commit
        assert b.response.mode_of("sensor") is DetectionMode.LEARN  # until B's feed polls
        assert b.changes.deliver_pending() >= 1
        assert b.response.mode_of("sensor") is DetectionMode.MONITOR
    finally:
        b.close()
