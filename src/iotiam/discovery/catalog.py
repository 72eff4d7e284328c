"""The sources an import can name (``--source``), by name."""

from __future__ import annotations

from iotiam.discovery.ports import SightingSource
from iotiam.discovery.sources.broker_clients import EmqxClientsSource, MosquittoClientsSource
from iotiam.discovery.sources.cmdb import CmdbCsv
from iotiam.discovery.sources.dhcp_leases import DhcpdLeases, DnsmasqLeases
from iotiam.discovery.sources.jsonl import JsonLinesSource
from iotiam.discovery.sources.neighbours import NeighbourTable
from iotiam.discovery.sources.nmap import NmapXml
from iotiam.discovery.sources.suricata import SuricataSource
from iotiam.discovery.sources.zeek import ZeekSource
from iotiam.errors import InvalidInput

#: every source, by the name users give it
SOURCES: dict[str, SightingSource] = {
    source.name: source for source in (
        JsonLinesSource(), NmapXml(), DhcpdLeases(), DnsmasqLeases(), NeighbourTable(),
        CmdbCsv(), ZeekSource(), SuricataSource(), MosquittoClientsSource(),
        EmqxClientsSource(),
    )
}


def source_named(name: str) -> SightingSource:
    """The source called ``name``; ``InvalidInput`` listing the known ones otherwise."""
    source = SOURCES.get(name)
    if source is None:
        raise InvalidInput(f"unknown source {name[:60]!r}; known sources: "
                           f"{', '.join(sorted(SOURCES))}")
    return source
