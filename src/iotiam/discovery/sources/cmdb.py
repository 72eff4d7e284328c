"""A CMDB or asset-inventory export as CSV, mapped column by column onto a sighting.

Which column holds what is given by options ``map.<field>=<header>`` (``map.mac=MAC
Address``; an empty header turns a field's default off), for the fields in ``FIELDS``.
A field not mapped takes the first column whose header, compared without case, spaces,
dashes, dots or underscores, is one of its usual names (``IP Address``, ``MAC``,
``Hostname``, ``Manufacturer``, ``Last Seen`` ...). A CMDB's ``Serial Number`` is the
hardware's, not a certificate's: it is read as ``serial`` only when mapped so.

The dialect is what spreadsheets write: the delimiter (``,`` ``;`` or tab) guessed from
the header line unless the ``delimiter`` option names it, Excel's ``sep=;`` first line,
a UTF-8 byte order mark, quoted fields with newlines; ``encoding=cp1252`` reads what
Excel saves as plain "CSV" on Windows. Times are ISO 8601 or seconds since the epoch,
or in the ``time-format`` option's ``strftime`` format; a time without a zone is UTC;
a row without one is seen at the context's time. A row with a value that is not what
its column says (a MAC that is no MAC) is refused on its own, at the line it starts on.
"""

from __future__ import annotations

import csv
import math
import re
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import chain
from typing import IO

from iotiam.discovery.models import (
    Refusal,
    Sighting,
    SourceContext,
    bounded_text,
    normalize_fingerprint,
    normalize_hostname,
    normalize_ip,
    normalize_mac,
    normalize_serial,
)
from iotiam.discovery.sources._common import import_time
from iotiam.discovery.sources.lines import Line, check_encoding, read_lines
from iotiam.errors import InvalidInput

FIELDS = ("ip", "mac", "hostname", "client_id", "username", "certificate", "issuer",
          "serial", "psk_identity", "vendor", "model", "site", "network", "seen_at")
#: fields that identify a device on their own (issuer and serial do together)
_IDENTIFYING = ("ip", "mac", "hostname", "client_id", "username", "certificate",
                "psk_identity")
#: the usual header names of each field, in ``_key`` form
_DEFAULT_HEADERS: dict[str, tuple[str, ...]] = {
    "ip": ("ip", "ipaddress", "ipv4", "ipv4address", "ipv6", "ipv6address", "ipaddr"),
    "mac": ("mac", "macaddress", "macaddr", "hardwareaddress", "physicaladdress",
            "ethernetaddress", "hwaddress"),
    "hostname": ("hostname", "host", "fqdn", "dnsname", "dnshostname"),
    "client_id": ("clientid", "mqttclientid"),
    "username": ("username", "mqttusername"),
    "certificate": ("certificate", "certificatefingerprint", "certfingerprint",
                    "fingerprint", "sha256fingerprint", "certificatesha256"),
    "issuer": ("issuer", "certificateissuer", "certissuer"),
    "serial": ("certificateserial", "certificateserialnumber", "certserial"),
    "psk_identity": ("pskidentity", "pskid"),
    "vendor": ("vendor", "manufacturer", "make"),
    "model": ("model", "modelname", "product"),
    "site": ("site", "location"),
    "network": ("network", "vlan", "subnet", "segment"),
    "seen_at": ("lastseen", "lastseenat", "seenat", "lastdiscovered", "lastscan",
                "timestamp"),
}
#: the most lines one record may span (a note with line breaks takes a few)
MAX_RECORD_LINES = 100
_DELIMITERS = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "|": "|"}
_OPTIONS = {"delimiter", "encoding", "time-format"}


def _key(header: str) -> str:
    return re.sub(r"[\s_.\-]+", "", header.strip().lower())


