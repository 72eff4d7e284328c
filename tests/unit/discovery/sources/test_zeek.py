"""The Zeek source reads conn, ssl, x509, mqtt_connect and dhcp logs, TSV or JSON lines.

The samples follow Zeek's ASCII writer: a ``#separator \\x09`` line, ``#fields`` and
``#types`` headers, ``-`` for unset and ``(empty)`` for empty fields, ``#close`` at the
end; and the JSON form (``LogAscii::use_json=T``), one flattened object per line.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from iotiam.discovery.models import Refusal, Sighting, SourceContext
from iotiam.discovery.sources.zeek import ZeekSource
from iotiam.errors import InvalidInput

from .generated import (
    CONN_HEADER,
    blocks_while_reading,
    collect,
    conn_line,
    generated,
    peak_memory,
)

CONTEXT = SourceContext(site="plant-1", network="ot")
TS = 1796551200.25  # 2026-12-06T10:00:00.25Z


def tsv(path: str, fields: list[tuple[str, str]], rows: list[list[str]]) -> bytes:
    """A Zeek TSV log as its writer lays it out."""
    names = "\t".join(name for name, _ in fields)
    types = "\t".join(kind for _, kind in fields)
    lines = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
             "#unset_field\t-", f"#path\t{path}", "#open\t2026-12-06-10-00-00",
             f"#fields\t{names}", f"#types\t{types}"]
    lines += ["\t".join(row) for row in rows]
    lines.append("#close\t2026-12-06-11-00-00")
    return ("\n".join(lines) + "\n").encode()


CONN_FIELDS = [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"),
               ("id.orig_p", "port"), ("id.resp_h", "addr"), ("id.resp_p", "port"),
               ("proto", "enum"), ("service", "string"), ("duration", "interval"),
               ("orig_bytes", "count"), ("resp_bytes", "count"), ("conn_state", "string"),
               ("local_orig", "bool"), ("local_resp", "bool"), ("missed_bytes", "count"),
               ("history", "string"), ("orig_pkts", "count"), ("orig_ip_bytes", "count"),
               ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
               ("tunnel_parents", "set[string]"), ("orig_l2_addr", "string"),
               ("resp_l2_addr", "string")]


def conn_row(orig: str, resp: str, port: str, proto: str = "tcp", state: str = "SF",
             local_orig: str = "-", local_resp: str = "-", service: str = "mqtt",
             mac: str = "-", ts: str = f"{TS:.6f}") -> list[str]:
    return [ts, "CxYz1", orig, "49152", resp, port, proto, service, "1.25", "300", "120",
            state, local_orig, local_resp, "0", "ShADadFf", "8", "620", "6", "440",
            "(empty)", mac, "-"]


def read(data: bytes, context: SourceContext = CONTEXT) -> tuple[list[Sighting],
                                                                  list[Refusal]]:
    return collect(ZeekSource().read(io.BytesIO(data), context))


def by_ip(sightings: list[Sighting]) -> dict[str | None, Sighting]:
    return {s.ip: s for s in sightings}


def test_conn_ok_originator_and_local_responder_with_its_open_port() -> None:
    sightings, refusals = read(tsv("conn", CONN_FIELDS, [
        conn_row("10.0.0.5", "10.0.0.9", "1883", mac="00:1A:2b:3c:4D:5e"),
        conn_row("10.0.0.6", "93.184.216.34", "443", service="ssl"),
    ]))
    assert refusals == []
    seen = by_ip(sightings)
    assert set(seen) == {"10.0.0.5", "10.0.0.9", "10.0.0.6"}  # the internet server is not
    device = seen["10.0.0.5"]
    assert (device.source, device.seen_at, device.site, device.network) == (
        "zeek", TS, "plant-1", "ot")
    assert device.mac == "00:1a:2b:3c:4d:5e" and device.open_ports == ()
    assert seen["10.0.0.9"].open_ports == (1883,)
    assert "10.0.0.5" in (seen["10.0.0.9"].detail or "")


@pytest.mark.parametrize(("state", "proto", "ports"), [
    ("SF", "udp", (5683,)), ("SHR", "udp", (5683,)), ("REJ", "tcp", ()),
    ("RSTR", "tcp", (5683,)), ("SF", "icmp", ()),
], ids=["ok/udp-answered", "ok/udp-responder-only", "ok/rejected-port-closed",
        "ok/reset-after-accept", "ok/icmp-has-no-ports"])
def test_conn_ok_responder_ports_follow_conn_state(state: str, proto: str,
                                                   ports: tuple[int, ...]) -> None:
    sightings, _ = read(tsv("conn", CONN_FIELDS, [
        conn_row("10.0.0.5", "192.168.7.7", "5683", proto=proto, state=state)]))
    assert by_ip(sightings)["192.168.7.7"].open_ports == ports


@pytest.mark.parametrize("state", ["S0", "SH", "OTH", "-"],
                         ids=["fail/no-reply", "fail/half-open", "fail/midstream", "fail/unset"])
def test_conn_ok_silent_responder_is_no_sighting(state: str) -> None:
    sightings, _ = read(tsv("conn", CONN_FIELDS, [
        conn_row("10.0.0.5", "10.0.0.99", "22", state=state)]))
    assert [s.ip for s in sightings] == ["10.0.0.5"]


def test_conn_ok_addresses_of_no_device_give_no_sighting() -> None:
    sightings, refusals = read(tsv("conn", CONN_FIELDS, [
        conn_row("0.0.0.0", "255.255.255.255", "67", proto="udp", state="SF",
                 service="dhcp"),
        conn_row("10.0.0.5", "224.0.0.251", "5353", proto="udp", state="SF", service="dns"),
        conn_row("127.0.0.1", "127.0.0.1", "8080", service="http"),
        conn_row("fe80::1", "ff02::fb", "5353", proto="udp", state="SF", service="dns"),
    ]))
    assert refusals == []
    assert [s.ip for s in sightings] == ["10.0.0.5", "fe80::1"]


def test_conn_ok_zeek_local_marks_win_over_the_address() -> None:
    sightings, _ = read(tsv("conn", CONN_FIELDS, [
        # an inbound scan from outside: Zeek says the originator is remote
        conn_row("203.0.113.8", "10.0.0.9", "23", state="REJ", local_orig="F",
                 local_resp="T"),
        # a public address inside Site::local_nets
        conn_row("10.0.0.5", "198.51.100.20", "8883", local_orig="T", local_resp="T"),
    ]))
    assert sorted(s.ip for s in sightings) == ["10.0.0.5", "10.0.0.9", "198.51.100.20"]


@pytest.mark.parametrize(("choice", "expected"), [
    ("none", ["10.0.0.5"]), ("all", ["10.0.0.5", "93.184.216.34"]),
], ids=["ok/none", "ok/all"])
def test_conn_ok_responders_option(choice: str, expected: list[str]) -> None:
    sightings, _ = read(tsv("conn", CONN_FIELDS, [
        conn_row("10.0.0.5", "93.184.216.34", "443")]),
        SourceContext(options={"responders": choice}))
    assert sorted(s.ip for s in sightings) == expected


def test_conn_fail_unknown_responders_option() -> None:
    with pytest.raises(InvalidInput, match="responders"):
        ZeekSource().read(io.BytesIO(b""), SourceContext(options={"responders": "some"}))


def conn_json(**extra: object) -> dict[str, object]:
    record: dict[str, object] = {
        "ts": TS, "uid": "CxYz1", "id.orig_h": "10.0.0.5", "id.orig_p": 49152,
        "id.resp_h": "10.0.0.9", "id.resp_p": 1883, "proto": "tcp", "service": "mqtt",
        "duration": 1.25, "orig_bytes": 300, "resp_bytes": 120, "conn_state": "SF",
        "missed_bytes": 0, "history": "ShADadFf", "orig_pkts": 8, "orig_ip_bytes": 620,
        "resp_pkts": 6, "resp_ip_bytes": 440}
    record.update(extra)
    return record


def test_json_ok_same_sightings_as_tsv() -> None:
    from_tsv, _ = read(tsv("conn", CONN_FIELDS, [conn_row("10.0.0.5", "10.0.0.9", "1883")]))
    from_json, refusals = read((json.dumps(conn_json()) + "\n").encode())
    assert refusals == []
    assert from_json == from_tsv


def test_json_ok_iso_times_nested_ids_and_unknown_fields() -> None:
    record = conn_json(ts="2026-12-06T10:00:00.250000Z", vlan=12, community_id="1:abc=",
                       some_future_field={"x": [1]})
    nested = {k: v for k, v in record.items() if not k.startswith("id.")}
    nested["id"] = {"orig_h": "10.0.0.5", "orig_p": 49152, "resp_h": "10.0.0.9",
                    "resp_p": 1883}
    sightings, refusals = read((json.dumps(nested) + "\n").encode())
    assert refusals == []
    assert {s.ip for s in sightings} == {"10.0.0.5", "10.0.0.9"}
    assert all(s.seen_at == TS for s in sightings)


SSL_FIELDS = [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
              ("id.resp_h", "addr"), ("id.resp_p", "port"), ("version", "string"),
              ("cipher", "string"), ("curve", "string"), ("server_name", "string"),
              ("resumed", "bool"), ("last_alert", "string"), ("next_protocol", "string"),
              ("established", "bool"), ("ssl_history", "string"),
              ("cert_chain_fps", "vector[string]"), ("client_cert_chain_fps", "vector[string]"),
              ("subject", "string"), ("issuer", "string"), ("client_subject", "string"),
              ("client_issuer", "string"), ("sni_matches_cert", "bool")]
CLIENT_FP = "a1" * 32
SERVER_FP = "b2" * 32
CA_FP = "c3" * 32


def ssl_row(resp: str, client_fps: str, server_fps: str = f"{SERVER_FP},{CA_FP}"
            ) -> list[str]:
    return [f"{TS:.6f}", "Cssl1", "10.0.0.5", "50100", resp, "8883", "TLSv12",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "secp256r1", "broker.plant",
            "F", "-", "-", "T", "CsiI", server_fps, client_fps, "CN=broker.plant,O=Plant",
            "CN=Plant CA,O=Plant", "CN=sensor-7,O=Plant", "CN=Plant CA,O=Plant", "T"]


def test_ssl_ok_client_certificate_is_the_device_and_local_server_its_peer() -> None:
    sightings, refusals = read(tsv("ssl", SSL_FIELDS, [
        ssl_row("10.0.0.9", f"{CLIENT_FP.upper()},{CA_FP}"),
        ssl_row("52.1.2.3", "(empty)"),
    ]))
    assert refusals == []
    clients = [s for s in sightings if s.ip == "10.0.0.5"]
    assert [s.certificate for s in clients] == [CLIENT_FP, None]
    assert clients[0].subject == "CN=sensor-7,O=Plant"
    assert clients[0].issuer == "CN=Plant CA,O=Plant"
    (server,) = [s for s in sightings if s.ip != "10.0.0.5"]
    assert (server.ip, server.certificate, server.open_ports) == ("10.0.0.9", SERVER_FP, (8883,))
    assert server.subject == "CN=broker.plant,O=Plant"


def test_ssl_fail_fingerprint_that_is_not_sha256_is_refused_with_its_line() -> None:
    sightings, refusals = read(tsv("ssl", SSL_FIELDS, [
        ssl_row("10.0.0.9", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ssl_row("10.0.0.9", CLIENT_FP)]))
    assert [r.position for r in refusals] == [9]
    assert "SHA-256" in refusals[0].reason and refusals[0].reason.startswith("ssl:")
    assert CLIENT_FP in {s.certificate for s in sightings}


X509_FIELDS = [("ts", "time"), ("fingerprint", "string"), ("certificate.version", "count"),
               ("certificate.serial", "string"), ("certificate.subject", "string"),
               ("certificate.issuer", "string"), ("certificate.not_valid_before", "time"),
               ("certificate.not_valid_after", "time"), ("certificate.key_alg", "string"),
               ("certificate.sig_alg", "string"), ("certificate.key_type", "string"),
               ("certificate.key_length", "count"), ("certificate.exponent", "string"),
               ("certificate.curve", "string"), ("san.dns", "vector[string]"),
               ("san.uri", "vector[string]"), ("san.email", "vector[string]"),
               ("san.ip", "vector[addr]"), ("basic_constraints.ca", "bool"),
               ("basic_constraints.path_len", "count"), ("host_cert", "bool"),
               ("client_cert", "bool")]


def x509_row(fp: str, serial: str, key: tuple[str, str, str, str], sig: str, host: str,
             client: str, ca: str = "F") -> list[str]:
    key_alg, key_type, length, curve = key
    return [f"{TS:.6f}", fp, "3", serial, "CN=sensor-7,O=Plant\\x2c Inc.", "CN=Old CA,O=Them",
            "1700000000.000000", "1800000000.000000", key_alg, sig, key_type, length,
            "65537" if key_type == "rsa" else "-", curve, "(empty)", "-", "-", "-", ca, "-",
            host, client]


def test_x509_ok_weak_client_key_and_sha1_are_kept_ca_and_server_skipped() -> None:
    reading = ZeekSource().read(io.BytesIO(tsv("x509", X509_FIELDS, [
        x509_row(CLIENT_FP, "00A1B2", ("rsaEncryption", "rsa", "1024", "-"),
                 "sha1WithRSAEncryption", "T", "T"),
        x509_row(SERVER_FP, "0F", ("id-ecPublicKey", "ecdsa", "256", "prime256v1"),
                 "ecdsa-with-SHA256", "T", "F"),
        x509_row(CA_FP, "01", ("rsaEncryption", "rsa", "4096", "-"),
                 "sha256WithRSAEncryption", "F", "F", ca="T"),
    ])), CONTEXT)
    sightings, refusals = collect(reading)
    assert refusals == []
    (cert,) = sightings
    assert (cert.certificate, cert.serial, cert.key, cert.signature_hash) == (
        CLIENT_FP, "a1b2", "rsa:1024", "sha1")
    assert cert.issuer == "CN=Old CA,O=Them" and cert.not_after == 1800000000.0
    assert cert.subject == "CN=sensor-7,O=Plant, Inc."  # \x2c undone
    assert cert.ip is None
    assert reading.skipped == {"x509 server certificate": 1, "x509 ca certificate": 1}


def test_x509_ok_host_option_takes_server_leaves_with_their_curve() -> None:
    sightings, _ = read(tsv("x509", X509_FIELDS, [
        x509_row(SERVER_FP, "0F", ("id-ecPublicKey", "ecdsa", "256", "prime256v1"),
                 "ecdsa-with-SHA256", "T", "F")]), SourceContext(options={"x509": "host"}))
    assert [(s.certificate, s.key, s.signature_hash) for s in sightings] == [
        (SERVER_FP, "ec:secp256r1", "sha256")]


def weak_certificate() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Legacy CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Vendor, Inc.")])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc-4")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(name)
            .public_key(key.public_key()).serial_number(0x1F00AB)
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
            .sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.DER)


def test_x509_ok_logged_certificate_gives_sha256_and_rfc4514_issuer() -> None:
    der = weak_certificate()
    record = {"ts": TS, "fingerprint": "ff" * 32, "certificate.version": 3,
              "certificate.serial": "1F00AB", "certificate.subject": "CN=plc-4",
              "certificate.issuer": "whatever", "host_cert": True, "client_cert": True,
              "cert": base64.b64encode(der).decode()}
    (sighting,), refusals = read((json.dumps(record) + "\n").encode())
    assert refusals == []
    assert sighting.certificate == hashlib.sha256(der).hexdigest()
    assert sighting.issuer == "O=Vendor\\, Inc.,CN=Legacy CA"
    assert (sighting.serial, sighting.key, sighting.signature_hash) == (
        "1f00ab", "rsa:1024", "sha256")
    assert sighting.not_after == datetime(2030, 1, 1, tzinfo=UTC).timestamp()


MQTT_FIELDS = [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
               ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto_name", "string"),
               ("proto_version", "string"), ("client_id", "string"),
               ("connect_status", "string"), ("will_topic", "string"),
               ("will_payload", "string")]


def test_mqtt_connect_ok_client_id_and_originator() -> None:
    sightings, refusals = read(tsv("mqtt_connect", MQTT_FIELDS, [
        [f"{TS:.6f}", "Cm1", "10.0.0.5", "50200", "10.0.0.9", "1883", "MQTT", "3.1.1",
         "sensor-7", "Connection Accepted", "-", "-"],
        [f"{TS:.6f}", "Cm2", "10.0.0.8", "50201", "10.0.0.9", "1883", "MQTT", "5.0",
         "(empty)", "Refused: not authorized", "dev/8/lwt", "offline"],
    ]))
    assert refusals == []
    assert [(s.ip, s.client_id) for s in sightings] == [("10.0.0.5", "sensor-7"),
                                                          ("10.0.0.8", None)]
    assert "not authorized" in (sightings[1].detail or "")


DHCP_FIELDS = [("ts", "time"), ("uids", "set[string]"), ("client_addr", "addr"),
               ("server_addr", "addr"), ("mac", "string"), ("host_name", "string"),
               ("client_fqdn", "string"), ("domain", "string"), ("requested_addr", "addr"),
               ("assigned_addr", "addr"), ("lease_time", "interval"),
               ("client_message", "string"), ("server_message", "string"),
               ("msg_types", "vector[string]"), ("duration", "interval")]


def test_dhcp_ok_mac_host_name_and_assigned_address() -> None:
    sightings, refusals = read(tsv("dhcp", DHCP_FIELDS, [
        [f"{TS:.6f}", "Cd1,Cd2", "-", "10.0.0.1", "AA:BB:CC:00:11:22", "Cam-3", "-",
         "plant.local", "10.0.0.40", "10.0.0.40", "86400.000000", "-", "-",
         "DISCOVER,OFFER,REQUEST,ACK", "0.5"],
        [f"{TS:.6f}", "Cd3", "10.0.0.41", "10.0.0.1", "aa:bb:cc:00:11:23",
         "Anna's\\x20phone", "-", "-", "-", "-", "-", "-", "-", "INFORM,ACK", "0.1"],
    ]))
    assert refusals == []
    first, second = sightings
    assert (first.ip, first.mac, first.hostname) == ("10.0.0.40", "aa:bb:cc:00:11:22", "cam-3")
    assert "DISCOVER,OFFER,REQUEST,ACK" in (first.detail or "")
    # a name a device made up that is no host name: kept for people, not matched on
    assert (second.ip, second.hostname) == ("10.0.0.41", None)
    assert "Anna's phone" in (second.detail or "")


def test_tsv_ok_concatenated_logs_and_extra_columns() -> None:
    extra = [*CONN_FIELDS, ("community_id", "string")]
    data = (tsv("conn", extra, [[*conn_row("10.0.0.5", "10.0.0.9", "1883"), "1:x="]])
            + tsv("mqtt_connect", MQTT_FIELDS, [
                [f"{TS:.6f}", "Cm1", "10.0.0.5", "50200", "10.0.0.9", "1883", "MQTT",
                 "3.1.1", "sensor-7", "Connection Accepted", "-", "-"]]))
    sightings, refusals = read(data)
    assert refusals == []
    assert [s.client_id for s in sightings] == [None, None, "sensor-7"]


def test_zeek_fail_binary_garbage_is_not_a_zeek_log() -> None:
    with pytest.raises(InvalidInput, match="not a Zeek log"):
        read(bytes(range(256)) * 40)


def test_zeek_fail_another_zeek_log_is_named() -> None:
    with pytest.raises(InvalidInput, match="'dns'"):
        read(tsv("dns", [("ts", "time"), ("query", "string")], [[f"{TS}", "example.com"]]))


def test_zeek_fail_json_records_of_no_known_log() -> None:
    data = (json.dumps({"ts": TS, "query": "example.com", "qtype": 1}) + "\n"
            + json.dumps({"_path": "dns", "ts": TS, "query": "a.example"}) + "\n"
            + json.dumps(conn_json(_path="conn")) + "\n").encode()
    reading = ZeekSource().read(io.BytesIO(data), CONTEXT)
    sightings, refusals = collect(reading)
    assert [r.position for r in refusals] == [1]
    assert "not a conn" in refusals[0].reason
    assert reading.skipped == {"dns log": 1}
    assert len(sightings) == 2


def test_zeek_fail_bad_records_refused_others_kept() -> None:
    rows = [conn_row("10.0.0.5", "10.0.0.9", "1883"),
            conn_row("10.0.0.300", "10.0.0.9", "1883"),
            conn_row("10.0.0.5", "10.0.0.9", "1883", ts="yesterday"),
            conn_row("10.0.0.5", "10.0.0.9", "99999"),
            conn_row("10.0.0.5", "10.0.0.9", "1883")[:5]]
    data = tsv("conn", CONN_FIELDS, rows) + b"\xff\xfe\t\x00\n"
    sightings, refusals = read(data)
    assert [r.position for r in refusals] == [10, 11, 12, 13, 15]
    assert "not an IP address" in refusals[0].reason
    assert "not a time" in refusals[1].reason
    assert "not a port" in refusals[2].reason
    assert "5 fields where #fields names 23" in refusals[3].reason
    assert "UTF-8" in refusals[4].reason
    assert len(sightings) == 2  # the first row's device and its broker


def test_zeek_fail_10mb_line_refused_in_bounded_memory() -> None:
    head = tsv("conn", CONN_FIELDS, [conn_row("10.0.0.5", "10.0.0.9", "1883")])
    data = head + b"A" * (10 * 1024 * 1024) + b"\n" + "\t".join(
        conn_row("10.0.0.6", "10.0.0.9", "1883")).encode() + b"\n"
    (sightings, refusals), peak = peak_memory(lambda: read(data))
    assert [r.position for r in refusals] == [11]
    assert "longer than" in refusals[0].reason and len(refusals[0].reason) < 100
    assert {s.ip for s in sightings} == {"10.0.0.5", "10.0.0.6", "10.0.0.9"}
    assert peak < 3 * 1024 * 1024, peak  # the line is never held (the input is 10 MB)


def test_zeek_ok_streams_200k_lines_in_bounded_memory() -> None:
    reading = ZeekSource().read(generated(200_000, conn_line, CONN_HEADER), CONTEXT)
    records, grown = blocks_while_reading(reading)
    # every device line, and its broker's answer for two lines in three
    assert records == 200_000 + 133_333
    # the address memo (at most 8192 addresses, here 5,001) and buffers; holding the
    # records would be hundreds of thousands of blocks
    assert grown < 40_000, grown


def test_zeek_ok_tracemalloc_peak_does_not_grow_with_the_input() -> None:
    peaks = []
    for lines in (5_000, 20_000):
        def read_all(count: int = lines) -> int:
            return sum(1 for _ in ZeekSource().read(generated(count, conn_line, CONN_HEADER),
                                                    CONTEXT))
        _, peak = peak_memory(read_all)
        peaks.append(peak)
    assert peaks[1] < 2 * 1024 * 1024, peaks
    assert peaks[1] < peaks[0] * 1.5, peaks  # four times the lines, the same memory


def test_zeek_fail_suricata_eve_lines_are_refused_not_guessed() -> None:
    eve = {"timestamp": "2026-12-06T10:00:00.000000+0000", "event_type": "flow",
           "src_ip": "10.0.0.5", "src_port": 50000, "dest_ip": "10.0.0.9", "dest_port": 1883,
           "proto": "TCP", "flow": {"pkts_toclient": 3}}
    sightings, refusals = read(((json.dumps(eve) + "\n") * 3).encode())
    assert sightings == [] and [r.position for r in refusals] == [1, 2, 3]
