"""OAuth clients iotiam does not know are sightings for discovery (source ``api``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Installation, make_memory_installation
from iotiam.testing import make_key
from iotiam.testing.fakes.sightings import RecordingSightingSink
from iotiam.testing.idevid import make_idevid, make_manufacturer_ca
from tokens.oauthkit import DeviceIdentity, OAuthKit


@pytest.fixture
def sink() -> RecordingSightingSink:
    return RecordingSightingSink()


@pytest.fixture
def kit(tmp_path: Path, sink: RecordingSightingSink) -> Iterator[OAuthKit]:
    inst: Installation = make_memory_installation(tmp_path / "data", sightings=sink)
    try:
        yield OAuthKit(inst)
    finally:
        inst.close()


def test_client_sightings_ok_unknown_client_id(kit: OAuthKit,
                                               sink: RecordingSightingSink) -> None:
    answer = kit.token(assertion=kit.assertion("ghost-svc", make_key()))
    kit.assert_oauth_error(answer, "invalid_client", 401, "unknown client")
    (seen,) = sink.sightings
    assert (seen.source, seen.client_id, seen.ip, seen.certificate) == (
        "api", "ghost-svc", "127.0.0.1", None)
    assert seen.detail == "oauth client refused: unknown client 'ghost-svc'"
    assert seen.seen_at == kit.inst.clock.now().timestamp()


def test_client_sightings_ok_certificate_iotiam_did_not_issue(
        kit: OAuthKit, sink: RecordingSightingSink) -> None:
    d1 = kit.device("d1")
    foreign = make_idevid(make_manufacturer_ca("Elsewhere CA"), "SN-5")
    stranger = DeviceIdentity("d1", foreign.key, foreign.certificate, "0")
    answer = kit.token(cert=stranger, client_id=d1.device_id)
    kit.assert_oauth_error(answer, "invalid_client", 401, "not issued by iotiam")
    (seen,) = sink.sightings
    assert (seen.client_id, seen.ip) == ("d1", "127.0.0.1")
    assert (seen.certificate, seen.issuer, seen.serial) == (
        hashlib.sha256(stranger.der).hexdigest(),
        foreign.certificate.issuer.rfc4514_string(),
        format(foreign.certificate.serial_number, "x"))


def test_client_sightings_fail_known_clients_are_no_sighting(
        kit: OAuthKit, sink: RecordingSightingSink) -> None:
    d1 = kit.device("d1")
    kit.access_token(d1)
    kit.access_token(d1, mtls=True)
    # a known client that fails for another reason (a bad signature) is no stranger
    refused = kit.token(assertion=kit.assertion("d1", make_key()))
    kit.assert_oauth_error(refused, "invalid_client", 401)
    # nor is a request that names no client at all
    kit.assert_oauth_error(kit.token(), "invalid_client", 401)
    assert sink.sightings == []


def test_client_sightings_ok_retries_collapse(kit: OAuthKit,
                                              sink: RecordingSightingSink) -> None:
    key = make_key()
    for _ in range(3):
        kit.token(assertion=kit.assertion("ghost-svc", key))
    assert len(sink.sightings) == 1  # the same stranger, the same frozen second
