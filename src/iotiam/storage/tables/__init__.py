"""Table definitions (SQLAlchemy Core), one module per domain that owns the data, all on
one ``MetaData``. Alembic migrations create exactly these
(``tests/unit/storage/test_migrations.py`` compares them).

A store imports its own domain's module (``from iotiam.storage.tables import pki as t``)
and names another domain's when it reads that data (``inventory.devices``). Importing any
of them runs this file, which imports them all, so ``metadata`` is always complete.
"""

from __future__ import annotations

from iotiam.storage.tables import (
    admin,
    attestation,
    audit,
    changes,
    credentials,
    discovery,
    enrollment,
    gateways,
    inventory,
    leadership,
    pki,
    policy,
    response,
    risk,
    tokens,
)
from iotiam.storage.tables.columns import metadata

__all__ = ["admin", "attestation", "audit", "changes", "credentials", "discovery", "enrollment",
           "gateways", "inventory", "leadership", "metadata", "pki", "policy", "response", "risk",
           "tokens"]
