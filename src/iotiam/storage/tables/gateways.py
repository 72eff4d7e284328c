"""The gateways' table: which gateway each child device is registered under."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table

from iotiam.storage.tables.columns import UtcDateTime, metadata

#: one row per child: a device has at most one gateway (docs/gateways.md)
gateway_links = Table(
    "gateway_links",
    metadata,
    Column("child_id", String(128), ForeignKey("devices.id"), primary_key=True),
    Column("gateway_id", String(128), ForeignKey("devices.id"), nullable=False),
    Column("linked_at", UtcDateTime(), nullable=False),
    # a gateway's children, and a changed device's gateway for the broker sync
    Index("ix_gateway_links_gateway", "gateway_id", "child_id"),
)
