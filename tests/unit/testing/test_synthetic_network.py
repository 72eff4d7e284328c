"""The synthetic network generator: deterministic, its files parse as their formats,
its truth adds up, its traps are really there, and its scoring can fail."""

from __future__ import annotations

import base64
import csv
import hashlib
import itertools
import json
import re
import tracemalloc
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from iotiam.discovery.models import Sighting, normalize_ip, normalize_mac
from iotiam.testing.synthetic_bulk import BulkPlan, expected, write_bulk_jsonl, write_bulk_zeek
from iotiam.testing.synthetic_evidence import Issued, Truth, observations
from iotiam.testing.synthetic_formats import EvidenceFile, write_evidence
from iotiam.testing.synthetic_network import (
    CHECKED_FACTORS,
    DAY,
    DAY0,
    IP_REUSE_GAP_DAYS,
    Network,
    Record,
    build_network,
)
from iotiam.testing.synthetic_scoring import false_matches, score_assets, score_risks


@pytest.fixture(scope="module")
def network() -> Network:
    return build_network(7, registered=80, ratio=3.0)


@pytest.fixture(scope="module")
def truth(network: Network) -> Truth:
    return observations(network, {})


@pytest.fixture(scope="module")
def files(truth: Truth, tmp_path_factory: pytest.TempPathFactory) -> list[EvidenceFile]:
    return write_evidence(truth, tmp_path_factory.mktemp("evidence"))


def of(files: list[EvidenceFile], source: str) -> list[EvidenceFile]:
    chosen = [f for f in files if f.source == source]
    assert chosen, f"no {source} file written"
    return chosen


def test_ok_same_seed_same_bytes_other_seed_other_network(tmp_path: Path) -> None:
    def digests(seed: int, where: Path) -> dict[str, str]:
        written = write_evidence(observations(build_network(seed, registered=40), {}), where)
        return {f.path.name: hashlib.sha256(f.path.read_bytes()).hexdigest() for f in written}
    first = digests(3, tmp_path / "a")
    assert digests(3, tmp_path / "b") == first
    assert digests(4, tmp_path / "c") != first


def test_fail_ratio_outside_two_to_five() -> None:
    with pytest.raises(ValueError, match="between 2 and 5"):
        build_network(1, registered=10, ratio=1.5)


def test_ok_truth_counts_add_up(network: Network, truth: Truth,
                                files: list[EvidenceFile]) -> None:
    counts = truth.counts()
    assert counts["registered"] == 80
    assert counts["unmanaged"] == 240 == counts["unmanaged.observed"]
    assert sum(f.records for f in files) == len(truth.records) == counts["records"]
    for source in ("nmap", "dhcpd", "dnsmasq", "zeek", "suricata", "cmdb", "jsonl"):
        assert sum(f.records for f in of(files, source)) == counts[f"records.{source}"] > 0
    for record in truth.records:
        clone = (record.unmanaged or "").startswith("clone:")
        assert (record.registered is None) != (record.unmanaged is None) or clone, record
    for factor in CHECKED_FACTORS:
        assert counts.get(f"risk.{factor}", 0) > 0, f"no {factor} seeded"


def test_ok_one_unmanaged_device_is_seen_by_several_sources(truth: Truth) -> None:
    sources: dict[str, set[str]] = defaultdict(set)
    for record in truth.records:
        if record.unmanaged:
            sources[record.unmanaged].add(record.source)
    several = [label for label, seen in sources.items() if len(seen) >= 3]
    assert len(several) > 0.5 * len(sources)


