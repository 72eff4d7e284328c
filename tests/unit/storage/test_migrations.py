"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conftest import Installation
from iotiam.storage.tables import metadata


def test_migrations_ok_match_schema(installation: Installation) -> None:
    engine = installation.services.database.engine
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = [d for d in compare_metadata(context, metadata)
                       # Alembic's own bookkeeping table is not part of our schema
                       if "alembic_version" not in str(d)]
    assert differences == []
