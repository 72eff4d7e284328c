"""The identity risk register (migrations 0017, 0019): entries, the factors each has (to filter
and count by factor), maintained counts (the summary and common totals), acceptances,
and the counts of every rebuild (the trend).

Times are seconds since the epoch (``Float``): the register is rebuilt in bulk and its
values come from the checks as floats.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from iotiam.storage.tables.columns import metadata

risk_entries = Table(
    "risk_entries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("subject", String(16), nullable=False),
    Column("subject_id", String(512), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("site", String(256), nullable=True),
    Column("type", String(128), nullable=True),
    Column("score", Integer, nullable=False),
    #: every hit as JSON (``FactorHit.to_json``), accepted ones included
    Column("factors", Text, nullable=False),
    Column("criticality", String(16), nullable=True),
    Column("device_class", String(32), nullable=True),
    Column("can_write", Boolean, nullable=False),
    #: the device whose entry (or credential's entry) this is: a refresh replaces them
    Column("holder", String(128), nullable=True),
    #: of the columns above (migration 0019): a write that would store the same content
    #: leaves the row as it is; None (a score changed by an acceptance) always differs
    Column("digest", String(32), nullable=True),
    #: the rebuild that last wrote it; a rebuild drops the rows of earlier ones it did not
    #: find unchanged (once per rebuild, a scan: an index on it would be rewritten for
    #: every entry every rebuild)
    Column("generation", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_risk_entries_org_path", "org_path"),
    Index("ix_risk_entries_holder", "holder"),
)

risk_entry_factors = Table(
    "risk_entry_factors",
    metadata,
    Column("entry_id", String(64), primary_key=True),
    Column("factor", String(48), primary_key=True),
    Column("severity", Integer, nullable=False),
    # the entry's columns a factor page filters and orders by, copied so that a page or
    # a count by factor (and site, score, org) reads this table's indexes alone
    Column("org_path", String(2048), nullable=False),
    Column("site", String(256), nullable=True),
    Column("score", Integer, nullable=False),
)
# the register's order (score down, then id) is the keyset of its pages; a site's page, a
# factor's, a factor's on one site walk their own slice of that order
Index("ix_risk_entries_score_id", risk_entries.c.score.desc(), risk_entries.c.id)
Index("ix_risk_entries_site_score_id", risk_entries.c.site, risk_entries.c.score.desc(),
      risk_entries.c.id)
# a type's slice of that order (migration 0037); org path last so that a type's total
# under an org unit, with or without a minimum score, reads this index alone
Index("ix_risk_entries_type_score_id", risk_entries.c.type, risk_entries.c.score.desc(),
      risk_entries.c.id, risk_entries.c.org_path)
_factors = risk_entry_factors.c
Index("ix_risk_entry_factors_factor", _factors.factor, _factors.score.desc(),
      _factors.entry_id, _factors.org_path)
Index("ix_risk_entry_factors_site", _factors.factor, _factors.site, _factors.score.desc(),
      _factors.entry_id, _factors.org_path)

#: entries (``factor`` '') and factor rows (hidden or not) per org path, site ('' for
#: none), factor and severity, kept by every write of entries in the same transaction
risk_tallies = Table(
    "risk_tallies",
    metadata,
    Column("org_path", String(2048), primary_key=True),
    Column("site", String(256), primary_key=True),
    Column("factor", String(48), primary_key=True),
    Column("severity", Integer, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

risk_acceptances = Table(
    "risk_acceptances",
    metadata,
    Column("entry_id", String(64), primary_key=True),
    Column("factor", String(48), primary_key=True),
    Column("org_path", String(2048), nullable=False),
    Column("reason", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("accepted_by", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_risk_acceptances_expires_at", "expires_at"),
)

risk_rebuilds = Table(
    "risk_rebuilds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    sqlite_autoincrement=True,
)

risk_counts = Table(
    "risk_counts",
    metadata,
    Column("rebuild", Integer, primary_key=True),
    Column("org_path", String(2048), primary_key=True),
    Column("key", String(48), primary_key=True),
    Column("count", Integer, nullable=False),
)