def test_ok_dhcp_churn_reuses_addresses_never_at_once(truth: Truth) -> None:
    days: dict[tuple[str, str], dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for record in truth.records:
        if record.event == "lease" and record.ip:
            who = record.unmanaged or record.registered or ""
            days[(record.site, record.ip)][who].add(int((record.seen_at - DAY0) // DAY))
    reused = {k: v for k, v in days.items() if len(v) > 1}
    assert len(reused) > 0.2 * len(days), "too little churn to trap a naive IP matcher"
    for site_ip, holders in reused.items():
        spans = sorted((min(d), max(d)) for d in holders.values())
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start - end > IP_REUSE_GAP_DAYS, (site_ip, spans)


def test_ok_registered_ip_attributes_are_reused_by_others(network: Network,
                                                          truth: Truth) -> None:
    held_by = defaultdict(set)
    for record in truth.records:
        if record.ip and record.event == "lease":
            held_by[(record.site, record.ip)].add(record.unmanaged or record.registered)
    trapped = [d for d in network.registered if d.fate in ("dormant", "retired")
               and "ip" in d.attributes
               and held_by[(d.site, d.attributes["ip"])] - {d.label}]
    assert trapped


def test_ok_shared_credentials_are_used_at_once_from_two_places(network: Network,
                                                                truth: Truth) -> None:
    places: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for record in truth.records:
        key = record.cert.sha256 if record.cert else record.psk_identity
        if key and record.ip:
            places[key].add((int((record.seen_at - DAY0) // DAY), record.ip))
    shared = {d.cert.sha256 if d.cert else d.psk_identity
              for d in network.unmanaged if d.shares_with}
    assert len(shared) >= 4
    for key in shared:
        by_day: dict[int, set[str]] = defaultdict(set)
        for day, ip in places[key]:
            by_day[day].add(ip)
        assert any(len(ips) >= 2 for ips in by_day.values()), key


def test_ok_nmap_xml_is_well_formed_with_an_address_per_host(files: list[EvidenceFile]
                                                              ) -> None:
    for evidence in of(files, "nmap"):
        text = evidence.path.read_text()
        assert text.splitlines()[1] == "<!DOCTYPE nmaprun>"
        root = ET.fromstring(text)
        assert root.tag == "nmaprun" and root.get("scanner") == "nmap"
        hosts = root.findall("host")
        assert len(hosts) == evidence.records
        for host in hosts:
            kinds = {a.get("addrtype"): a.get("addr") for a in host.findall("address")}
            normalize_ip(kinds["ipv4"] or "")
            normalize_mac(kinds["mac"] or "")
        assert root.find("runstats/hosts").get("up") == str(evidence.records)  # type: ignore[union-attr]


LEASE = re.compile(r"lease (\S+) \{\n((?:  [^\n]*;\n)+)\}\n")


def test_ok_dhcpd_leases_parse_as_declarations(files: list[EvidenceFile]) -> None:
    for evidence in of(files, "dhcpd"):
        text = evidence.path.read_text()
        body = "".join(line + "\n" for line in text.splitlines()
                       if line and not line.startswith("#")
                       and line != "authoring-byte-order little-endian;")
        leases = LEASE.findall(body)
        assert LEASE.sub("", body) == "", "text outside a lease declaration"
        assert len(leases) == evidence.records
        for ip, statements in leases:
            normalize_ip(ip)
            starts = re.search(r"starts (\d) (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d);", statements)
            assert starts, statements
            moment = datetime.strptime(starts.group(2) + "+0000", "%Y/%m/%d %H:%M:%S%z")
            assert int(starts.group(1)) == (moment.weekday() + 1) % 7
            mac = re.search(r"hardware ethernet ([0-9a-f:]{17});", statements)
            assert mac and normalize_mac(mac.group(1))


def test_ok_dnsmasq_zeek_cmdb_and_jsonl_parse(files: list[EvidenceFile],
                                              truth: Truth) -> None:
    for evidence in of(files, "dnsmasq"):
        for line in evidence.path.read_text().splitlines():
            expiry, mac, ip, _host, _client = line.split(" ")
            assert int(expiry) > DAY0 and normalize_mac(mac) and normalize_ip(ip)
    for evidence in of(files, "zeek"):
        lines = evidence.path.read_text().splitlines()
        names = next(x for x in lines if x.startswith("#fields")).split("\t")[1:]
        types = next(x for x in lines if x.startswith("#types")).split("\t")[1:]
        assert len(names) == len(types) and lines[-1].startswith("#close")
        rows = [x.split("\t") for x in lines if not x.startswith("#")]
        assert len(rows) == evidence.records
        assert all(len(r) == len(names) for r in rows)
        normalize_ip(rows[0][names.index("id.orig_h")])
    cmdb = of(files, "cmdb")[0]
    with cmdb.path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    macs = {r.mac for r in truth.records if r.source == "cmdb"}
    assert {normalize_mac(r["MAC Address"]) for r in rows} == macs
    names_of_sighting = {f.name for f in fields(Sighting)}
    for line in of(files, "jsonl")[0].path.read_text().splitlines():
        data: dict[str, Any] = json.loads(line)
        assert set(data) <= names_of_sighting
        seen = datetime.fromisoformat(data.pop("seen_at").replace("Z", "+00:00"))
        Sighting(source="jsonl", seen_at=seen.timestamp(), **data)


def test_ok_suricata_client_certificate_is_the_devices(files: list[EvidenceFile],
                                                       truth: Truth) -> None:
    certs = {r.cert.sha256 for r in truth.records if r.cert}
    kinds: set[str] = set()
    for evidence in of(files, "suricata"):
        for line in evidence.path.read_text().splitlines():
            event = json.loads(line)
            kinds.add(event["event_type"])
            normalize_ip(event["src_ip"])
            if event["event_type"] == "tls":
                client = event["tls"]["client"]
                der = base64.b64decode(client["certificate"])
                assert hashlib.sha256(der).hexdigest() in certs
                sha1 = hashlib.sha1(der, usedforsecurity=False).hexdigest()
                assert client["fingerprint"].replace(":", "") == sha1
                parsed = x509.load_der_x509_certificate(der)
                assert int(client["serial"].replace(":", ""), 16) == parsed.serial_number
    assert kinds == {"tls", "mqtt", "flow"}


def ideal_assets(truth: Truth) -> list[dict[str, Any]]:
    """What a perfect reconciler answers: one asset per unmanaged device (or pair)."""
    groups = truth.groups()
    merged: dict[str, list[Record]] = defaultdict(list)
    for record in truth.records:
        if record.unmanaged and record.unmanaged in groups:
            merged[groups[record.unmanaged]].append(record)
    return [_asset(name, records) for name, records in merged.items()]


def _asset(name: str, records: list[Record], device_id: str | None = None
           ) -> dict[str, Any]:
    idents: set[tuple[str, str]] = set()
    for r in records:
        if r.cert:
            idents |= {("certificate", r.cert.sha256),
                       ("issuer-serial", f"{r.cert.issuer}|{r.cert.serial}")}
        for kind, value in (("psk-identity", r.psk_identity), ("client-id", r.client_id),
                            ("mac", r.mac), ("hostname", r.hostname), ("ip", r.ip)):
            if value:
                idents.add((kind, value))
    return {"id": name, "site": records[0].site, "ip": records[-1].ip,
            "first_seen": min(r.seen_at for r in records),
            "last_seen": max(r.seen_at for r in records), "device_id": device_id,
            "identifiers": [{"kind": k, "value": v} for k, v in sorted(idents)]}


def naive_ip_assets(truth: Truth) -> list[dict[str, Any]]:
    """A reconciler that joins records on any shared value, an IP at any time included."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    keys_of = []
    for r in truth.records:
        keys = [v for v in (r.mac, r.client_id, r.psk_identity, r.cert and r.cert.sha256) if v]
        keys += [f"{r.site}|{r.ip}"] if r.ip else []
        keys_of.append(keys)
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
    members: dict[str, list[Record]] = defaultdict(list)
    for r, keys in zip(truth.records, keys_of, strict=True):
        if keys:
            members[find(keys[0])].append(r)
    return [_asset(root, rs, next((r.registered for r in rs if r.registered), None))
            for root, rs in members.items()]


def test_ok_scoring_a_perfect_answer_passes_every_threshold(truth: Truth) -> None:
    score = score_assets(truth, ideal_assets(truth))
    assert (score.recall, score.splits, score.merges, score.false_device_matches) \
        == (1.0, 0, 0, 0)
    entries = [{"subject": "asset", "subject_id": truth.groups()[label],
                "factors": [{"factor": f, "evidence": {}} for f in factors]}
               for label, factors in truth.risks().items()
               if not truth.network.devices[label].registered]
    entries += [{"subject": "device", "subject_id": label,
                 "factors": [{"factor": f, "evidence": {}} for f in factors]}
                for label, factors in truth.risks().items()
                if truth.network.devices[label].registered]
    risks = score_risks(truth, entries, score)
    assert all(not r.missed and not r.extra for r in risks.values())
    assert false_matches(truth, score, risks) == 0


def test_fail_naive_ip_matching_merges_strangers_and_misses_risks(truth: Truth) -> None:
    score = score_assets(truth, naive_ip_assets(truth))
    observed = score.unmanaged + len({r.registered for r in truth.records if r.registered})
    assert score.merges + score.false_device_matches > 0.01 * observed
    risks = score_risks(truth, [], score)
    assert all(r.missed == r.seeded for r in risks.values())


def test_ok_scoring_reads_certificate_entries_by_fingerprint_in_evidence(truth: Truth
                                                                        ) -> None:
    device = next(d for d in truth.network.unmanaged if d.cert and "weak-key" in d.risks)
    assert device.cert is not None
    entry = {"subject": "certificate", "subject_id": "cert-1",
             "factors": [{"factor": "weak-key", "evidence": {"fingerprint": device.cert.sha256}}]}
    risks = score_risks(truth, [entry], score_assets(truth, []))
    assert device.label in risks["weak-key"].reported


def test_ok_bulk_files_stream_in_bounded_memory(tmp_path: Path) -> None:
    plan = BulkPlan(sightings=40_000, devices=9_000, registered=3_000)
    tracemalloc.start()
    try:
        got = write_bulk_jsonl(tmp_path / "bulk.jsonl", plan)
        write_bulk_zeek(tmp_path / "bulk.log", plan)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes"
    lines = (tmp_path / "bulk.jsonl").read_text().splitlines()
    assert got == expected(plan) and got.read == len(lines) == 40_000
    assert got.matched == sum('"client_id"' in line for line in lines)
    macs = {json.loads(line)["mac"] for line in lines}
    assert len(macs) == got.unmanaged_assets + got.registered_seen == 9_000
    zeek = [x for x in (tmp_path / "bulk.log").read_text().splitlines() if x[:1] != "#"]
    assert len(zeek) == 40_000


def test_ok_registration_issued_values_become_identity_keys(network: Network) -> None:
    device = next(d for d in network.registered if d.credential == "psk")
    with_psk = observations(network, {device.label: Issued(psk_identity="psk-xyz")})
    assert with_psk.owners()["psk-xyz"] == {device.label}


def test_ok_an_address_only_asset_is_whoever_held_the_address_then(truth: Truth) -> None:
    leases: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in truth.records:
        if record.event == "lease" and record.ip and record.unmanaged:
            leases[(record.site, record.ip)].append(record)
    site_ip, records = next((k, v) for k, v in sorted(leases.items())
                            if len({r.unmanaged for r in v}) > 1)
    first, last = records[0], records[-1]
    assert first.unmanaged != last.unmanaged

    def ip_only(name: str, at: Record) -> dict[str, Any]:
        return {"id": name, "site": site_ip[0], "ip": site_ip[1], "device_id": None,
                "first_seen": at.seen_at + 3600, "last_seen": at.seen_at + 7200,
                "identifiers": [{"kind": "ip", "value": site_ip[1]}]}
    answer = [*ideal_assets(truth), ip_only("early", first), ip_only("late", last)]
    score = score_assets(truth, answer)
    assert score.identities_of["early"] == {first.unmanaged}
    assert score.identities_of["late"] == {last.unmanaged}
    assert (score.splits, score.merges, score.recall) == (2, 0, 1.0)


def test_ok_a_shared_credential_pair_may_be_one_asset_or_two_but_not_three(
        truth: Truth) -> None:
    pair = next(d for d in truth.network.unmanaged if d.shares_with and d.cert)
    group = truth.groups()[pair.label]
    answer = [a for a in ideal_assets(truth) if a["id"] != group]
    for label in (pair.label, pair.shares_with):
        records = [r for r in truth.records if r.unmanaged == label]
        answer.append(_asset(f"box-{label}", records))
    two = score_assets(truth, answer)
    assert (two.splits, two.merges, two.recall) == (0, 0, 1.0)
    third = [r for r in truth.records if r.unmanaged == pair.label and r.cert][:1]
    three = score_assets(truth, [*answer, _asset("third", third)])
    assert three.splits == 1
