"""iotiam's own traffic turned into sightings: pure conversions, no I/O."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from iotiam.detection.models import Event, EventKind
from iotiam.discovery.models import (
    MAX_TEXT,
    IdentifierKind,
    Sighting,
    normalize_fingerprint,
    normalize_serial,
)
from iotiam.discovery.sources.own_traffic import (
    RecentSightings,
    is_site_address,
    sighting_of_held_request,
    sighting_of_refused_client,
    sightings_of_events,
)
from iotiam.enrollment.models import EnrollmentRequest, HoldReason, RequestStatus
from iotiam.testing.idevid import make_idevid, make_manufacturer_ca

AT = 1_800_000_000.0
DER = serialization.Encoding.DER


@pytest.mark.parametrize(("address", "site"), [
    ("10.1.2.3", True), ("192.168.0.7", True), ("172.16.9.9", True), ("169.254.1.1", True),
    ("fe80::1", True), ("fd12:3456::1", True), ("::ffff:10.0.0.1", True),
    ("8.8.8.8", False), ("2001:4860::8888", False), ("127.0.0.1", False), ("::1", False),
    ("0.0.0.0", False), ("224.0.0.251", False), ("ff02::1", False), ("not-an-ip", False),
], ids=lambda v: str(v))
def test_own_traffic_ok_site_addresses(address: str, site: bool) -> None:
    assert is_site_address(address) is site


def test_own_traffic_ok_refused_connection_carries_what_the_broker_logged() -> None:
    event = Event(EventKind.AUTH_FAILURE, AT, source_ip="10.0.0.9", src_port=40000,
                  dst_port=8883, reason="tls: certificate verify failed")
    (sighting,) = sightings_of_events([event], source="broker")
    assert sighting == Sighting(source="broker", seen_at=AT, ip="10.0.0.9",
                                detail="refused: tls: certificate verify failed (port 8883)")
    assert sighting.identifiers() == [(IdentifierKind.IP, "10.0.0.9")]


def test_own_traffic_ok_refused_client_id_from_an_event() -> None:
    event = Event(EventKind.AUTH_FAILURE, AT, source_ip="::ffff:10.0.0.9",
                  client_id="  cam-7\x00 ", reason="bad password")
    (sighting,) = sightings_of_events([event], source="events")
    assert (sighting.source, sighting.ip, sighting.client_id, sighting.detail) == (
        "events", "10.0.0.9", "cam-7", "refused: bad password")


def test_own_traffic_ok_long_client_id_is_cut_not_refused() -> None:
    event = Event(EventKind.AUTH_FAILURE, AT, client_id="x" * 1000)
    (sighting,) = sightings_of_events([event], source="events")
    assert sighting.client_id == "x" * MAX_TEXT


def test_own_traffic_ok_unknown_identity_connecting() -> None:
    events = [Event(EventKind.CONNECT, AT, device_id="ghost", client_id="ghost-1",
                    source_ip="10.0.0.5"),
              Event(EventKind.CONNECT, AT, device_id="known", client_id="known-1",
                    source_ip="10.0.0.6")]
    (sighting,) = sightings_of_events(events, source="broker",
                                      unknown_devices=frozenset({"ghost"}))
    assert (sighting.client_id, sighting.username, sighting.ip) == ("ghost-1", "ghost",
                                                                    "10.0.0.5")


def test_own_traffic_ok_flow_peer_on_the_site_network() -> None:
    events = [Event(EventKind.FLOW, AT, device_id="gw-1", dst_ip="192.168.1.20",
                    dst_port=502, protocol="tcp"),
              Event(EventKind.FLOW, AT + 1, device_id="gw-1", dst_ip="93.184.216.34",
                    dst_port=443)]
    (sighting,) = sightings_of_events(events, source="events")
    assert (sighting.ip, sighting.open_ports, sighting.seen_at) == ("192.168.1.20", (502,), AT)
    assert sighting.detail == "peer of a flow from device gw-1 over tcp"


@pytest.mark.parametrize("event", [
    Event(EventKind.AUTH_FAILURE, AT, reason="tls: certificate verify failed"),
    Event(EventKind.AUTH_FAILURE, AT, device_id="dev-1", source_ip="10.0.0.1"),
    Event(EventKind.PUBLISH, AT, device_id="dev-1", topic="t", source_ip="10.0.0.1"),
    Event(EventKind.CONNECT, AT, device_id="dev-1", source_ip="10.0.0.1"),
    Event(EventKind.FLOW, AT, device_id="dev-1", dst_ip="127.0.0.1", dst_port=80),
], ids=["fail/no-source", "fail/known-device", "fail/publish", "fail/known-connect",
        "fail/loopback-flow"])
def test_own_traffic_fail_events_that_show_no_unmanaged_identity(event: Event) -> None:
    assert sightings_of_events([event], source="events") == []


def _request(**fields: object) -> EnrollmentRequest:
    ca = make_manufacturer_ca()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "meter-9")])).sign(ca.key, hashes.SHA256())
    values: dict[str, object] = dict(
        id="r1", device_id="meter-9", reason=HoldReason.UNKNOWN_DEVICE, detail="d",
        source="203.0.113.5", presented="p",
        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(), csr_sha256="0",
        public_key_sha256="0", status=RequestStatus.PENDING,
        created_at=datetime.now(UTC), last_seen_at=datetime.now(UTC))
    values.update(fields)
    return EnrollmentRequest(**values)  # type: ignore[arg-type]


def test_own_traffic_ok_held_request_without_idevid() -> None:
    sighting = sighting_of_held_request(_request(), AT)
    assert (sighting.source, sighting.seen_at, sighting.ip, sighting.client_id) == (
        "est", AT, "203.0.113.5", "meter-9")
    assert sighting.detail == "awaiting approval: unknown-device"
    assert (sighting.subject, sighting.key, sighting.certificate) == (
        "CN=meter-9", "ec:secp256r1", None)


def test_own_traffic_ok_held_request_with_idevid() -> None:
    ca = make_manufacturer_ca("Other Devices CA")
    device = make_idevid(ca, "SN-42")
    pem = device.certificate.public_bytes(serialization.Encoding.PEM).decode()
    sighting = sighting_of_held_request(
        _request(idevid_pem=pem, device_id="SN-42", source="unknown",
                 reason=HoldReason.UNKNOWN_MANUFACTURER), AT)
    fingerprint = hashlib.sha256(device.certificate.public_bytes(DER)).hexdigest()
    assert sighting.certificate == normalize_fingerprint(fingerprint)
    assert sighting.issuer == ca.certificate.subject.rfc4514_string()
    assert sighting.serial == normalize_serial(device.certificate.serial_number)
    assert (sighting.ip, sighting.client_id, sighting.key, sighting.signature_hash) == (
        None, "SN-42", "ec:secp256r1", "sha256")
    assert sighting.detail == "awaiting approval: unknown-manufacturer"
    kinds = [kind for kind, _ in sighting.identifiers()]
    assert kinds == [IdentifierKind.CERTIFICATE, IdentifierKind.ISSUER_SERIAL,
                     IdentifierKind.CLIENT_ID]


def test_own_traffic_ok_refused_oauth_client_with_certificate() -> None:
    device = make_idevid(make_manufacturer_ca(), "SN-1")
    der = device.certificate.public_bytes(DER)
    sighting = sighting_of_refused_client(client_id="ghost", source_ip="198.51.100.7",
                                          certificate_der=der, reason="unknown client",
                                          seen_at=AT)
    assert sighting is not None
    assert (sighting.source, sighting.client_id, sighting.ip) == ("api", "ghost",
                                                                  "198.51.100.7")
    assert sighting.certificate == hashlib.sha256(der).hexdigest()
    assert sighting.serial == format(device.certificate.serial_number, "x")
    assert sighting.detail == "oauth client refused: unknown client"


def test_own_traffic_ok_unparsable_certificate_keeps_its_fingerprint() -> None:
    sighting = sighting_of_refused_client(client_id=None, source_ip="unknown",
                                          certificate_der=b"junk", reason="r", seen_at=AT)
    assert sighting is not None
    assert (sighting.certificate, sighting.issuer, sighting.ip) == (
        hashlib.sha256(b"junk").hexdigest(), None, None)


def test_own_traffic_ok_unknown_signature_algorithm_is_still_seen() -> None:
    # a certificate signed with an algorithm cryptography does not know (an OID past
    # ecdsa-with-SHA512): what can be read is kept, the hash is unknown, nothing raises
    certificate = make_idevid(make_manufacturer_ca(), "SN-2").certificate
    der = certificate.public_bytes(DER)
    ecdsa_sha256 = bytes.fromhex("06082a8648ce3d040302")
    assert der.count(ecdsa_sha256) == 2
    odd = der.replace(ecdsa_sha256, bytes.fromhex("06082a8648ce3d040309"))
    sighting = sighting_of_refused_client(client_id="ghost", source_ip="198.51.100.7",
                                          certificate_der=odd, reason="r", seen_at=AT)
    assert sighting is not None
    assert sighting.certificate == hashlib.sha256(odd).hexdigest()
    assert (sighting.signature_hash, sighting.subject) == (
        None, certificate.subject.rfc4514_string())


def test_own_traffic_fail_refused_client_naming_nothing() -> None:
    assert sighting_of_refused_client(client_id=None, source_ip="", certificate_der=None,
                                      reason="r", seen_at=AT) is None


def test_own_traffic_ok_repeats_within_the_window_are_dropped() -> None:
    recent = RecentSightings(window=60.0)
    first = Sighting(source="broker", seen_at=AT, ip="10.0.0.1", detail="refused: x")
    assert recent.fresh([first, Sighting(source="broker", seen_at=AT + 1, ip="10.0.0.1",
                                         detail="refused: x")]) == [first]
    other = Sighting(source="broker", seen_at=AT + 2, ip="10.0.0.1", detail="refused: y")
    assert recent.fresh([other]) == [other]
    later = Sighting(source="broker", seen_at=AT + 61, ip="10.0.0.1", detail="refused: x")
    assert recent.fresh([later]) == [later]


def test_own_traffic_ok_repeat_memory_is_bounded() -> None:
    recent = RecentSightings(window=60.0, limit=3)
    many = [Sighting(source="api", seen_at=AT, client_id=f"c{i}") for i in range(10)]
    assert recent.fresh(many) == many
    # forgotten when the bound was reached: the first one passes again
    assert recent.fresh([many[0]]) == [many[0]]
