"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from conftest import Installation
from iotiam.storage.migrate import alembic_config
from iotiam.storage.tables import metadata


def test_migrations_ok_match_schema(installation: Installation) -> None:
    engine = installation.services.database.engine
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = [d for d in compare_metadata(context, metadata)
                       # Alembic's own bookkeeping table is not part of our schema
                       if "alembic_version" not in str(d)]
    assert differences == []


def test_migration_0020_ok_keeps_every_digest_and_only_credential_rows(tmp_path: Path
                                                                       ) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0019")
        row = {"org_path": "/root/", "source": "nmap", "seen_at": 1.0, "basis": "mac",
               "confidence": 0.85}
        conn.execute(text(
            "INSERT INTO discovery_sightings (digest, org_path, source, seen_at, mac, "
            "certificate, basis, confidence) VALUES (:digest, :org_path, :source, "
            ":seen_at, :mac, :certificate, :basis, :confidence)"), [
                row | {"digest": b"a" * 16, "mac": "aa:bb:cc:dd:ee:01", "certificate": None},
                row | {"digest": b"b" * 16, "mac": None, "certificate": "c" * 64}])
        command.upgrade(cfg, "heads")
        digests = conn.execute(text("SELECT digest FROM discovery_sighting_digests")).all()
        kept = conn.execute(text("SELECT digest FROM discovery_sightings")).all()
        conn.commit()
    engine.dispose()
    assert sorted(bytes(d) for (d,) in digests) == [b"a" * 16, b"b" * 16]
    assert [bytes(d) for (d,) in kept] == [b"b" * 16]