class CmdbCsv:
    """A CSV asset export with a column mapping (see the module's description)."""

    name = "cmdb"
    options: frozenset[str] = frozenset({"map.", "encoding", "delimiter", "time-format"})

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """One sighting per row, in file order."""
        mapping = _mapping_options(context.options)
        encoding = check_encoding(context.options.get("encoding", "utf-8"))
        lines = read_lines(stream, what="the CSV file", encoding=encoding, keep_ends=True)
        first = next((item for item in lines if not _blank(item)), None)
        if first is None:
            raise InvalidInput("the CSV file is empty")
        if isinstance(first, Refusal):
            raise InvalidInput(f"the CSV file's header line is refused: {first.reason}")
        delimiter = _delimiter(context.options.get("delimiter"))
        sep = re.fullmatch(r'"?sep=(.)"?\s*', first.text)
        if sep:  # Excel's own hint: "sep=;" before the header
            delimiter = delimiter or sep[1]
            first = next((item for item in lines if not _blank(item)), None)
            if not isinstance(first, Line):
                raise InvalidInput("the CSV file has no header line after 'sep='")
        feed = _LineFeed(chain([first], lines))
        reader = csv.reader(feed, delimiter=delimiter or _sniff(first.text))
        try:
            header = next(reader)
        except (csv.Error, _RunawayRecord, _LineRefused, StopIteration):
            raise InvalidInput("the CSV file's header line is not a CSV record (a quote "
                               "not closed?)") from None
        columns = _columns(header, mapping)
        rows = _Rows(columns, context)
        while True:
            feed.mark()
            try:
                row = next(reader)
            except StopIteration:
                return
            except _LineRefused as e:
                yield e.refusal
                continue
            except (csv.Error, _RunawayRecord) as e:
                reason = str(e) or f"a quoted field is not closed within {MAX_RECORD_LINES} lines"
                yield Refusal(feed.start, f"the row is malformed CSV: {reason}")
                feed.read_again()
                continue
            if any(cell.strip() for cell in row):
                yield rows.sighting(row, feed.start, len(header))


def _blank(item: Line | Refusal) -> bool:
    return isinstance(item, Line) and not item.text.strip()


