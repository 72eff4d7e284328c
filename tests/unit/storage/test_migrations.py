"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from conftest import BACKENDS, Installation, postgres_schema_url
from iotiam.discovery.catalog import source_named
from iotiam.discovery.models import IdentifierKind, Sighting, SourceContext, scoped_digests
from iotiam.inventory.models import Criticality, DeviceClass
from iotiam.kernel import SYSTEM
from iotiam.storage.database import make_engine
from iotiam.storage.migrate import alembic_config
from iotiam.storage.registered_identities import SqlRegisteredIdentities, spelled_expression
from iotiam.storage.tables import metadata

SIGHTING_FIELDS = tuple(f.name for f in fields(Sighting))


def test_migrations_ok_match_schema(installation: Installation) -> None:
    engine = installation.services.database.engine
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = [d for d in compare_metadata(context, metadata)
                       # Alembic's own bookkeeping table is not part of our schema
                       if "alembic_version" not in str(d)]
    assert differences == []


#: what sources yielded before the upgrade: every field jsonl reads (a certificate's
#: details, ports, a detail), an issuer and serial, a PSK identity, a MAC alone; nmap's
#: ports and services
JSONL = b"\n".join(json.dumps(line).encode() for line in [
    {"seen_at": 1796551200.25, "mac": "02:00:00:20:00:01", "ip": "10.20.0.1",
     "hostname": "cam-1", "client_id": "cam-1", "username": "cam-user",
     "certificate": "ab" * 32, "subject": "CN=cam-1", "not_after": 1830000000,
     "key": "rsa:1024", "signature_hash": "sha1", "vendor": "Axis", "model": "M3045",
     "open_ports": [8883, 22, 22], "detail": "tls: unknown ca", "network": "cams"},
    {"seen_at": "2026-12-06T10:00:00+01:00", "issuer": "CN=Old CA", "serial": 4660,
     "client_id": "plc-7"},
    {"seen_at": 1796551300, "psk_identity": "sensor-9", "ip": "10.20.0.9"},
    {"seen_at": 1796551400, "mac": "02:00:00:20:00:02", "open_ports": [80]},
]) + b"\n"
NMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<nmaprun scanner="nmap" args="nmap -sS -sV -oX - 10.30.0.0/24" start="1796551200" version="7.93" xmloutputversion="1.05">
<host starttime="1796551230" endtime="1796551290"><status state="up" reason="arp-response"/>
<address addr="10.30.0.5" addrtype="ipv4"/>
<address addr="B8:27:EB:12:34:56" addrtype="mac" vendor="Raspberry Pi Foundation"/>
<hostnames><hostname name="Cam-Lobby.example.net" type="user"/></hostnames>
<ports><port protocol="tcp" portid="554"><state state="open" reason="syn-ack"/><service name="rtsp" method="table" conf="3"/></port>
<port protocol="tcp" portid="22"><state state="open" reason="syn-ack"/><service name="ssh" product="OpenSSH" version="8.4p1" method="probed" conf="10"/></port>
</ports></host>
<host starttime="1796551300" endtime="1796551360"><status state="up" reason="arp-response"/>
<address addr="10.30.0.6" addrtype="ipv4"/>
</host>
<runstats><finished time="1796551400" exit="success"/><hosts up="2" down="0" total="2"/></runstats>
</nmaprun>
"""  # noqa: E501 (nmap writes long lines)
CONTEXT = SourceContext(site="up", default_time=1796551000.0)


@pytest.fixture(params=BACKENDS)
def database_at_0019(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at migration 0019 (before the digest table), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'iotiam.db'}"
    else:
        yield from postgres_schema_url()


def test_migration_0020_ok_rekeys_what_sources_yielded_and_keeps_credential_rows(
        database_at_0019: str) -> None:
    """Rows stored by the old code (a full row per sighting, digest of another function)
    become the keys the write path claims now: each sighting's digest under its org."""
    seen = [(path, s) for path, source, data in [
        ("/root/", "jsonl", JSONL), ("/root/acme/", "jsonl", JSONL),
        ("/root/", "nmap", NMAP)]
        for s in source_named(source).read(io.BytesIO(data), CONTEXT)
        if isinstance(s, Sighting)]
    assert len(seen) == 10
    # and more than one of the migration's batches (5,000 rows)
    seen += [("/root/", Sighting(source="arp", seen_at=1796550000.0 + n,
                                 mac=f"02:00:00:21:{n // 256:02x}:{n % 256:02x}"))
             for n in range(5000)]
    engine = make_engine(database_at_0019)
    cfg = alembic_config()
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0019")
            conn.execute(OLD_ROW, [_old_row(n, path, s) for n, (path, s) in enumerate(seen)])
            command.upgrade(cfg, "heads")
            digests = conn.execute(text("SELECT digest FROM discovery_sighting_digests")).all()
            kept = conn.execute(text("SELECT org_path, digest FROM discovery_sightings")).all()
            conn.commit()
    finally:
        engine.dispose()
    keys = {(path, s): scoped_digests(path, [s.digest()])[0] for path, s in seen}
    assert sorted(bytes(d) for (d,) in digests) == sorted(keys.values())
    assert sorted((path, bytes(d)) for path, d in kept) == sorted(
        (path, key) for (path, s), key in keys.items()
        if s.certificate or s.psk_identity or (s.issuer and s.serial))
    assert len(kept) == 6


