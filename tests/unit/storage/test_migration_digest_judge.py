"""A defect an outside review found in migration 0020 (main at 5c7eea5), stating
what an upgraded installation must keep (fixed since)."""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from iotiam.discovery.models import Sighting, scoped_digests
from iotiam.storage.migrate import alembic_config


def digest_before_2959fcb(sighting: Sighting) -> bytes:
    """The digest an installation stored before commit 2959fcb (main up to 86bb738):
    BLAKE2b-128 over the fields' reprs joined by 0x1f. That commit changed the value."""
    parts = (repr(getattr(sighting, f.name)) for f in fields(Sighting))
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()


def test_fail_upgraded_installation_knows_its_imported_sightings(tmp_path: Path) -> None:
    """README: importing the same file twice adds nothing. An installation that imported
    a file before the upgrade must, after it, find that file's sightings already there:
    the digest table holds what `Sighting.digest()` answers for them now.
    (End to end: import a file with 86bb738, upgrade, import it again: every line is
    `added` a second time and each asset's `sightings` count doubles.)"""
    seen = Sighting(source="jsonl", seen_at=1764000000.0, site="up",
                    mac="02:00:00:17:00:01")
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0019")
        conn.execute(text(
            "INSERT INTO discovery_sightings (digest, org_path, source, seen_at, site, mac, "
            "basis, confidence) VALUES (:digest, '/root/', 'jsonl', :seen_at, 'up', :mac, "
            "'mac', 0.85)"),
            {"digest": digest_before_2959fcb(seen), "seen_at": seen.seen_at,
             "mac": seen.mac})
        command.upgrade(cfg, "heads")
        digests = {bytes(d) for (d,) in conn.execute(
            text("SELECT digest FROM discovery_sighting_digests")).all()}
        conn.commit()
    engine.dispose()
    # what an import claims is the digest under the importer's org path (G9, per-org
    # idempotency), so that is what the upgraded table must hold
    assert scoped_digests("/root/", [seen.digest()])[0] in digests
