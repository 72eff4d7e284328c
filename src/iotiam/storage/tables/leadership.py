"""The terms of singleton jobs across replicas (``storage/pg_leadership.py``): whether
the last leader of each job ended its term before it let the lock go."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, String, Table

from iotiam.storage.tables.columns import UtcDateTime, metadata

singleton_terms = Table(
    "singleton_terms",
    metadata,
    Column("job", String(64), primary_key=True),
    #: host and process id of the last leader, for an operator reading the table
    Column("holder", String(255), nullable=False),
    Column("began_at", UtcDateTime(), nullable=False),
    #: the leader ended the job and then released the lock: the next may start at once
    Column("released", Boolean(), nullable=False),
)