OLD_ROW = text(
    f"INSERT INTO discovery_sightings (digest, org_path, {', '.join(SIGHTING_FIELDS)}, "
    f"basis, confidence) VALUES (:digest, :org_path, "
    f"{', '.join(':' + f for f in SIGHTING_FIELDS)}, 'mac', 0.85)")


def _old_row(n: int, path: str, sighting: Sighting) -> dict[str, Any]:
    """A row as discovery_store wrote every sighting before migration 0020."""
    values = {f: getattr(sighting, f) for f in SIGHTING_FIELDS}
    values["open_ports"] = ",".join(map(str, sighting.open_ports)) or None
    return values | {"digest": n.to_bytes(16, "big"), "org_path": path}


def test_migration_0023_ok_finds_devices_stored_before_it_through_its_indexes(
        installation: Installation) -> None:
    """A MAC or host name an admin wrote before the upgrade, in any of its spellings, is
    found after it, one index probe a value (the lookup's expression is the index's)."""
    inventory = installation.services.inventory
    inventory.create_device_type(SYSTEM, name="cam", device_class=DeviceClass.SENSOR,
                                 criticality=Criticality.LOW)
    spelled = {"m1": {"mac": "AA-BB-CC-DD-EE-01", "hostname": "Cam-1."},
               "m2": {"mac": "aabb.ccdd.ee02"}, "m3": {"mac": "AABBCCDDEE03"},
               "m4": {"mac": "aa:bb:cc:dd:ee:04", "hostname": "cam-4"}}
    assert all(r.ok for r in inventory.import_devices(SYSTEM, [
        (n, {"id": device_id, "type": "cam", "attributes": attributes})
        for n, (device_id, attributes) in enumerate(spelled.items(), 1)]))
    engine = installation.services.database.engine
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0022")
        command.upgrade(cfg, "heads")
        ids = SqlRegisteredIdentities(conn)
        macs = ids.devices_for(IdentifierKind.MAC, [f"aa:bb:cc:dd:ee:0{n}" for n in range(6)],
                               org_path="/root/")
        names = ids.devices_for(IdentifierKind.HOSTNAME, ["cam-1", "cam-4", "cam-2"],
                                org_path="/root/")
        plans = [_plan(conn, f"SELECT id FROM devices WHERE {expression} = 'x'")
                 for expression in (
                     spelled_expression(conn.dialect.name, IdentifierKind.MAC),
                     spelled_expression(conn.dialect.name, IdentifierKind.HOSTNAME))]
        conn.rollback()
    assert {value: d.device_id for value, d in macs.items()} == {
        f"aa:bb:cc:dd:ee:0{n}": f"m{n}" for n in range(1, 5)}
    assert {value: d.device_id for value, d in names.items()} == {"cam-1": "m1",
                                                                  "cam-4": "m4"}
    assert "ix_devices_mac_spelled" in plans[0]
    assert "ix_devices_hostname_spelled" in plans[1]


def _plan(conn: Connection, select: str) -> str:
    """The query plan of ``select`` as text (an index wherever one serves)."""
    if conn.dialect.name == "sqlite":
        return str(conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {select}").all())
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    return str(conn.exec_driver_sql(f"EXPLAIN {select}").all())


def test_migration_0038_ok_counts_psk_and_client_holders_stored_before_it(
        installation: Installation) -> None:
    """A PSK holder and an OAuth client holder stored while only certificate holders had
    a standing row are counted after the upgrade."""
    api = installation.api()
    for device_id in ("p1", "c1"):
        assert api.post("/v1/devices", json={"id": device_id, "type": "sensor"}
                        ).status_code == 201
    assert api.post("/v1/devices/p1/psk", json={}).status_code == 201
    assert api.post("/v1/oauth/clients", json={"device": "c1"}).status_code == 201
    engine = installation.services.database.engine
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0037")
        conn.execute(text("DELETE FROM device_credentials"))  # as 0037's code left them
        conn.execute(text("DELETE FROM device_credential_days"))
        command.upgrade(cfg, "heads")
        conn.commit()
    summary = installation.services.inventory.summary(SYSTEM, rotation_age=timedelta(days=30))
    assert summary.by_credential_status["active"] == 2
    assert summary.by_credential_status["none"] == 0
