"""Alembic environment: runs on the connection iotiam hands over (see storage/migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from iotiam.storage.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    from iotiam.storage.database import make_engine

    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        _run(conn)
else:
    _run(connection)
