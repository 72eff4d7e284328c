"""A first contact held for approval is a sighting for discovery (source ``est``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import Installation, make_memory_installation
from enrollment.zerotouch import csr_for, device_client, idevid, manufacturer_ca, simpleenroll
from iotiam.testing.fakes.sightings import RecordingSightingSink


@pytest.fixture
def sink() -> RecordingSightingSink:
    return RecordingSightingSink()


@pytest.fixture
def installation(tmp_path: Path, sink: RecordingSightingSink) -> Iterator[Installation]:
    inst = make_memory_installation(tmp_path / "data", sightings=sink)
    try:
        yield inst
    finally:
        inst.close()


def test_queue_sightings_ok_anonymous_first_contact_held_and_polled(
        installation: Installation, sink: RecordingSightingSink) -> None:
    client = device_client(installation)
    csr = csr_for("meter-9")
    assert simpleenroll(client, csr, forwarded_for="203.0.113.5").status_code == 202
    (held,) = sink.sightings
    assert (held.source, held.client_id, held.ip, held.subject, held.key) == (
        "est", "meter-9", "203.0.113.5", "CN=meter-9", "ec:secp256r1")
    assert held.detail == "awaiting approval: unknown-device"
    assert held.seen_at == installation.clock.now().timestamp()
    # the device polls again (RFC 7030 §4.2.3): seen again
    assert simpleenroll(client, csr, forwarded_for="203.0.113.5").status_code == 202
    assert len(sink.sightings) == 2


def test_queue_sightings_ok_unknown_manufacturer_idevid(
        installation: Installation, sink: RecordingSightingSink) -> None:
    maker = manufacturer_ca(installation)  # never registered: an unknown manufacturer
    device = idevid(installation, maker, "SN-77")
    answer = simpleenroll(device_client(installation), csr_for("SN-77"), identity=device,
                          forwarded_for="198.51.100.20")
    assert answer.status_code == 202, answer.text
    (held,) = sink.sightings
    der = device.certificate.public_bytes(serialization.Encoding.DER)
    assert (held.certificate, held.issuer, held.serial) == (
        hashlib.sha256(der).hexdigest(), maker.certificate.subject.rfc4514_string(),
        format(device.certificate.serial_number, "x"))
    assert (held.client_id, held.ip, held.detail) == (
        "SN-77", "198.51.100.20", "awaiting approval: unknown-manufacturer")


def test_queue_sightings_fail_refused_first_contact_is_no_sighting(
        installation: Installation, sink: RecordingSightingSink) -> None:
    # a CSR naming nothing is refused outright (401), not held: nothing waits
    answer = simpleenroll(device_client(installation), csr_for(None),
                          forwarded_for="203.0.113.5")
    assert answer.status_code == 401, answer.text
    assert sink.sightings == []