def _mapping_options(options: dict[str, str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for option, value in options.items():
        if option.startswith("map."):
            target = option[4:]
            if target not in FIELDS:
                raise InvalidInput(f"the option {option[:60]!r} maps to {target[:40]!r}, "
                                   f"which is no field: the fields are {', '.join(FIELDS)}")
            mapping[target] = value.strip()
        elif option not in _OPTIONS:
            raise InvalidInput(f"the cmdb source has no option {option[:60]!r} (it takes "
                               f"map.<field>, {', '.join(sorted(_OPTIONS))})")
    return mapping


def _delimiter(option: str | None) -> str | None:
    if option is None:
        return None
    if option not in _DELIMITERS:
        raise InvalidInput(f"the delimiter {option[:10]!r} is not one of , ; | tab")
    return _DELIMITERS[option]


def _sniff(header: str) -> str:
    # the delimiter is whichever of , ; tab the header has most of outside quotes
    # (csv.Sniffer guesses from letter frequencies and takes a space for one)
    bare = re.sub(r'"[^"]*"', "", header)
    counts = {d: bare.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _columns(header: list[str], mapping: dict[str, str]) -> dict[str, int]:
    """``field -> column index`` from the explicit mapping, else the usual names."""
    keys = [_key(h) for h in header]
    columns: dict[str, int] = {}
    for name, wanted in mapping.items():
        if not wanted:
            continue
        if _key(wanted) not in keys:
            raise InvalidInput(f"the column {wanted[:60]!r} (map.{name}) is not in the "
                               f"header; its columns are {_listing(header)}")
        columns[name] = keys.index(_key(wanted))
    taken = set(columns.values())
    for name in FIELDS:
        if name in mapping:
            continue
        for index, key in enumerate(keys):
            if key in _DEFAULT_HEADERS[name] and index not in taken:
                columns[name] = index
                taken.add(index)
                break
    if not any(name in columns for name in _IDENTIFYING) and not (
            "issuer" in columns and "serial" in columns):
        raise InvalidInput("no column of the CSV identifies a device (IP address, MAC, "
                           "host name ...): map one with the option map.<field>=<header>; "
                           f"its columns are {_listing(header)}")
    return columns


def _listing(header: list[str]) -> str:
    return ", ".join(repr(h[:40]) for h in header[:30])


_Convert = Callable[[str], str | float | None]


class _Rows:
    """Turns each row into a sighting with the columns and the context."""

    def __init__(self, columns: dict[str, int], context: SourceContext) -> None:
        self._columns = columns
        self._context = context
        self._time_format = context.options.get("time-format")
        self._convert: dict[str, _Convert] = {
            "ip": normalize_ip, "mac": normalize_mac, "hostname": normalize_hostname,
            "certificate": normalize_fingerprint, "serial": normalize_serial,
            "seen_at": self._time,
        }
        self._fallback: float | None = None

    def sighting(self, row: list[str], line: int, width: int) -> Sighting | Refusal:
        """The row's sighting, or why not."""
        if len(row) > width and any(cell.strip() for cell in row[width:]):
            return Refusal(line, f"the row has {len(row)} fields, the header {width}")
        values: dict[str, str | float | None] = {}
        for name, index in self._columns.items():
            cell = row[index].strip() if index < len(row) else ""
            if not cell:
                continue
            try:
                values[name] = self._convert.get(name, _text(name))(cell)
            except InvalidInput as e:
                return Refusal(line, f"{name}: {e.detail}")
        seen_at = values.pop("seen_at", None)
        text = {k: v for k, v in values.items() if isinstance(v, str)}
        sighting = Sighting(
            source="cmdb",
            seen_at=seen_at if isinstance(seen_at, float) else self._default_time(),
            site=text.get("site", self._context.site),
            network=text.get("network", self._context.network),
            ip=text.get("ip"), mac=text.get("mac"), hostname=text.get("hostname"),
            client_id=text.get("client_id"), username=text.get("username"),
            certificate=text.get("certificate"), issuer=text.get("issuer"),
            serial=text.get("serial"), psk_identity=text.get("psk_identity"),
            vendor=text.get("vendor"), model=text.get("model"))
        if not sighting.identifiers():
            return Refusal(line, "the row has no IP, MAC, host name or other identifier")
        return sighting

    def _default_time(self) -> float:
        if self._fallback is None:
            self._fallback = import_time(self._context)
        return self._fallback

    def _time(self, cell: str) -> float:
        try:
            if self._time_format:
                moment = datetime.strptime(cell, self._time_format)
            elif re.fullmatch(r"\d{9,13}(\.\d+)?", cell):
                seconds = float(cell)
                return seconds / 1000 if seconds > 1e11 else seconds  # milliseconds
            else:
                moment = datetime.fromisoformat(cell)
        except ValueError:
            raise InvalidInput(f"{cell[:40]!r} is not a time (ISO 8601, seconds since the "
                               "epoch, or give the option time-format=...)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
        if not math.isfinite(seconds) or seconds <= 0:
            raise InvalidInput(f"{cell[:40]!r} is before 1970")
        return seconds


def _text(name: str) -> Callable[[str], str | None]:
    def convert(cell: str) -> str | None:
        return bounded_text(cell, name.replace("_", " "))
    return convert


class _LineRefused(Exception):
    """A line the reader refused, raised through ``csv.reader`` (which then starts afresh)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class _RunawayRecord(Exception):
    """A record went on for more lines than any real one: a quote was never closed."""


class _LineFeed:
    """The lines ``csv.reader`` pulls, remembering where each record starts.

    The lines of the record being read are kept (at most ``MAX_RECORD_LINES``): when it
    turns out malformed, its first line is refused and the others are read again, so an
    unclosed quote costs one row, not every row up to the CSV module's field limit.
    """

    def __init__(self, lines: Iterator[Line | Refusal]) -> None:
        self._lines = lines
        self._record: list[Line] = []
        self._again: deque[Line] = deque()
        self.number = 0

    @property
    def start(self) -> int:
        """The line the record being read starts on."""
        return self._record[0].number if self._record else self.number

    def mark(self) -> None:
        """The next line pulled starts a record."""
        self._record.clear()

    def read_again(self) -> None:
        """Drop the record's first line; its other lines are pulled again."""
        self._again.extendleft(reversed(self._record[1:]))
        self._record.clear()

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        item = self._again.popleft() if self._again else next(self._lines)
        if isinstance(item, Refusal):
            raise _LineRefused(item)
        if len(self._record) >= MAX_RECORD_LINES:
            self._again.appendleft(item)
            raise _RunawayRecord
        self._record.append(item)
        self.number = item.number
        return item.text
