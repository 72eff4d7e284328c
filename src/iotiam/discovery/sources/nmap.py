"""nmap's XML output (``nmap -oX``): one sighting per host that was up.

The XML is read with expat, the parser ``xml.etree.ElementTree`` itself wraps, driven
directly rather than through ``iterparse``: ElementTree's C parser offers no hook on a
document type declaration (it would expand an internal entity, "billion laughs", before
we could refuse it) and no line numbers. Here the handlers see each element as expat
reads it and keep only the host being read, so a million-host scan takes the memory of
one host, and nothing is built that must be cleared.

Refused as a whole (``InvalidInput``): anything but ``<nmaprun>`` as the root, and any
document type declaration other than nmap's own bare ``<!DOCTYPE nmaprun>`` (an internal
subset, an entity declaration, an external DTD: XXE and entity expansion). A file that
stops mid-scan (nmap killed, a disk full) yields the hosts that were complete and one
refusal for the rest. Positions are the line of each ``<host>`` tag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO
from xml.parsers import expat

from iotiam.discovery.models import (
    Refusal,
    Sighting,
    SourceContext,
    bounded_text,
    normalize_hostname,
    normalize_ip,
    normalize_mac,
)
from iotiam.discovery.sources._common import import_time
from iotiam.errors import InvalidInput

_CHUNK = 64 * 1024
#: the most input read without expat reporting an element: a single tag or comment this
#: long is hostile (nmap's longest, a script's output attribute, is a few kilobytes),
#: and expat must hold a whole tag in memory to parse it
MAX_PENDING = 8 * 1024 * 1024
#: kept per host, beyond which a hostile file could grow one host without bound
_MAX_NAMES = 16
_MAX_SERVICES = 32
_DETAIL = 200


class NmapXml:
    """``nmap -oX`` output (any scan type; hosts that were down are skipped)."""

    name = "nmap"
    options: frozenset[str] = frozenset()

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """One sighting per host that was up, in the order nmap wrote them."""
        parser = expat.ParserCreate()
        scan = _Scan(parser, context)
        fed = 0
        while True:
            chunk = stream.read(_CHUNK)
            fed += len(chunk)
            try:
                parser.Parse(chunk, not chunk)
            except _NotNmap as e:
                raise InvalidInput(f"the input is not nmap XML: {e}") from None
            except expat.ExpatError as e:
                yield from scan.drain()
                if not fed:
                    raise InvalidInput("the input is empty, not nmap XML") from None
                if not scan.started:
                    raise InvalidInput("the input is not nmap XML (not well-formed XML at "
                                       f"line {e.lineno}: {expat.ErrorString(e.code)})"
                                       ) from None
                yield Refusal(e.lineno, "the XML stops being well-formed here ("
                              f"{expat.ErrorString(e.code)}); the rest of the file is "
                              "skipped (was nmap stopped mid-scan?)")
                return
            yield from scan.drain()
            if not chunk:
                return
            if fed - scan.progress > MAX_PENDING:
                yield from _too_long(scan)
                return


def _too_long(scan: _Scan) -> Iterator[Refusal]:
    reason = f"more than {MAX_PENDING} bytes without an XML element"
    if not scan.started:
        raise InvalidInput(f"the input is not nmap XML ({reason})")
    yield Refusal(scan.line, f"{reason}; the rest of the file is skipped")


class _NotNmap(Exception):
    """Raised from a handler to stop expat: the document is not (harmless) nmap XML."""


@dataclass
class _Host:
    line: int
    starttime: str | None
    endtime: str | None
    up: bool = False
    ip: str | None = None
    mac: str | None = None
    mac_vendor: str | None = None
    names: list[str] = field(default_factory=list)
    ports: set[int] = field(default_factory=set)
    services: list[str] = field(default_factory=list)
    os_name: str | None = None
    os_vendor: str | None = None
    port: int | None = None
    os_done: bool = False


class _Scan:
    """expat's handlers: the state of the scan read so far and the host being read."""

    def __init__(self, parser: expat.XMLParserType, context: SourceContext) -> None:
        self._parser = parser
        self._context = context
        self._fallback: float | None = None
        self._scan_start: str | None = None
        self._host: _Host | None = None
        self._out: list[Sighting | Refusal] = []
        self.started = False
        #: the byte offset of the last element expat reported
        self.progress = 0
        self._starts: dict[str, Callable[[_Host, dict[str, str]], None]] = {
            "status": _status, "address": _address, "hostname": _hostname,
            "port": _port, "state": _port_state, "service": _service,
            "osmatch": _osmatch, "osclass": _osclass,
        }
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._entity
        parser.UnparsedEntityDeclHandler = self._entity
        parser.ExternalEntityRefHandler = self._external
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end

    @property
    def line(self) -> int:
        """The line expat is at."""
        return self._parser.CurrentLineNumber

    def drain(self) -> Iterator[Sighting | Refusal]:
        """What the handlers finished since the last drain."""
        out, self._out = self._out, []
        return iter(out)

    def _doctype(self, name: str, system_id: str | None, public_id: str | None,
                 has_internal_subset: int) -> None:
        # nmap writes a bare <!DOCTYPE nmaprun>: no DTD to load, no entity to expand
        if name != "nmaprun" or system_id or public_id or has_internal_subset:
            raise _NotNmap(f"a document type declaration other than nmap's bare "
                           f"<!DOCTYPE nmaprun> (line {self.line}); DTDs and entities "
                           "are refused")

    def _entity(self, *_: object) -> None:
        raise _NotNmap(f"an entity declaration (line {self.line}); DTDs and entities are "
                       "refused")

    def _external(self, *_: object) -> int:
        raise _NotNmap(f"an external entity reference (line {self.line})")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.progress = self._parser.CurrentByteIndex
        host = self._host
        if host is not None:
            handler = self._starts.get(name)
            if handler is not None:
                handler(host, attrs)
        elif name == "host":
            self._host = _Host(self._parser.CurrentLineNumber, attrs.get("starttime"),
                               attrs.get("endtime"))
        elif not self.started:
            if name != "nmaprun":
                raise _NotNmap(f"its root element is <{name[:40]}>, not <nmaprun>")
            self.started = True
            self._scan_start = attrs.get("start")

    def _end(self, name: str) -> None:
        self.progress = self._parser.CurrentByteIndex
        host = self._host
        if host is None:
            return
        if name == "port":
            host.port = None
        elif name == "osmatch":
            host.os_done = True
        elif name == "host":
            self._host = None
            if host.up:
                self._out.append(self._sighting(host))

    def _sighting(self, host: _Host) -> Sighting | Refusal:
        if not host.ip and not host.mac:
            return Refusal(host.line, "the host has no IP or MAC address")
        try:
            return Sighting(
                source="nmap", seen_at=self._seen_at(host), site=self._context.site,
                network=self._context.network,
                ip=normalize_ip(host.ip) if host.ip else None,
                mac=normalize_mac(host.mac) if host.mac else None,
                hostname=_first_hostname(host.names),
                vendor=bounded_text(_clip(host.mac_vendor or host.os_vendor), "the vendor"),
                model=bounded_text(_clip(host.os_name), "the OS match"),
                open_ports=tuple(sorted(host.ports)),
                detail=bounded_text(_clip("; ".join(host.services)), "the services"))
        except InvalidInput as e:
            return Refusal(host.line, e.detail)

    def _seen_at(self, host: _Host) -> float:
        # a host's own times (port scans) are better than the scan's start, which may
        # be hours earlier on a big scan; a ping scan gives only the scan's
        for value in (host.starttime, host.endtime, self._scan_start):
            if value:
                return _epoch(value)
        if self._fallback is None:
            self._fallback = import_time(self._context)
        return self._fallback


