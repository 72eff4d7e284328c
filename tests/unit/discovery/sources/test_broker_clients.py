"""The external-broker sources: Mosquitto's dynamic-security listings and EMQX's clients API.

The Mosquitto samples are what Mosquitto 2.0.11's plugin answered here to
``listClients`` (plain and verbose) and ``getClient``, and what ``mosquitto_ctrl dynsec``
printed; the EMQX ones follow EMQX 5's ``GET /api/v5/clients`` page (``data`` and
``meta``). ``tests/integration/test_broker_clients_source.py`` reads a live broker.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest

from iotiam.discovery.models import IdentifierKind, Refusal, Sighting, SourceContext
from iotiam.discovery.sources import _common, broker_clients, lines
from iotiam.discovery.sources.broker_clients import EmqxClientsSource, MosquittoClientsSource
from iotiam.errors import InvalidInput, PayloadTooLarge

from .generated import blocks_while_reading, collect, emqx_line, generated, peak_memory

NOW = 1796551200.0
CONTEXT = SourceContext(site="plant-3", default_time=NOW, options={"broker": "mqtt.plant:8883"})

VERBOSE = {"command": "listClients", "correlationData": "b33dc238-0", "data": {
    "totalCount": 3, "clients": [
        {"username": "dev-1", "clientid": "cid-1", "textname": "Dev one", "roles": [],
         "groups": []},
        {"username": "dev-2", "roles": [{"rolename": "sensors"}], "groups": [],
         "disabled": True},
        {"username": "admin", "textname": "broker admin",
         "roles": [{"rolename": "admin"}], "groups": []}]}}
PLAIN = {"command": "listClients", "correlationData": "b33dc238-1",
         "data": {"totalCount": 3, "clients": ["dev-1", "dev-2", "admin"]}}
GET = {"command": "getClient", "correlationData": "b33dc238-2", "data": {"client": {
    "username": "dev-1", "clientid": "cid-1", "textname": "Dev one", "roles": [],
    "groups": []}}}


def mosquitto(data: bytes | str, context: SourceContext = CONTEXT
              ) -> tuple[list[Sighting], list[Refusal]]:
    raw = data.encode() if isinstance(data, str) else data
    return collect(MosquittoClientsSource().read(io.BytesIO(raw), context))


def emqx(data: bytes | str, context: SourceContext = CONTEXT
         ) -> tuple[list[Sighting], list[Refusal]]:
    raw = data.encode() if isinstance(data, str) else data
    return collect(EmqxClientsSource().read(io.BytesIO(raw), context))


@pytest.mark.parametrize("form", ["compact", "pretty", "lines"],
                         ids=["ok/one-line", "ok/pretty-printed", "ok/json-lines"])
def test_mosquitto_ok_every_client_is_a_credential(form: str) -> None:
    envelope = {"responses": [VERBOSE]}
    text = {"compact": json.dumps(envelope), "pretty": json.dumps(envelope, indent=2),
            "lines": json.dumps(envelope) + "\n" + json.dumps({"responses": [GET]})}[form]
    sightings, refusals = mosquitto(text)
    assert refusals == []
    assert [(s.username, s.client_id) for s in sightings][:3] == [
        ("dev-1", "cid-1"), ("dev-2", None), ("admin", None)]
    first = sightings[0]
    assert (first.source, first.seen_at, first.site) == ("mosquitto", NOW, "plant-3")
    assert first.identifiers()[:2] == [(IdentifierKind.CLIENT_ID, "cid-1"),
                                       (IdentifierKind.CLIENT_ID, "dev-1")]
    assert all("mqtt.plant:8883" in (s.detail or "") for s in sightings)
    assert "(disabled)" in (sightings[1].detail or "")
    assert "roles sensors" in (sightings[1].detail or "")


def test_mosquitto_ok_plain_listing_single_response_and_bare_data() -> None:
    data = "\n".join(json.dumps(v) for v in (PLAIN, GET, GET["data"], ["late-1", "late-2"]))
    sightings, refusals = mosquitto(data)
    assert refusals == []
    assert [s.username for s in sightings] == ["dev-1", "dev-2", "admin", "dev-1", "dev-1",
                                               "late-1", "late-2"]


def test_mosquitto_ok_errors_refused_other_commands_skipped() -> None:
    envelope = {"responses": [
        {"command": "getClient", "error": "Client not found", "correlationData": "x"},
        {"command": "listRoles", "data": {"totalCount": 0, "roles": []}},
        PLAIN]}
    reading = MosquittoClientsSource().read(io.BytesIO(json.dumps(envelope).encode()), CONTEXT)
    sightings, refusals = collect(reading)
    assert [r.reason for r in refusals] == ["getClient: Client not found"]
    assert reading.skipped == {"listRoles": 1}
    assert len(sightings) == 3


def test_mosquitto_ok_mosquitto_ctrl_text() -> None:
    # ``mosquitto_ctrl dynsec listClients``, then ``getClient dev-a``, then $SYS counters
    text = ("dev-a\niotiam-broker-admin\n\n"
            "Username: dev-b\nClientid: cid-b\nRoles:          sensors (priority: -1)\n"
            "                actuators (priority: 2)\nGroups:\n"
            "$SYS/broker/clients/connected 3\n$SYS/broker/clients/total 7\n")
    reading = MosquittoClientsSource().read(io.BytesIO(text.encode()), CONTEXT)
    sightings, refusals = collect(reading)
    assert refusals == []
    assert [(s.username, s.client_id) for s in sightings] == [
        ("dev-a", None), ("iotiam-broker-admin", None), ("dev-b", "cid-b")]
    assert reading.skipped == {"$SYS": 2}


def test_mosquitto_ok_default_time_is_now_without_one() -> None:
    before = time.time()
    (sighting,), _ = mosquitto("dev-a\n", SourceContext())
    assert before <= sighting.seen_at <= time.time()
    assert sighting.detail == "dynsec client on mosquitto"


def test_mosquitto_fail_hostile_entries_refused_alone() -> None:
    clients = [{"username": "x" * 300}, {"username": 42}, {"roles": []},
               {"username": "nul\x00byte"}, "ok-1"]
    sightings, refusals = mosquitto(json.dumps({"responses": [
        {"command": "listClients", "data": {"clients": clients}}]}, indent=1))
    assert [s.username for s in sightings] == ["ok-1"]
    assert [r.position for r in refusals] == [1, 2, 3, 4]  # record numbers in one document
    reasons = " | ".join(r.reason for r in refusals)
    for expected in ("longer than", "not a string", "neither username nor client id",
                     "NUL"):
        assert expected in reasons


@pytest.mark.parametrize("data", [bytes(range(256)) * 8, b"\x00\x01\x02binary\n",
                                  b"{\n  \"responses\": [\n", b"[1, 2,\n"],
                         ids=["fail/garbage", "fail/control-bytes", "fail/truncated-document",
                              "fail/truncated-array"])
def test_mosquitto_fail_not_a_listing(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        mosquitto(data)


def test_mosquitto_fail_text_lines_that_are_no_usernames() -> None:
    sightings, refusals = mosquitto(b"dev-a\nJohn Smith\nbad\x07bell\n\xff\xfe\ndev-b\n")
    assert [s.username for s in sightings] == ["dev-a", "dev-b"]
    assert [r.position for r in refusals] == [2, 3, 4]
    assert all("not a username" in r.reason for r in refusals)


@pytest.mark.parametrize("other", [
    b"#separator \\x09\n#set_separator\t,\n#path\tconn\n",
    b"mac,ip,host name\naa:bb:cc:dd:ee:ff,10.0.0.1,cam\n",
    b"lease 10.0.0.5 {\n  starts 4 2026/12/03 10:00:00;\n}\n",
], ids=["fail/zeek-log", "fail/csv", "fail/dhcpd-leases"])
def test_broker_fail_another_kind_of_file(other: bytes) -> None:
    with pytest.raises(InvalidInput):
        mosquitto(other)
    with pytest.raises(InvalidInput):
        emqx(other)


def test_mosquitto_fail_json_lines_bad_line_refused_rest_read() -> None:
    data = json.dumps(PLAIN) + "\n{oops\n" + json.dumps(42) + "\n" + json.dumps(GET) + "\n"
    sightings, refusals = mosquitto(data)
    assert [r.position for r in refusals] == [2, 3]
    assert len(sightings) == 4


PAGE: dict[str, Any] = {"data": [
    {"clientid": "sensor-7", "username": "plant", "ip_address": "192.168.10.7",
     "port": 52311, "connected": True, "connected_at": "2026-12-06T18:00:00.000+08:00",
     "created_at": "2026-12-06T17:59:59.000+08:00", "proto_name": "MQTT", "proto_ver": 5,
     "node": "emqx@10.0.0.1", "clean_start": True, "keepalive": 60, "is_bridge": False,
     "recv_msg": 10, "send_msg": 4, "mqueue_len": 0, "awaiting_rel_cnt": 0},
    {"clientid": "legacy-2", "username": None, "ip_address": "::ffff:192.168.10.8",
     "port": 40000, "connected": False, "connected_at": "2026-12-05T09:00:00.000+00:00",
     "disconnected_at": "2026-12-05T10:00:00.000+00:00", "proto_ver": 4,
     "node": "emqx@10.0.0.2"}],
    "meta": {"page": 1, "limit": 100, "count": 2, "hasnext": False}}


def test_emqx_ok_page_clients_with_addresses_and_times() -> None:
    sightings, refusals = emqx(json.dumps(PAGE))
    assert refusals == []
    first, second = sightings
    assert (first.source, first.client_id, first.username, first.ip) == (
        "emqx", "sensor-7", "plant", "192.168.10.7")
    assert first.seen_at == 1796551200.0  # 18:00+08:00 is 10:00Z
    assert "emqx@10.0.0.1" in (first.detail or "") and "MQTT v5" in (first.detail or "")
    assert (second.ip, second.username) == ("192.168.10.8", None)
    assert second.seen_at == 1796464800.0  # disconnected: when it left
    assert first.open_ports == ()  # the client's source port is no open port


def test_emqx_ok_json_lines_pages_single_client_and_array() -> None:
    more = dict(PAGE, meta={"page": 1, "limit": 2, "hasnext": True})
    data = "\n".join([json.dumps(more), json.dumps(PAGE["data"][0]),
                      json.dumps(PAGE["data"]), json.dumps(more)])
    reading = EmqxClientsSource().read(io.BytesIO(data.encode()), CONTEXT)
    sightings, refusals = collect(reading)
    assert refusals == [] and len(sightings) == 7
    assert reading.skipped == {"emqx pages not in this input (meta.hasnext)": 1}


def test_emqx_fail_bad_clients_refused_with_their_line() -> None:
    page = {"data": [{"clientid": "ok"}, {"clientid": "bad-ip", "ip_address": "999.1.1.1"},
                     {"clientid": "bad-time", "connected": True, "connected_at": "soon"},
                     "not an object", {"username": None, "clientid": None}],
            "meta": {"hasnext": False}}
    sightings, refusals = emqx(json.dumps(page) + '\n{"unknown": 1}\n')
    assert [s.client_id for s in sightings] == ["ok"]
    assert [r.position for r in refusals] == [1, 1, 1, 1, 2]
    reasons = " | ".join(r.reason for r in refusals)
    for expected in ("not an IP address", "not a time", "not an EMQX client object",
                     "neither username nor client id", "not an EMQX clients page"):
        assert expected in reasons


def test_emqx_fail_garbage_is_not_a_listing() -> None:
    with pytest.raises(InvalidInput):
        emqx(bytes(range(256)) * 8)


def test_document_over_the_bound_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    # the bound is 64 MiB; lowered here so that the test stays small
    monkeypatch.setattr("iotiam.discovery.sources.broker_clients.MAX_DOCUMENT", 4096)
    pretty = json.dumps({"data": [PAGE["data"][0]] * 40, "meta": {}}, indent=2)
    with pytest.raises(PayloadTooLarge, match="JSON lines"):
        emqx(pretty)
    assert _common.MAX_DOCUMENT == 64 * 1024 * 1024


def test_10mb_line_refused_in_bounded_memory() -> None:
    # a broker's one-line answer may be a few MB (an EMQX page of 10,000 clients): lines
    # are bounded at 8 MiB here, and one over it is refused without being held whole
    data = (json.dumps(PAGE) + "\n" + '{"data": ["' + "A" * (10 * 1024 * 1024) + '"]}\n'
            + json.dumps(PAGE) + "\n").encode()
    (sightings, refusals), peak = peak_memory(lambda: emqx(data))
    assert [r.position for r in refusals] == [2] and "longer than" in refusals[0].reason
    assert "one page of the listing per line" in refusals[0].reason
    assert len(sightings) == 4
    assert peak < 2 * broker_clients.MAX_LINE + 1024 * 1024, peak


def test_one_line_page_of_10000_clients_is_read() -> None:
    line = emqx_line(0, per_page=10_000)
    assert len(line) > lines.MAX_LINE  # over the other sources' 64 KiB line bound
    sightings, refusals = emqx(line)
    assert refusals == [] and len(sightings) == 10_000


def test_emqx_ok_streams_json_lines_in_bounded_memory() -> None:
    reading = EmqxClientsSource().read(generated(2_000, emqx_line), CONTEXT)
    records, grown = blocks_while_reading(reading)
    assert records == 200_000
    assert grown < 20_000, grown
