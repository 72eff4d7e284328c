"""ARP and neighbour tables: which MAC answered for which IP on a router's or host's link.

Four ways such a table is dumped, told apart by the first line that is not blank:

- Linux ``/proc/net/arp`` (a header ``IP address  HW type  Flags  HW address  Mask
  Device``; an entry whose flags lack ATF_COM, 0x2, is incomplete);
- ``ip neigh show`` (``IP dev DEV lladdr MAC [router] STATE``, ``-s`` adds counters);
- ``arp -a`` / ``arp -an`` of Linux net-tools, the BSDs and macOS (``name (IP) at MAC
  ...``; BSD and macOS drop leading zeros of each octet, ``0:1b:...``);
- Windows ``arp -a`` (``Interface: ...`` blocks of ``IP  MAC  dynamic`` rows).

Entries that resolved nothing (``FAILED``, ``INCOMPLETE``, ``<incomplete>``) and
broadcast or multicast addresses (no device has one) are skipped without a refusal: they
are the table's normal content, not damage. The tables carry no times: every entry is
seen at the context's time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import IO

from iotiam.discovery.models import (
    Refusal,
    Sighting,
    SourceContext,
    normalize_hostname,
    normalize_ip,
    normalize_mac,
)
from iotiam.discovery.sources._common import import_time, soft
from iotiam.discovery.sources.lines import read_lines
from iotiam.errors import InvalidInput

#: ``(ip, mac, hostname)`` of a resolved entry; None for a line to pass over
_Entry = tuple[str, str, str | None] | None
_ARP_A = re.compile(r"^(\S+) \(([^)\s]+)\) at (\S+)")
#: ip neigh states that mean no link-layer address was learnt (ip-neighbour(8))
_UNRESOLVED = {"FAILED", "INCOMPLETE"}


class NeighbourTable:
    """An ARP or IPv6 neighbour table, in any of the four dumps above."""

    name = "arp"
    options: frozenset[str] = frozenset()

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """One sighting per resolved entry, in table order."""
        parse: Callable[[str], _Entry] | None = None
        seen_at = import_time(context)
        for item in read_lines(stream, what="the neighbour table"):
            if isinstance(item, Refusal):
                yield item
                continue
            text = item.text.strip()
            if not text:
                continue
            if parse is None:
                parse = _format_of(text)
            try:
                entry = parse(text)
                sighting = _sighting(entry, seen_at, context) if entry else None
            except InvalidInput as e:
                yield Refusal(item.number, e.detail)
                continue
            if sighting is not None:
                yield sighting


def _format_of(first: str) -> Callable[[str], _Entry]:
    if first.startswith("IP address"):
        return _proc_net_arp
    if first.startswith("Interface:"):
        return _windows_arp
    if _ARP_A.match(first):
        return _arp_a
    if _is_ip(first.split(None, 1)[0]):
        return _ip_neigh
    raise InvalidInput("the input is not an ARP or neighbour table (/proc/net/arp, "
                       "'ip neigh', 'arp -a'): its first line is "
                       f"{first[:60]!r}")


def _proc_net_arp(text: str) -> _Entry:
    fields = text.split()
    if fields[0] == "IP":
        return None  # the header
    if len(fields) != 6:
        raise InvalidInput(f"the line has {len(fields)} fields, not the 6 of /proc/net/arp")
    try:
        flags = int(fields[2], 16)
    except ValueError:
        raise InvalidInput(f"the flags {fields[2][:20]!r} are not hexadecimal") from None
    if not flags & 0x2:  # ATF_COM: the entry is complete (linux/if_arp.h)
        return None
    return fields[0], fields[3], None


def _ip_neigh(text: str) -> _Entry:
    fields = text.split()
    if fields[0] in ("Deleted", "Miss"):  # `ip monitor neigh` lines
        return None
    if fields[-1] in _UNRESOLVED or "lladdr" not in fields:
        return None
    at = fields.index("lladdr")
    if at + 1 >= len(fields):
        raise InvalidInput("'lladdr' is not followed by an address")
    return fields[0], fields[at + 1], None


def _arp_a(text: str) -> _Entry:
    found = _ARP_A.match(text)
    if found is None:
        raise InvalidInput("the line is not 'name (IP) at MAC ...' as arp -a writes")
    name, ip, mac = found.groups()
    if mac.startswith(("<", "(")):  # <incomplete> (Linux), (incomplete) (BSD, macOS)
        return None
    return ip, mac, None if name == "?" else name


def _windows_arp(text: str) -> _Entry:
    fields = text.split()
    if fields[0] == "Interface:" or fields[0] == "Internet":
        return None  # a block's title and its column headings
    if len(fields) != 3:
        raise InvalidInput(f"the line has {len(fields)} fields, not 'IP MAC type'")
    return fields[0], fields[1], None


def _sighting(entry: tuple[str, str, str | None], seen_at: float,
              context: SourceContext) -> Sighting | None:
    ip, mac, name = entry
    mac = normalize_mac(_with_leading_zeros(mac))
    if mac == "00:00:00:00:00:00" or int(mac[:2], 16) & 1:
        return None  # no address learnt, or broadcast/multicast (I/G bit, IEEE 802)
    return Sighting(source="arp", seen_at=seen_at, site=context.site,
                    network=context.network, ip=normalize_ip(ip), mac=mac,
                    # the name `arp -a` resolved is a bonus: an odd one is passed over
                    hostname=soft(normalize_hostname, name))


def _with_leading_zeros(mac: str) -> str:
    # BSD and macOS print each octet without its leading zero: 0:1b:21:a:3:4f
    octets = mac.split(":")
    if len(octets) == 6 and all(1 <= len(o) <= 2 for o in octets):
        return ":".join(o.zfill(2) for o in octets)
    return mac


def _is_ip(text: str) -> bool:
    try:
        normalize_ip(text)
    except InvalidInput:
        return False
    return True
