"""The Suricata source reads EVE JSON: flows, TLS, MQTT and DHCP events, skipping the rest.

The events follow Suricata's EVE format: ``timestamp`` with a ``+0000`` offset,
``event_type``, ``src_ip``/``dest_ip`` in the flow's direction, and the per-protocol
object (``flow``, ``tls`` with its ``client`` certificate object, ``mqtt.connect``,
``dhcp``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotiam.discovery.models import Refusal, Sighting, SourceContext
from iotiam.discovery.sources.suricata import SuricataSource, rfc4514
from iotiam.errors import InvalidInput

from .generated import blocks_while_reading, collect, eve_line, generated, peak_memory

CONTEXT = SourceContext(site="plant-2")
STAMP = "2026-12-06T10:00:00.123456+0000"
SEEN = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC).timestamp()


def event(kind: str, src: str = "10.1.0.5", dest: str = "10.1.0.9", dport: int = 1883,
          **body: Any) -> dict[str, Any]:
    return {"timestamp": STAMP, "flow_id": 1868, "in_iface": "eth0", "event_type": kind,
            "src_ip": src, "src_port": 50000, "dest_ip": dest, "dest_port": dport,
            "proto": "TCP", **body}


def lines(*events: dict[str, Any] | str) -> bytes:
    return "".join((e if isinstance(e, str) else json.dumps(e)) + "\n"
                   for e in events).encode()


def read(data: bytes, context: SourceContext = CONTEXT
         ) -> tuple[list[Sighting], list[Refusal]]:
    return collect(SuricataSource().read(io.BytesIO(data), context))


def flow(to_client: int = 4, flags_tc: str | None = "1b", state: str = "closed",
         ether: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "app_proto": "mqtt",
        "flow": {"pkts_toserver": 6, "pkts_toclient": to_client, "bytes_toserver": 540,
                 "bytes_toclient": 300, "start": STAMP, "end": STAMP, "age": 0,
                 "state": state, "reason": "timeout", "alerted": False}}
    if flags_tc is not None:
        body["tcp"] = {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": flags_tc,
                       "syn": True, "fin": True, "psh": True, "ack": True, "state": state}
    if ether:
        body["ether"] = ether
    return body


def test_flow_ok_originator_and_local_server_with_open_port() -> None:
    sightings, refusals = read(lines(
        event("flow", **flow(ether={"src_macs": ["00:1a:2b:3c:4d:5e"],
                                    "dest_macs": ["00:1a:2b:3c:4d:5f"]})),
        event("flow", src="10.1.0.6", dest="140.82.121.4", dport=443, **flow())))
    assert refusals == []
    seen = {s.ip: s for s in sightings}
    assert set(seen) == {"10.1.0.5", "10.1.0.9", "10.1.0.6"}
    assert (seen["10.1.0.5"].seen_at, seen["10.1.0.5"].mac, seen["10.1.0.5"].site) == (
        SEEN, "00:1a:2b:3c:4d:5e", "plant-2")
    assert (seen["10.1.0.9"].open_ports, seen["10.1.0.9"].mac) == ((1883,), "00:1a:2b:3c:4d:5f")


@pytest.mark.parametrize(("body", "ports"), [
    (flow(flags_tc="14"), ()),        # RST+ACK back: the port is closed
    (flow(flags_tc=None, state="established"), (1883,)),
    (flow(flags_tc=None, state="new"), ()),
], ids=["ok/rst-closed", "ok/no-tcp-section-established", "ok/no-tcp-section-new"])
def test_flow_ok_open_port_needs_an_accepted_connection(body: dict[str, Any],
                                                        ports: tuple[int, ...]) -> None:
    sightings, _ = read(lines(event("flow", **body)))
    assert {s.ip: s.open_ports for s in sightings}["10.1.0.9"] == ports


def test_flow_ok_addresses_of_no_device_give_no_sighting() -> None:
    sightings, refusals = read(lines(
        event("flow", src="0.0.0.0", dest="255.255.255.255", dport=67, **flow()),
        event("flow", src="10.1.0.5", dest="239.255.255.250", dport=1900, **flow())))
    assert refusals == []
    assert [s.ip for s in sightings] == ["10.1.0.5"]


def test_flow_ok_unanswered_server_is_no_sighting() -> None:
    sightings, _ = read(lines(event("flow", **flow(to_client=0))))
    assert [s.ip for s in sightings] == ["10.1.0.5"]


def client_certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plant"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Plant CA")])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-7")]))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(0x010203)
            .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2026, 6, 1, tzinfo=UTC)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def tls(client: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": "CN=broker.plant", "issuerdn": "C=DE, O=Plant, CN=Plant CA",
        "serial": "00:AB:CD", "fingerprint": "4e:3f:aa:00:11:22:33:44:55:66:77:88:99:aa:bb:cc",
        "sni": "broker.plant", "version": "TLS 1.2", "notbefore": "2026-01-01T00:00:00",
        "notafter": "2027-01-01T00:00:00", "ja3": {"hash": "e7d705a3286e19ea42f587b344ee6865",
                                                   "string": "771,4865-4866,0-11,29,0"}}
    if client is not None:
        body["client"] = client
    return {"tls": body}


def test_tls_ok_client_certificate_fields_give_rfc4514_issuer_and_serial() -> None:
    sightings, refusals = read(lines(event("tls", dport=8883, **tls(client={
        "subject": "CN=sensor-7", "issuerdn": "C=DE, O=Plant, CN=Plant CA",
        "serial": "01:02:03", "fingerprint": "11:22:33", "notbefore": "2026-01-01T00:00:00",
        "notafter": "2026-06-01T00:00:00"}))))
    assert refusals == []
    device = next(s for s in sightings if s.ip == "10.1.0.5")
    assert (device.issuer, device.serial, device.subject) == (
        "CN=Plant CA,O=Plant,C=DE", "10203", "CN=sensor-7")
    assert device.certificate is None  # Suricata's fingerprint is SHA-1: never used
    assert device.not_after == datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    assert "e7d705a3286e19ea42f587b344ee6865" in (device.detail or "")
    server = next(s for s in sightings if s.ip == "10.1.0.9")
    assert (server.issuer, server.serial, server.open_ports) == (
        "CN=Plant CA,O=Plant,C=DE", "abcd", (8883,))


def test_tls_ok_logged_client_certificate_gives_its_sha256_fingerprint() -> None:
    der = client_certificate()
    sightings, _ = read(lines(event("tls", dport=8883, **tls(client={
        "subject": "CN=sensor-7", "issuerdn": "C=DE, O=Plant, CN=Plant CA",
        "serial": "01:02:03", "certificate": base64.b64encode(der).decode()}))))
    device = next(s for s in sightings if s.ip == "10.1.0.5")
    assert device.certificate == hashlib.sha256(der).hexdigest()
    assert (device.issuer, device.serial, device.key, device.signature_hash) == (
        "CN=Plant CA,O=Plant,C=DE", "10203", "ec:secp256r1", "sha256")


def test_tls_ok_internet_server_certificate_is_not_a_device() -> None:
    sightings, refusals = read(lines(event("tls", dest="142.250.74.78", dport=443, **tls())))
    assert refusals == []
    (device,) = sightings
    assert (device.ip, device.issuer, device.serial) == ("10.1.0.5", None, None)


def test_tls_fail_certificate_that_does_not_parse_is_refused() -> None:
    _, refusals = read(lines(event("tls", **tls(client={"certificate": "bm90IGEgY2VydA=="}))))
    assert [r.position for r in refusals] == [1]
    assert "does not parse" in refusals[0].reason


@pytest.mark.parametrize(("suricata", "expected"), [
    ("C=US, O=Let's Encrypt, CN=R3", "CN=R3,O=Let's Encrypt,C=US"),
    ("CN=single", "CN=single"),
    ("C=DE, O=Acme, Inc., CN=Acme CA", "CN=Acme CA,O=Acme\\, Inc.,C=DE"),
    ("C=DE, O=A + OU=B, CN=x", "CN=x,O=A+OU=B,C=DE"),
], ids=["ok/three", "ok/one", "ok/comma-in-value", "ok/multi-valued"])
def test_rfc4514_ok_reverses_and_escapes(suricata: str, expected: str) -> None:
    assert rfc4514(suricata) == expected


def test_mqtt_ok_connect_client_id_username_never_the_password() -> None:
    connect = {"qos": 0, "retain": False, "dup": False, "protocol_string": "MQTT",
               "protocol_version": 5, "flags": {"username": True, "password": True,
                                                "will_retain": False, "will": False,
                                                "clean_session": True},
               "client_id": "sensor-7", "username": "plant", "password": "hunter2"}
    sightings, refusals = read(lines(
        event("mqtt", mqtt={"connect": connect, "connack": {"return_code": 5}}),
        event("mqtt", mqtt={"publish": {"topic": "plant/t", "message_id": 4}})))
    assert refusals == []
    (seen,) = sightings
    assert (seen.ip, seen.client_id, seen.username) == ("10.1.0.5", "sensor-7", "plant")
    assert "hunter2" not in repr(seen) and "v5" in (seen.detail or "")


def test_dhcp_ok_reply_and_request() -> None:
    sightings, refusals = read(lines(
        event("dhcp", src="10.1.0.1", dest="10.1.0.40", dport=68, dhcp={
            "type": "reply", "id": 4023212, "client_mac": "AA:BB:CC:00:11:22",
            "assigned_ip": "10.1.0.40", "client_ip": "0.0.0.0", "dhcp_type": "ack",
            "lease_time": 86400, "hostname": "Cam-3"}),
        event("dhcp", src="0.0.0.0", dest="255.255.255.255", dport=67, dhcp={
            "type": "request", "id": 4023213, "client_mac": "aa:bb:cc:00:11:23",
            "assigned_ip": "0.0.0.0", "client_ip": "0.0.0.0", "dhcp_type": "request",
            "hostname": "Anna's phone"})))
    assert refusals == []
    assert [(s.ip, s.mac, s.hostname) for s in sightings] == [
        ("10.1.0.40", "aa:bb:cc:00:11:22", "cam-3"), (None, "aa:bb:cc:00:11:23", None)]
    assert "Anna's phone" in (sightings[1].detail or "")


def test_eve_ok_other_events_skipped_and_counted_unknown_fields_tolerated() -> None:
    reading = SuricataSource().read(io.BytesIO(lines(
        event("alert", alert={"signature_id": 2001, "signature": "ET SCAN"}),
        event("dns", dns={"type": "query", "rrname": "example.com"}),
        event("stats") | {"stats": {"uptime": 5}},
        event("flow", **flow()) | {"community_id": "1:x=", "future": {"field": [1, 2]}},
        event("alert"))), CONTEXT)
    sightings, refusals = collect(reading)
    assert refusals == [] and len(sightings) == 2
    assert reading.skipped == {"alert": 2, "dns": 1, "stats": 1}


def test_eve_fail_bad_events_refused_with_their_line() -> None:
    sightings, refusals = read(lines(
        event("flow", **flow()),
        "{not json",
        event("flow", src="10.1.0.999", **flow()),
        event("flow", **flow()) | {"timestamp": "yesterday"},
        {"flow_id": 1, "src_ip": "10.1.0.5"},
        event("flow", dport=70000, **flow()),
        '{"event_type": "flow", "event_type": "alert"}',
        event("mqtt", mqtt={"connect": {"client_id": "x" * 300}}),
        "[1, 2, 3]"))
    assert [r.position for r in refusals] == [2, 3, 4, 5, 6, 7, 8, 9]
    reasons = " | ".join(r.reason for r in refusals)
    for expected in ("not valid JSON", "not an IP address", "not a time", "no event_type",
                     "not a port", "twice", "longer than", "not a JSON object"):
        assert expected in reasons
    assert len(sightings) == 2


def test_eve_fail_garbage_and_other_files_are_not_eve() -> None:
    with pytest.raises(InvalidInput, match="not Suricata EVE JSON"):
        read(bytes(range(256)) * 10)
    with pytest.raises(InvalidInput, match="not Suricata EVE JSON"):
        read(b"#separator \\x09\n#path\tconn\n")
    with pytest.raises(InvalidInput, match="first line is over-long"):
        read(b"{" + b" " * (2 * 1024 * 1024) + b"}\n")


def test_eve_fail_10mb_line_refused_in_bounded_memory() -> None:
    data = lines(event("flow", **flow())) + b'{"x": "' + b"A" * (10 * 1024 * 1024) + b'"}\n' \
        + lines(event("flow", src="10.1.0.6", **flow()))
    (sightings, refusals), peak = peak_memory(lambda: read(data))
    assert [r.position for r in refusals] == [2] and "longer than" in refusals[0].reason
    assert {s.ip for s in sightings} == {"10.1.0.5", "10.1.0.6", "10.1.0.9"}
    assert peak < 3 * 1024 * 1024, peak


def test_eve_ok_streams_in_bounded_memory() -> None:
    reading = SuricataSource().read(generated(200_000, eve_line), CONTEXT)
    records, grown = blocks_while_reading(reading)
    assert records == 200_000  # flow: 2 sightings, tls 1, mqtt 1, alert 0
    assert reading.skipped == {"alert": 50_000}
    assert grown < 40_000, grown  # the address memo and buffers, not the records