def _status(host: _Host, attrs: dict[str, str]) -> None:
    host.up = attrs.get("state") == "up"


def _address(host: _Host, attrs: dict[str, str]) -> None:
    kind = attrs.get("addrtype")
    if kind in ("ipv4", "ipv6") and host.ip is None:
        host.ip = attrs.get("addr")
    elif kind == "mac" and host.mac is None:
        host.mac = attrs.get("addr")
        host.mac_vendor = attrs.get("vendor")


def _hostname(host: _Host, attrs: dict[str, str]) -> None:
    # nmap lists the name the user gave ("user") before the reverse lookup's ("PTR")
    name = attrs.get("name")
    if name and len(host.names) < _MAX_NAMES:
        host.names.append(name)


def _port(host: _Host, attrs: dict[str, str]) -> None:
    try:
        port = int(attrs.get("portid", ""))
    except ValueError:
        port = -1
    host.port = port if 0 <= port <= 65535 else None


def _port_state(host: _Host, attrs: dict[str, str]) -> None:
    # only "open": "open|filtered" (UDP, no answer) says nothing is known to listen
    if host.port is not None and attrs.get("state") == "open":
        host.ports.add(host.port)


def _service(host: _Host, attrs: dict[str, str]) -> None:
    if host.port is None or host.port not in host.ports or len(host.services) >= _MAX_SERVICES:
        return
    words = (attrs.get("name"), attrs.get("product"), attrs.get("version"))
    host.services.append(" ".join([f"{host.port}", *(w for w in words if w)]))


def _osmatch(host: _Host, attrs: dict[str, str]) -> None:
    # nmap writes the matches best first; the first is the guess worth keeping
    if not host.os_done and host.os_name is None:
        host.os_name = attrs.get("name")


def _osclass(host: _Host, attrs: dict[str, str]) -> None:
    if not host.os_done and host.os_vendor is None:
        host.os_vendor = attrs.get("vendor")


def _first_hostname(names: list[str]) -> str | None:
    # a PTR record may hold what is no host name (spaces, a bare IP's odd text): such a
    # name is passed over rather than refusing a host that nmap did see
    for name in names:
        try:
            return normalize_hostname(name)
        except InvalidInput:
            continue
    return None


def _epoch(value: str) -> float:
    try:
        seconds = int(value)
    except ValueError:
        raise InvalidInput(f"the time {value[:30]!r} is not seconds since the epoch") from None
    if not 0 < seconds < 2**33:
        raise InvalidInput(f"the time {value[:30]!r} is out of range")
    return float(seconds)


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= _DETAIL:
        return text
    return text[:_DETAIL - 1] + "…"
