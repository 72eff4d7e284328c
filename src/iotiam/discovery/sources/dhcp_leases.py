"""DHCP servers' lease databases: ISC dhcpd's ``dhcpd.leases`` and dnsmasq's leases file.

A lease says a client with this hardware address held this IP address and talked to the
server at a known time: a sighting of a device, with its MAC, its IP at that time and
often the host name it asked for.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from iotiam.discovery.models import (
    Refusal,
    Sighting,
    SourceContext,
    normalize_hostname,
    normalize_ip,
    normalize_mac,
)
from iotiam.discovery.sources._common import import_time
from iotiam.discovery.sources.lines import Line, read_lines
from iotiam.errors import InvalidInput

# dhcpd.leases(5): tokens are quoted strings (with backslash escapes), braces,
# semicolons, comments from "#" to the end of the line, and words between them; a lone
# quote is an unterminated string
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};]|#.*|[^\s{};"#]+|"')
#: what dhcpd writes at the top level of its leases file besides leases (dhcpd.leases(5),
#: and the DHCPv6 server's ia-na / ia-ta / ia-pd, which carry no hardware address)
_TOP_LEVEL = {"lease", "host", "group", "subgroup", "class", "subclass", "failover",
              "authoring-byte-order", "server-duid", "ia-na", "ia-ta", "ia-pd",
              "lease-id-format"}
_YEAR_2001 = 978307200
#: a statement longer than this is no dhcpd statement (``set`` and ``option`` take ~5)
_MAX_TOKENS = 64
#: dhcpd writes ~10 statements a lease; a block that never closes is not held whole
_MAX_STATEMENTS = 256


class DhcpdLeases:
    """ISC dhcpd's lease database (``/var/lib/dhcp/dhcpd.leases``).

    The file is a log: each time a lease is granted, renewed or released dhcpd appends
    the whole lease again, and the last block for an address is the current one. Every
    block of a bound lease (``binding state active``) is a sighting at its own time, the
    client's last transaction (``cltt``), else the lease's start: an address that moved
    between two devices yields both, each when it was seen. Blocks in any other state
    (``free``, ``expired``, ``released``, ``abandoned``, ``reset``, and ``backup``, which
    is a free lease held for a failover secondary) are skipped without a refusal: they
    are the server's bookkeeping, and still name the last client only for affinity.
    Times are ``W YYYY/MM/DD HH:MM:SS`` in UTC, or ``epoch N`` under
    ``db-time-format local``. Declarations other than leases are passed over.
    """

    name = "dhcpd"
    options: frozenset[str] = frozenset()

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """One sighting per block of a bound lease, in file order."""
        leases = _LeaseFile(context)
        for item in read_lines(stream, what="the dhcpd leases file"):
            if isinstance(item, Refusal):
                leases.damaged(item)
                yield item
            elif not leases.took_whole(item.text):
                yield from leases.feed(item)
        yield from leases.finish()


@dataclass
class _Lease:
    line: int
    address: str
    statements: list[list[str]] = field(default_factory=list)
    problem: str | None = None

    def take(self, statement: list[str]) -> None:
        """Keep one statement of the lease, up to ``_MAX_STATEMENTS``."""
        if len(self.statements) < _MAX_STATEMENTS:
            self.statements.append(statement)
        else:
            self.problem = f"the lease has more than {_MAX_STATEMENTS} statements"


class _LeaseFile:
    """The brace structure of a leases file, read token by token across lines."""

    def __init__(self, context: SourceContext) -> None:
        self._context = context
        self._depth = 0
        self._statement: list[str] = []
        self._lease: _Lease | None = None
        self._leases_seen = False

    def took_whole(self, text: str) -> bool:
        """Whether the line was one whole statement of a lease, and so is taken.

        dhcpd writes one statement a line: taking such a line at once, rather than
        word by word, halves the time of reading a million-lease file.
        """
        if self._depth != 1 or self._lease is None or self._statement:
            return False
        statement = _one_statement(text)
        if statement is None:
            return False
        self._lease.take(statement)
        return True

    def feed(self, line: Line) -> Iterator[Sighting | Refusal]:
        """The leases this line closes."""
        text = line.text
        for lexeme in _TOKEN.findall(text):
            if lexeme[0] == "#":
                break
            if lexeme == "{":
                self._open(line.number)
            elif lexeme == ";":
                if self._lease is not None and self._depth == 1:
                    self._lease.take(self._statement)
                self._statement = []
            elif lexeme == "}":
                yield from self._close(line.number)
            else:
                self._word(lexeme, line.number)

    def _word(self, word: str, number: int) -> None:
        if (self._depth == 0 and not self._statement and word not in _TOP_LEVEL
                and not self._leases_seen):
            raise InvalidInput(f"the input is not a dhcpd leases file: line {number} "
                               f"starts with {word[:40]!r}, not a lease declaration")
        if word == '"' and self._lease is not None:
            self._lease.problem = "a quoted string is not terminated"
        if len(self._statement) < _MAX_TOKENS:
            self._statement.append(word)
        elif self._lease is not None:
            self._lease.problem = f"a statement has more than {_MAX_TOKENS} words"

    def _open(self, number: int) -> None:
        header, self._statement = self._statement, []
        self._depth += 1
        if self._depth == 1 and len(header) == 2 and header[0] == "lease":
            self._lease = _Lease(number, header[1])
            self._leases_seen = True

    def _close(self, number: int) -> Iterator[Sighting | Refusal]:
        self._statement = []
        if self._depth == 0:
            yield Refusal(number, "a closing brace with no declaration open")
            return
        self._depth -= 1
        if self._depth == 0 and self._lease is not None:
            lease, self._lease = self._lease, None
            sighting = _lease_sighting(lease, self._context)
            if sighting is not None:
                yield sighting

    def damaged(self, refusal: Refusal) -> None:
        """A line of the lease being read was refused: the lease is refused with it."""
        if self._lease is not None:
            self._lease.problem = f"line {refusal.position} of it was refused"

    def finish(self) -> Iterator[Refusal]:
        """A refusal for a lease the file ends inside (a truncated copy)."""
        if self._lease is not None:
            yield Refusal(self._lease.line, "the file ends inside this lease (truncated?)")


def _one_statement(text: str) -> list[str] | None:
    """The words of a line that is one whole statement, else None (take it word by word)."""
    text = text.strip()
    if text[-1:] != ";" or text.count(";") != 1 or "{" in text or "}" in text or "#" in text:
        return None
    if '"' not in text:
        words = text[:-1].split()
    else:
        words = _TOKEN.findall(text)
        words.pop()
    return words if 0 < len(words) <= _MAX_TOKENS and '"' not in words else None


def _lease_sighting(lease: _Lease, context: SourceContext) -> Sighting | Refusal | None:
    if lease.problem is not None:
        return Refusal(lease.line, f"lease {lease.address[:60]}: {lease.problem}")
    state, mac, hostname = "active", None, None
    times: dict[str, list[str]] = {}
    for words in lease.statements:
        first = words[0]
        if first in ("starts", "cltt"):
            times[first] = words[1:]
        elif first == "binding" and len(words) == 3 and words[1] == "state":
            state = words[2]
        elif first == "hardware" and len(words) == 3 and words[1] == "ethernet":
            mac = words[2]
        elif first == "client-hostname" and len(words) == 2:
            hostname = _unquote(words[1])
        elif first == "abandoned":
            state = "abandoned"
    if state != "active":
        return None
    try:
        seen = times.get("cltt") or times.get("starts")
        name, detail = _client_hostname(hostname)
        return Sighting(
            source="dhcpd", site=context.site, network=context.network,
            seen_at=_dhcpd_time(seen) if seen else import_time(context),
            ip=normalize_ip(lease.address), mac=normalize_mac(mac) if mac else None,
            hostname=name, detail=detail)
    except InvalidInput as e:
        return Refusal(lease.line, f"lease {lease.address[:60]}: {e.detail}")


def _dhcpd_time(words: list[str]) -> float:
    # dhcpd.leases(5) "Dates": "W YYYY/MM/DD HH:MM:SS" in UTC (the weekday ignored), or
    # "epoch N" with db-time-format local
    match words:
        case ["epoch", seconds] if seconds.isdigit():
            return float(seconds)
        case [weekday, date, clock] if weekday.isdigit():
            try:
                year, month, day = (int(p) for p in date.split("/"))
                hour, minute, second = (int(p) for p in clock.split(":"))
                if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60
                        and second < 61):
                    raise ValueError(date)
                return float(calendar.timegm((year, month, day, hour, minute, second)))
            except ValueError:
                pass
    raise InvalidInput(f"{' '.join(words)[:60]!r} is not a dhcpd date")


def _unquote(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] == '"':
        word = word[1:-1]
    if "\\" in word:  # dhcpd escapes quotes, backslashes and non-printing bytes (octal)
        word = re.sub(r"\\([0-7]{1,3}|.)",
                      lambda m: chr(int(m[1], 8)) if m[1].isdigit() else m[1], word)
    return word


def _client_hostname(name: str | None) -> tuple[str | None, str | None]:
    """``(hostname, detail)`` of a sighting from what a client called itself.

    A DHCP client names itself as it likes ("Living Room TV"): a name that is no host
    name is kept for people in ``detail`` instead of refusing a lease that was seen.
    """
    if not name:
        return None, None
    try:
        return normalize_hostname(name), None
    except InvalidInput:
        return None, f"client name {name[:120]!r} is not a host name"


class DnsmasqLeases:
    """dnsmasq's leases file (``/var/lib/misc/dnsmasq.leases``).

    One lease a line: ``expiry MAC IPv4 hostname client-id``, ``*`` for an unknown
    hostname or client id; then, when DHCPv6 is served, a ``duid <server DUID>`` line and
    ``expiry IAID IPv6 hostname client-DUID`` lines, whose MAC is read from a link-layer
    DUID (RFC 8415 §11.2, §11.4). A hardware address with a type prefix (``20-...``,
    InfiniBand) is no MAC and is left out. The file holds expiry times, not when the
    client was seen: a client last renewed its lease a lease time before it expires, so
    ``seen_at`` is expiry minus the ``lease-time`` option in seconds (dnsmasq's default,
    one hour, when not given); an infinite lease (expiry 0) is seen at the import's time.
    """

    name = "dnsmasq"
    options: frozenset[str] = frozenset({"lease-time"})

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """One sighting per lease line, in file order."""
        lease_time = _lease_time_option(context)
        started = False
        for item in read_lines(stream, what="the dnsmasq leases file"):
            if isinstance(item, Refusal):
                yield item
                continue
            fields = item.text.split()
            if not fields or fields[0] == "duid":
                continue
            if not started and not _looks_like_lease(fields):
                raise InvalidInput(f"the input is not a dnsmasq leases file: line "
                                   f"{item.number} is not 'expiry MAC IP hostname client-id'")
            started = True
            try:
                yield _dnsmasq_sighting(fields, context, lease_time)
            except InvalidInput as e:
                yield Refusal(item.number, e.detail)


def _lease_time_option(context: SourceContext) -> float:
    value = context.options.get("lease-time", "3600")
    if not value.isdigit() or not 0 < int(value) <= 10 * 365 * 86400:
        raise InvalidInput(f"the lease-time option {value[:20]!r} is not a number of seconds")
    return float(value)


def _looks_like_lease(fields: list[str]) -> bool:
    return len(fields) in (4, 5) and fields[0].isdigit()


def _dnsmasq_sighting(fields: list[str], context: SourceContext, lease_time: float
                      ) -> Sighting:
    if not _looks_like_lease(fields):
        raise InvalidInput(f"the line has {len(fields)} fields, not 'expiry MAC IP hostname "
                           "client-id'")
    expiry, link, address, name = fields[:4]
    ip = normalize_ip(address)
    if ":" in ip:  # DHCPv6: the second field is the IAID, the client is named by its DUID
        mac = _duid_mac(fields[4]) if len(fields) == 5 else None
    elif "-" in link[:3] and not _plain_mac(link):
        mac = None  # "XX-..." is a hardware type other than Ethernet
    else:
        mac = normalize_mac(link)
    seconds = int(expiry)
    if 0 < seconds < _YEAR_2001:
        raise InvalidInput(f"the expiry {expiry[:20]} is no time (a dnsmasq built with "
                           "HAVE_BROKEN_RTC writes lease lengths, which date nothing)")
    hostname, detail = _client_hostname(None if name == "*" else name)
    return Sighting(
        source="dnsmasq", site=context.site, network=context.network,
        # a file cannot report a renewal after it was written: a lease longer than the
        # lease-time option would otherwise be dated in the future
        seen_at=min(seconds - lease_time, import_time(context)) if seconds
        else import_time(context), ip=ip, mac=mac,
        hostname=hostname, detail=detail)


def _plain_mac(text: str) -> bool:
    try:
        normalize_mac(text)
    except InvalidInput:
        return False
    return True


def _duid_mac(duid: str) -> str | None:
    # RFC 8415 §11.2 DUID-LLT: type 1, hardware type, 4-byte time, link-layer address;
    # §11.4 DUID-LL: type 3, hardware type, link-layer address. Hardware type 1 is
    # Ethernet (RFC 826), whose address is a MAC.
    octets = duid.lower().split(":")
    if octets[:4] == ["00", "01", "00", "01"] and len(octets) == 14:
        return normalize_mac(":".join(octets[8:]))
    if octets[:4] == ["00", "03", "00", "01"] and len(octets) == 10:
        return normalize_mac(":".join(octets[4:]))
    return None
