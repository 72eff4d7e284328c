"""The discovery stores answer alike on memory, SQLite and PostgreSQL (the fixtures and
seed of ``test_store_contracts.py``: tenants acme and beta, devices d1, d3 in acme, d2
in beta)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from iotiam.discovery.models import (
    AssetStatus,
    Binding,
    DevicePresence,
    DiscoveredAsset,
    IdentifierKind,
    Match,
    RegisteredDevice,
    Sighting,
    ip_key,
)
from iotiam.errors import InvalidInput
from iotiam.pki.models import CaRole
from iotiam.pki.ports import SignedCertificate, StoredCa
from storage import test_store_contracts as contracts
from storage.test_store_contracts import ACME, BETA, certificate, device, psk

# the fixtures of the store contracts, used here under their own names
db = contracts.db
migrated_sqlite = contracts.migrated_sqlite

K = IdentifierKind
T = 1_772_000_000.0


def ca_pem() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + timedelta(days=9)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.PEM).decode(), name.rfc4514_string()


def test_registered_identities_each_kind(db: Any) -> None:
    pem, issuer = ca_pem()
    with db() as uow:
        uow.devices.add(replace(device("m1"), attributes={
            "mac": "AA-BB-CC-DD-EE-01", "hostname": "Cam-1.", "ip": "10.0.0.7"}))
        uow.devices.add(replace(device("m2", BETA), attributes={"mac": "aabb.ccdd.ee02"}))
        uow.cas.add(StoredCa("ca-other", CaRole.ISSUING, pem, "KEY", T0_DT))
        uow.certificates.reserve_many([replace(certificate(0xAB01), issuer_id="ca-other",
                                               device_id="m1"),
                                       replace(certificate(0x0F, "d2", BETA),
                                               issuer_id="ca-other")])
        uow.certificates.complete([SignedCertificate("ca-other", 0xAB01, "PEM", "f" * 64, "m1"),
                                   SignedCertificate("ca-other", 0x0F, "PEM", "e" * 64, "d2")])
        uow.psks.add(psk("p1", "d3"))
    m1, d3 = RegisteredDevice("m1", ACME), RegisteredDevice("d3", ACME)
    with db.reading() as uow:
        ids = uow.registered_identities
        assert ids.devices_for(K.CERTIFICATE, ["f" * 64, "e" * 64, "0" * 64],
                               org_path=ACME) == {"f" * 64: m1}
        assert ids.devices_for(K.CERTIFICATE, ["e" * 64], org_path="/root/") == {
            "e" * 64: RegisteredDevice("d2", BETA)}
        assert ids.devices_for(K.ISSUER_SERIAL, [f"{issuer}|ab01", f"{issuer}|f",
                                                 "CN=nobody|ab01"], org_path=ACME) == {
            f"{issuer}|ab01": m1}
        assert ids.devices_for(K.PSK_IDENTITY, ["d3", "zz"], org_path=ACME) == {"d3": d3}
        assert ids.devices_for(K.CLIENT_ID, ["d1", "d2", "m1"], org_path=ACME) == {
            "d1": RegisteredDevice("d1", ACME), "m1": m1}
        assert ids.devices_for(K.MAC, ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"],
                               org_path=ACME) == {"aa:bb:cc:dd:ee:01": m1}
        assert ids.devices_for(K.MAC, ["aa:bb:cc:dd:ee:02"], org_path="/root/") == {
            "aa:bb:cc:dd:ee:02": RegisteredDevice("m2", BETA)}
        assert ids.devices_for(K.HOSTNAME, ["cam-1"], org_path=ACME) == {"cam-1": m1}
        # an address is the device's at its own site only
        assert ids.devices_for(K.IP, [ip_key("hall 3", "10.0.0.7"), ip_key("x", "10.0.0.7")],
                               org_path=ACME) == {ip_key("hall 3", "10.0.0.7"): m1}
        assert ids.devices_for(K.MAC, [], org_path=ACME) == {}
        with pytest.raises(InvalidInput):
            ids.devices_for(K.CLIENT_ID, ["d1"], org_path="/root")


T0_DT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def asset(asset_id: str, path: str = ACME, **fields: Any) -> DiscoveredAsset:
    values: dict[str, Any] = {
        "id": asset_id, "org_path": path, "status": AssetStatus.UNMANAGED, "first_seen": T,
        "last_seen": T + 5, "sources": ("arp", "nmap"), "identifiers": (), "sightings": 2,
        "site": "hq", "ip": "10.0.0.1", "open_ports": (22, 80)} | fields
    return DiscoveredAsset(**values)


def sighting(n: int, **fields: Any) -> Sighting:
    return Sighting(source=fields.pop("source", "nmap"), seen_at=T + n, **fields)


def test_assets_bindings_and_merge(db: Any) -> None:
    with db() as uow:
        store = uow.discovery
        store.save_assets([asset("as-1"), asset("as-2", sources=("zeek",)),
                           asset("as-3", BETA, status=AssetStatus.MATCHED, device_id="d2")])
        store.save_bindings([
            Binding(K.MAC, "aa:bb:cc:dd:ee:01", ACME, T, T + 5, asset_id="as-1"),
            Binding(K.IP, ip_key("hq", "10.0.0.1"), ACME, T, T + 5, asset_id="as-1"),
            Binding(K.HOSTNAME, "cam", ACME, T, T, asset_id="as-2"),
            Binding(K.HOSTNAME, "cam", BETA, T, T + 9, asset_id="as-3"),
            Binding(K.HOSTNAME, "cam", "/root/", T, T + 1, device_id="d1")])
        assert store.claim_digests([b"1" * 16]) == {b"1" * 16}
        store.add_sightings([(sighting(1, hostname="cam"), b"1" * 16, ACME,
                              Match(K.HOSTNAME, 0.7, asset_id="as-2"))])
    with db.reading() as uow:
        store = uow.discovery
        assert {k: (b.org_path, b.asset_id) for k, b in store.bindings_for(
            K.HOSTNAME, ["cam", "nope"], org_path="/root/").items()} == {"cam": ("/root/", None)}
        assert store.bindings_for(K.HOSTNAME, ["cam"], org_path=ACME)["cam"].asset_id == "as-2"
        # two org units below the caller's: the latest seen
        assert store.bindings_for(K.HOSTNAME, ["cam"], org_path="/root/beta/")["cam"
                                                                               ].asset_id == "as-3"
        got = store.asset("as-1")
        assert got == asset("as-1")._replace(identifiers=((K.MAC, "aa:bb:cc:dd:ee:01"),
                                                          (K.IP, "10.0.0.1")))
        assert store.asset("nope") is None
        assert set(store.assets_by_id(["as-1", "as-3", "nope"])) == {"as-1", "as-3"}
        assert [a.id for a in store.assets(org_path="/root/")] == ["as-1", "as-2", "as-3"]
        assert [a.id for a in store.assets(org_path="/root/", after="as-1", limit=1)] == ["as-2"]
        assert [a.id for a in store.assets(org_path=ACME, source="nmap")] == ["as-1"]
        assert [a.id for a in store.assets(org_path="/root/", status="matched")] == ["as-3"]
        assert store.count_assets(org_path="/root/", site="hq") == 3
        assert store.count_assets(org_path=BETA) == 1
        assert [a.id for a in store.iter_assets(org_path=ACME)] == ["as-1", "as-2"]
    with db() as uow:
        uow.discovery.save_bindings([
            Binding(K.HOSTNAME, "tie", BETA, T, T + 3, asset_id="as-3"),
            Binding(K.HOSTNAME, "tie", ACME, T, T + 3, asset_id="as-1"),
            Binding(K.HOSTNAME, "late", ACME, T, T + 3, asset_id="as-1"),
            Binding(K.HOSTNAME, "late", BETA, T, T + 4, asset_id="as-3")])
    with db.reading() as uow:
        # no binding of the caller's own: the latest of those below it, and on a tie the
        # smaller org path, whatever order the rows come back in
        found = uow.discovery.bindings_for(K.HOSTNAME, ["tie", "late"], org_path="/root/")
        assert {k: b.org_path for k, b in found.items()} == {"tie": min(ACME, BETA),
                                                             "late": BETA}
    with db() as uow:
        uow.discovery.merge_assets({"as-2": "as-1"})
    with db.reading() as uow:
        store = uow.discovery
        assert store.asset("as-2") is None
        assert (K.HOSTNAME, "cam") in store.asset("as-1").identifiers
        assert list(store.iter_credentials_seen(org_path=ACME)) == []  # a hostname is none
        assert store.assets(org_path=ACME)[0].sightings == 2


def test_sightings_idempotent_and_credentials(db: Any) -> None:
    fp = "c" * 64
    rows = [(sighting(1, certificate=fp, ip="10.0.0.1", site="hq", client_id="d1"), b"a" * 16,
             ACME, Match(K.CERTIFICATE, 1.0, device_id="d1")),
            (sighting(2, certificate=fp, ip="10.0.0.2", site="hq", open_ports=(1, 2)),
             b"b" * 16, ACME, Match(K.CERTIFICATE, 0.75, asset_id="as-9")),
            (sighting(3, psk_identity="shared", issuer="CN=x", serial="1"), b"c" * 16, BETA,
             Match(K.PSK_IDENTITY, 0.95, asset_id="as-8"))]
    plain = (sighting(4, mac="aa:bb:cc:dd:ee:04", ip="10.0.0.4", site="hq"), b"d" * 16, ACME,
             Match(K.MAC, 0.85, asset_id="as-7"))
    with db() as uow:
        uow.discovery.begin_import()
        assert uow.discovery.claim_digests([b"a" * 16, b"b" * 16, b"c" * 16, b"d" * 16]
                                           ) == {b"a" * 16, b"b" * 16, b"c" * 16, b"d" * 16}
        uow.discovery.add_sightings([*rows, plain])
    with db() as uow:
        assert uow.discovery.claim_digests([b"a" * 16, b"z" * 16]) == {b"z" * 16}
        assert uow.discovery.claim_digests([b"z" * 16, b"d" * 16]) == set()
    with pytest.raises(RuntimeError), db() as uow:
        assert uow.discovery.claim_digests([b"y" * 16]) == {b"y" * 16}
        raise RuntimeError("the batch fails: its digests are not kept")
    with db() as uow:
        assert uow.discovery.claim_digests([b"y" * 16]) == {b"y" * 16}
    with db.reading() as uow:
        (cert,) = uow.discovery.iter_credentials_seen(org_path=ACME)
        assert (cert.kind, cert.value, cert.device_ids, cert.asset_ids, cert.last_seen,
                cert.places) == (K.CERTIFICATE, fp, ("d1",), ("as-9",), T + 2,
                                 (("hq", "10.0.0.1"), ("hq", "10.0.0.2")))
        every = list(uow.discovery.iter_credentials_seen(org_path="/root/"))
        assert [(c.kind, c.value) for c in every] == [
            (K.CERTIFICATE, fp), (K.ISSUER_SERIAL, "CN=x|1"), (K.PSK_IDENTITY, "shared")]


def test_presence(db: Any) -> None:
    rows = [DevicePresence("d1", ACME, T, T + 9, frozenset({"arp", "nmap"}), 4,
                           {("hq", "10.0.0.1"): T + 9, (None, "10.9.9.9"): T - 10 ** 6}),
            DevicePresence("d2", BETA, T, T, frozenset({"zeek"}), 1)]
    with db() as uow:
        uow.discovery.save_presence(rows)
    with db() as uow:
        assert uow.discovery.presence_for(["d1", "d3"]) == {"d1": rows[0]}
        uow.discovery.save_presence([replace(rows[0], sightings=5)])
    with db.reading() as uow:
        seen = list(uow.discovery.iter_devices_seen(org_path="/root/"))
        assert [(s.device_id, s.sightings, s.sources, s.places) for s in seen] == [
            ("d1", 5, ("arp", "nmap"), (("hq", "10.0.0.1"),)), ("d2", 1, ("zeek",), ())]
        assert [s.device_id for s in uow.discovery.iter_devices_seen(org_path=BETA)] == ["d2"]


def test_registered_identities_ip_fail_decommissioned_device(db: Any) -> None:
    from iotiam.inventory.models import DeviceState
    with db() as uow:
        uow.devices.add(replace(device("gone"), attributes={"ip": "10.0.0.8", "mac": "aa:00"},
                                state=DeviceState.DECOMMISSIONED))
        uow.devices.add(replace(device("live"), attributes={"ip": "10.0.0.9"}))
    with db.reading() as uow:
        ids = uow.registered_identities
        site = device("gone").site
        # a retired device holds no address: its old one has been handed on
        assert ids.devices_for(K.IP, [ip_key(site, "10.0.0.8"), ip_key(site, "10.0.0.9")],
                               org_path=ACME) == {ip_key(site, "10.0.0.9"):
                                                  RegisteredDevice("live", ACME)}


def test_narrow_reads_answer_as_the_streams_do(db: Any) -> None:
    """A refresh reads a few devices' presence and credentials by key: each exactly as
    the fleet-wide stream has it, and nothing else."""
    fp = "d" * 64
    rows = [(sighting(1, certificate=fp, ip="10.0.0.1", site="hq"), b"n1" * 8, ACME,
             Match(K.CERTIFICATE, 1.0, device_id="d1")),
            (sighting(5, certificate=fp, ip="10.0.0.2", site="hq"), b"n2" * 8, ACME,
             Match(K.CERTIFICATE, 0.75, asset_id="as-9")),
            # shows two credentials: a PSK identity and an issuer + serial
            (sighting(3, psk_identity="shared", issuer="CN=x", serial="1f"), b"n3" * 8, ACME,
             Match(K.PSK_IDENTITY, 0.95, device_id="d3")),
            (sighting(4, psk_identity="shared"), b"n4" * 8, BETA,
             Match(K.PSK_IDENTITY, 0.95, asset_id="as-8")),
            (sighting(2, psk_identity="other"), b"n5" * 8, ACME,
             Match(K.PSK_IDENTITY, 0.95, device_id="d1"))]
    presence = [DevicePresence("d1", ACME, T, T + 9, frozenset({"arp"}), 4,
                               {("hq", "10.0.0.1"): T + 9}),
                DevicePresence("d2", BETA, T, T, frozenset({"zeek"}), 1),
                DevicePresence("d3", ACME, T, T + 2, frozenset({"nmap"}), 2)]
    with db() as uow:
        uow.discovery.begin_import()
        uow.discovery.add_sightings(rows)
        uow.discovery.save_presence(presence)
    keys = [(K.CERTIFICATE, fp), (K.PSK_IDENTITY, "shared"), (K.ISSUER_SERIAL, "CN=x|1f"),
            (K.CERTIFICATE, "e" * 64)]
    with db.reading() as uow:
        store = uow.discovery
        for path in ("/root/", ACME):
            every = list(store.iter_credentials_seen(org_path=path))
            assert store.credentials_seen(org_path=path, keys=keys) == [
                c for c in every if (c.kind, c.value) in keys]
            assert store.devices_seen(org_path=path, device_ids=["d3", "d2", "nobody"]) == [
                s for s in store.iter_devices_seen(org_path=path) if s.device_id in ("d2", "d3")]
        (shared,) = store.credentials_seen(org_path="/root/", keys=[(K.PSK_IDENTITY, "shared")])
        assert (shared.device_ids, shared.asset_ids, shared.last_seen) == (("d3",), ("as-8",),
                                                                           T + 4)
        assert store.credentials_seen(org_path="/root/", keys=[]) == []
        assert store.devices_seen(org_path="/root/", device_ids=[]) == []
