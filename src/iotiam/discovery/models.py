"""Discovery value types: what was seen on the network, and what it turned out to be.

A *sighting* is "something that looks like a device was seen": when, where, by which
source, with whatever identifiers that source gives. Reconciliation matches it to a
registered device by the strongest identifier it carries; what matches nothing becomes
(or joins) a *discovered asset*, an unmanaged identity.

Time is a float of seconds since the epoch (UTC), as in the detection pipeline: a
million sightings go through an import, and datetime arithmetic would be most of it.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import marshal
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from iotiam.errors import InvalidInput


class IdentifierKind(enum.StrEnum):
    """The identifiers a sighting may carry, strongest first (the enum's order)."""

    #: SHA-256 of the certificate's DER, 64 lower-case hex digits
    CERTIFICATE = "certificate"
    #: ``<issuer DN as RFC 4514>|<serial, lower-case hex without leading zeros>``
    ISSUER_SERIAL = "issuer-serial"
    PSK_IDENTITY = "psk-identity"
    #: an MQTT client id or username
    CLIENT_ID = "client-id"
    #: 48-bit MAC, ``aa:bb:cc:dd:ee:ff``
    MAC = "mac"
    #: lower-case, no trailing dot
    HOSTNAME = "hostname"
    #: an address only means something at one site and for a while (DHCP moves it)
    IP = "ip"


#: how sure a match on each identifier is; the order of the enum is the order of trust
CONFIDENCE: dict[IdentifierKind, float] = {
    IdentifierKind.CERTIFICATE: 1.0,
    IdentifierKind.ISSUER_SERIAL: 0.99,
    IdentifierKind.PSK_IDENTITY: 0.95,
    IdentifierKind.CLIENT_ID: 0.9,
    IdentifierKind.MAC: 0.85,
    IdentifierKind.HOSTNAME: 0.7,
    IdentifierKind.IP: 0.5,
}

#: the attribute a device adopted from a discovered asset keeps that asset's id in
ADOPTED_FROM = "discovered-as"

#: an IP address identifies a device only this long around the time it was seen with it
IP_BINDING_SECONDS = 24 * 3600.0

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$")
#: the canonical spelling itself (what most sources already give): no rewriting needed
_MAC_CANONICAL = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_MAC_DOTTED = re.compile(r"^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$")
_LABEL = r"[a-z0-9_][a-z0-9_-]{0,62}"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_HEX = re.compile(r"^[0-9a-f]+$")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
#: dotted IPv4 as ``ipaddress`` writes it: ASCII digits, no leading zeros, each < 256
_IPV4_CANONICAL = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
MAX_TEXT = 256


def normalize_mac(value: str) -> str:
    """``AA-BB-CC-DD-EE-FF``, ``aabb.ccdd.eeff`` or ``aabbccddeeff`` -> ``aa:bb:cc:dd:ee:ff``."""
    if _MAC_CANONICAL.fullmatch(value):
        return value  # what most sources give: no copy, no rewriting
    text = value.strip().lower()
    if _MAC_CANONICAL.fullmatch(text):
        return text
    if _MAC_DOTTED.fullmatch(text):
        text = text.replace(".", "")
    elif not _MAC.fullmatch(text):
        raise InvalidInput(f"{value[:40]!r} is not a MAC address")
    digits = text.replace(":", "").replace("-", "")
    if len(digits) != 12:
        raise InvalidInput(f"{value[:40]!r} is not a MAC address")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def normalize_ip(value: str) -> str:
    """The canonical text of an IPv4 or IPv6 address (IPv4-mapped IPv6 unwrapped)."""
    if _IPV4_CANONICAL.fullmatch(value):
        return value  # already canonical dotted IPv4 (ipaddress would answer the same)
    try:
        address = ipaddress.ip_address(value.strip().split("%", 1)[0])
    except ValueError:
        raise InvalidInput(f"{value[:60]!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


#: a discovered asset's id: "as-" and 64 random bits in hex (``service.new_asset_id``)
_ASSET_ID = re.compile(r"as-[0-9a-f]{16}")


def is_asset_id(value: str) -> bool:
    """Whether ``value`` has the shape of a discovered asset's id."""
    return _ASSET_ID.fullmatch(value) is not None


def can_be_a_device(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for addresses nobody holds: 0.0.0.0 (a DHCP client before its lease),
    broadcast, multicast, loopback."""
    return not (address.is_unspecified or address.is_multicast or address.is_loopback
                or address == _BROADCAST)


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def normalize_hostname(value: str) -> str:
    """Lower-case, without the trailing dot; ``InvalidInput`` when it is not a host name."""
    text = value.strip().lower().rstrip(".")
    if not _HOSTNAME.fullmatch(text):
        raise InvalidInput(f"{value[:60]!r} is not a host name")
    return text


def normalize_fingerprint(value: str) -> str:
    """A SHA-256 fingerprint with or without colons, any case -> 64 lower-case hex digits."""
    text = value.strip().lower().replace(":", "")
    if len(text) != 64 or not _HEX.fullmatch(text):
        raise InvalidInput(f"{value[:80]!r} is not a SHA-256 certificate fingerprint")
    return text


def normalize_serial(value: str | int) -> str:
    """A serial number (int, decimal-looking hex with colons, or hex) -> lower-case hex."""
    if isinstance(value, int):
        return format(value, "x")
    text = value.strip().lower().replace(":", "")
    if text.startswith("0x"):
        text = text[2:]
    if not text or not _HEX.fullmatch(text):
        raise InvalidInput(f"{value[:80]!r} is not a certificate serial number")
    return text.lstrip("0") or "0"


def bounded_text(value: str | None, what: str) -> str | None:
    """Strip, drop empty, refuse over-long or NUL-bearing text."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_TEXT or "\x00" in text:
        raise InvalidInput(f"{what} is longer than {MAX_TEXT} characters or has a NUL byte")
    return text


# Not frozen, and hashed by value all the same: a frozen dataclass's __init__ sets each of
# its 21 slots through object.__setattr__, 1.8 µs a sighting against 0.3 µs (CPU time,
# measured), and an import builds a million of them. Nothing assigns to one once built.
@dataclass(slots=True, unsafe_hash=True)
class Sighting:
    """One observation of something that looks like a device (a value: never changed).

    Sources normalise identifiers with the ``normalize_*`` functions before building
    one, so that the same device seen by two sources carries the same values.
    """

    #: the source's name (``nmap``, ``dhcpd``, ``dnsmasq``, ``arp``, ``zeek``,
    #: ``suricata``, ``cmdb``, ``mosquitto``, ``emqx``, ``broker``, ``api``, ``est``,
    #: ``events``)
    source: str
    seen_at: float
    site: str | None = None
    #: a network name or CIDR the source knows it by (a VLAN, a subnet)
    network: str | None = None
    ip: str | None = None
    mac: str | None = None
    hostname: str | None = None
    #: MQTT client id
    client_id: str | None = None
    #: MQTT username (matched like a client id)
    username: str | None = None
    certificate: str | None = None
    #: issuer DN (RFC 4514) and serial (``normalize_serial``) of a presented certificate
    issuer: str | None = None
    serial: str | None = None
    #: the certificate's subject DN, for people (never used to match)
    subject: str | None = None
    #: the certificate's notAfter, when the source saw it
    not_after: float | None = None
    #: ``rsa:1024``, ``ec:secp192r1``, ``ed25519``, when the source saw the key
    key: str | None = None
    #: the certificate's signature hash (``sha1``, ``sha256`` ...)
    signature_hash: str | None = None
    psk_identity: str | None = None
    vendor: str | None = None
    model: str | None = None
    open_ports: tuple[int, ...] = ()
    #: why the source reported it, for people (``tls: unknown ca``, ``awaiting approval``)
    detail: str | None = None

    def identifiers(self) -> list[tuple[IdentifierKind, str]]:
        """Every identifier this sighting carries, strongest first."""
        found: list[tuple[IdentifierKind, str]] = []
        if self.certificate:
            found.append((IdentifierKind.CERTIFICATE, self.certificate))
        if self.issuer and self.serial:
            found.append((IdentifierKind.ISSUER_SERIAL, f"{self.issuer}|{self.serial}"))
        if self.psk_identity:
            found.append((IdentifierKind.PSK_IDENTITY, self.psk_identity))
        if self.client_id:
            found.append((IdentifierKind.CLIENT_ID, self.client_id))
        if self.username and self.username != self.client_id:
            found.append((IdentifierKind.CLIENT_ID, self.username))
        if self.mac:
            found.append((IdentifierKind.MAC, self.mac))
        if self.hostname:
            found.append((IdentifierKind.HOSTNAME, self.hostname))
        if self.ip:
            found.append((IdentifierKind.IP, self.ip))
        return found

    def digest(self) -> bytes:
        """16 bytes naming this exact observation: importing it twice adds nothing."""
        values = _ALL_FIELDS(self)
        try:
            encoded = marshal.dumps(values, _MARSHAL_VERSION)
        except ValueError:  # a str or int subclass (an enum member): marshal takes exact types
            encoded = marshal.dumps(tuple(map(_exact, values)), _MARSHAL_VERSION)
        return hashlib.blake2b(encoded, digest_size=16).digest()


def scoped_digests(org_path: str, digests: Iterable[bytes]) -> list[bytes]:
    """Each sighting digest (``Sighting.digest()``) as imported under ``org_path``: what
    an import claims, so that each org's imports are idempotent on their own (G9) and one
    org's sighting never hides another's. BLAKE2b-128 of the path, then the digest."""
    # the digest's fixed length at the end keeps paths apart; the path's state is hashed
    # once and copied per digest (0.2 µs, where a new hash of both took 0.4)
    scope = hashlib.blake2b(org_path.encode(), digest_size=16)
    keys: list[bytes] = []
    for digest in digests:
        hashed = scope.copy()
        hashed.update(digest)
        keys.append(hashed.digest())
    return keys


#: every field's value, in declaration order (one C call: the digest runs per sighting)
_ALL_FIELDS = operator.attrgetter(*(f.name for f in fields(Sighting)))
#: marshal's format 2 (Python 2.5 on): binary floats, text as UTF-8 and no back-references
#: to objects already written (format 3 on), so equal values always give equal bytes. It
#: encodes the fields in one C call, where joining their reprs took 2 µs a sighting.
_MARSHAL_VERSION = 2


def _exact(value: Any) -> Any:
    """``value`` as the built-in type it derives from (marshal refuses subclasses)."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, tuple):
        return tuple(map(_exact, value))
    return value


@dataclass(frozen=True, slots=True)
class Refusal:
    """A line (or record) of an input that was not taken, and why."""

    #: 1-based line number, or record number where the format has no lines
    position: int
    reason: str


@dataclass(frozen=True)
class SourceContext:
    """What the caller of an import says about the input."""

    #: the site the input was collected at (sources may override it per record)
    site: str | None = None
    network: str | None = None
    #: the time to give records that carry none (an ARP table, a CMDB export); the
    #: import's start when None
    default_time: float | None = None
    #: source-specific settings: a CSV's column mapping (``{"mac": "MAC Address"}``),
    #: the time zone of a dnsmasq leases file ...
    options: dict[str, str] = field(default_factory=dict)


class AssetStatus(enum.StrEnum):
    """Where a discovered asset stands."""

    #: nobody manages it
    UNMANAGED = "unmanaged"
    #: an admin registered it from the register; its sightings now match the device
    ADOPTED = "adopted"
    #: it turned out to be a registered device (enrolled after it was first seen)
    MATCHED = "matched"


class Match(NamedTuple):
    """Why a sighting was attributed to a device or an asset (a tuple: an import makes
    one per sighting, and a frozen dataclass costs eight times as much to build)."""

    basis: IdentifierKind
    confidence: float
    device_id: str | None = None
    asset_id: str | None = None


class Presence(enum.StrEnum):
    """How a registered device stands against what the sources see."""

    #: seen recently, and registered and not decommissioned
    SEEN = "seen"
    #: registered, but no source has seen it for longer than the dormancy period
    DORMANT = "dormant"
    #: decommissioned, and still seen after it was
    ZOMBIE = "zombie"
    #: registered and never seen by any source (nor connecting itself)
    NEVER_SEEN = "never-seen"


class DiscoveredAsset(NamedTuple):
    """One unmanaged identity: every sighting that shares an identifier with it, merged
    (a tuple: an import reads and writes one for every second sighting or so)."""

    id: str
    #: the org subtree of whoever imported what it was seen by (G9)
    org_path: str
    status: AssetStatus
    first_seen: float
    last_seen: float
    #: the sources that saw it, sorted
    sources: tuple[str, ...]
    #: every identifier it was seen with, strongest first
    identifiers: tuple[tuple[IdentifierKind, str], ...]
    sightings: int
    site: str | None = None
    network: str | None = None
    ip: str | None = None
    mac: str | None = None
    hostname: str | None = None
    vendor: str | None = None
    model: str | None = None
    open_ports: tuple[int, ...] = ()
    #: the device it became (``ADOPTED``/``MATCHED``)
    device_id: str | None = None


@dataclass(frozen=True)
class DeviceSeen:
    """What the sources saw of one registered device (for dormancy, zombies, sharing)."""

    device_id: str
    org_path: str
    first_seen: float
    last_seen: float
    sources: tuple[str, ...]
    sightings: int
    #: distinct (site, ip) places it was seen at within ``IP_BINDING_SECONDS`` of its last
    #: sighting: two at once, for one credential, means a shared or cloned credential
    places: tuple[tuple[str | None, str], ...] = ()


@dataclass(frozen=True)
class CredentialSeen:
    """A credential (certificate or PSK identity) as the sources saw it used."""

    kind: IdentifierKind
    value: str
    org_path: str
    last_seen: float
    #: the devices and assets it was seen on (two or more: shared)
    device_ids: tuple[str, ...] = ()
    asset_ids: tuple[str, ...] = ()
    #: distinct (site, ip) it was seen from in the last ``IP_BINDING_SECONDS``
    places: tuple[tuple[str | None, str], ...] = ()
    issuer: str | None = None
    serial: str | None = None
    subject: str | None = None
    not_after: float | None = None
    key: str | None = None
    signature_hash: str | None = None


def ip_key(site: str | None, ip: str) -> str:
    """How an IP address is keyed for matching: it only means something at one site."""
    return f"{site or ''}|{ip}"


class Binding(NamedTuple):
    """An identifier value as last seen on one asset or device, within one org subtree.

    IP values are keyed by :func:`ip_key`. ``device_id`` set means the value belongs to
    a registered device (learned from a sighting matched by a stronger identifier, or
    from an asset that turned out to be that device). A tuple: an import makes one per
    identifier of every new asset.
    """

    kind: IdentifierKind
    value: str
    org_path: str
    first_seen: float
    last_seen: float
    asset_id: str | None = None
    device_id: str | None = None


class RegisteredDevice(NamedTuple):
    """A registered device an identifier value belongs to, and where it lives (G9)."""

    device_id: str
    org_path: str


@dataclass(frozen=True)
class DevicePresence:
    """The per-device aggregate kept on import (what :class:`DeviceSeen` is read from)."""

    device_id: str
    org_path: str
    first_seen: float
    last_seen: float
    sources: frozenset[str]
    sightings: int
    #: (site, ip) -> when it was last seen there (pruned to ``IP_BINDING_SECONDS``)
    places: dict[tuple[str | None, str], float] = field(default_factory=dict)

    def seen(self) -> DeviceSeen:
        """As the risk register reads it."""
        recent = sorted((place for place, at in self.places.items()
                         if at >= self.last_seen - IP_BINDING_SECONDS),
                        key=lambda place: (place[0] or "", place[1]))
        return DeviceSeen(self.device_id, self.org_path, self.first_seen, self.last_seen,
                          tuple(sorted(self.sources)), self.sightings, tuple(recent))


@dataclass
class ImportReport:
    """What became of one import: counts, and the first refusals in detail."""

    source: str
    read: int = 0
    #: new sightings stored (a repeated one is counted in ``duplicates``)
    added: int = 0
    duplicates: int = 0
    matched: int = 0
    new_assets: int = 0
    refused: int = 0
    refusals: list[Refusal] = field(default_factory=list)

    #: at most this many refusals are kept in detail (all are counted)
    MAX_REFUSALS = 1000

    def refuse(self, refusal: Refusal) -> None:
        """Count a refused record and keep it if there is room."""
        self.refused += 1
        if len(self.refusals) < self.MAX_REFUSALS:
            self.refusals.append(refusal)
