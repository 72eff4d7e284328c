"""What the sources share besides their lines (``lines.py``): times, addresses, certificates.

Every input here is hostile until read: a line is read with a bound (a 10 MB line costs
one refusal and a bounded buffer, never 10 MB), a JSON record goes through
``iotiam.untrusted.load_json``, and a time, an address or a certificate that does not
parse is a ``InvalidInput`` the caller turns into a ``Refusal`` for that record.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from iotiam.discovery.certificates import read_certificate
from iotiam.discovery.models import (
    Refusal,
    Sighting,
    SourceContext,
    bounded_text,
    can_be_a_device,
    normalize_ip,
)
from iotiam.discovery.sources.lines import MAX_LINE
from iotiam.errors import InvalidInput
from iotiam.untrusted import load_json

#: the largest single JSON document (a pretty-printed broker listing) read at once
MAX_DOCUMENT = 64 * 1024 * 1024
#: a detail is for people; longer ones are cut
MAX_DETAIL = 200
#: the earliest and latest times a record may carry (1990 .. 2200): anything else is a
#: unit mistake (milliseconds) or garbage
EARLIEST, LATEST = 631152000.0, 7258118400.0

Record = Sighting | Refusal


class Reading(Iterator[Record]):
    """The iterator ``read`` returns: what a source yields, plus what it skipped on purpose.

    Records a source passes over by design (a Suricata ``alert``, a CA certificate in
    Zeek's x509.log, a ``$SYS`` counter) are neither sightings nor refusals; they are
    counted here by kind so a caller can show them (``reading.skipped``).
    """

    def __init__(self, produce: Callable[[Counter[str]], Iterator[Record]]) -> None:
        self.skipped: Counter[str] = Counter()
        self._records = produce(self.skipped)

    def __iter__(self) -> Reading:
        return self

    def __next__(self) -> Record:
        return next(self._records)


#: distinct kinds ``Reading.skipped`` names before it lumps the rest under "other"
MAX_SKIPPED_KINDS = 64


def count(skipped: Counter[str], kind: str) -> None:
    """Count one record skipped on purpose (a hostile file cannot grow the counter)."""
    key = kind[:60]
    if key not in skipped and len(skipped) >= MAX_SKIPPED_KINDS:
        key = "other"
    skipped[key] += 1


def json_object(line: bytes, what: str) -> dict[str, Any]:
    """One JSON object on one line (bounded, duplicate keys and NaN refused)."""
    value = load_json(line, what=what, max_bytes=MAX_LINE)
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} is not a JSON object")
    return value


def import_time(context: SourceContext) -> float:
    """The time for records that carry none: the caller's, else the import's start."""
    return context.default_time if context.default_time is not None else time.time()


def epoch(value: Any, what: str = "time") -> float:
    """Seconds since the epoch from a number, a decimal string or an ISO 8601 text."""
    seconds: float
    if value is None or value == "":
        raise InvalidInput(f"{what} is missing")
    if value.__class__ is str:
        if value[4:5] == "-":  # 2026-12-06T...: no use trying it as a number first
            seconds = _iso(value, what)
        else:
            try:
                seconds = float(value)
            except ValueError:
                seconds = _iso(value, what)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidInput(f"{what} {str(value)[:40]!r} is not a time")
    if not math.isfinite(seconds) or not EARLIEST <= seconds <= LATEST:
        raise InvalidInput(f"{what} {str(value)[:40]!r} is not a plausible time")
    return seconds


def _iso(text: str, what: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} {text[:40]!r} is not a time") from None
    if moment.tzinfo is None:  # a log without an offset is read as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Addresses:
    """Normalised addresses, whether each is local, and whether it can be a device's.

    A flow log repeats the same few thousand addresses a million times; parsing each
    once keeps a large import fast. The memo is dropped when it grows past a bound.
    Whether an IPv4 address is local or a device's is the same across its /24 (below),
    so a log of more addresses than the memo holds still classifies each /24 once.
    """

    #: ~2 MB of memo at most; a log with more distinct addresses only parses some twice
    _BOUND = 8192

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, bool, bool]] = {}
        #: /24 prefix (``10.1.2``) -> (is local, can be a device's)
        self._blocks: dict[str, tuple[bool, bool]] = {}

    def look(self, value: str) -> tuple[str, bool, bool]:
        """``(canonical address, is local, can be a device's)``; ``InvalidInput`` when it
        is not an address.

        Local: RFC 1918, RFC 4193 ULA, link-local (a host of this site). No device's:
        0.0.0.0 (a DHCP client before its lease), broadcast, multicast, loopback.
        """
        found = self._known.get(value)
        if found is None:
            canonical = normalize_ip(value)
            block, dot, _ = canonical.rpartition(".")
            if dot and block not in _MIXED_BLOCKS:
                classes = self._blocks.get(block)
                if classes is None:
                    classes = _classify(canonical)
                    if len(self._blocks) >= self._BOUND:
                        self._blocks.clear()
                    self._blocks[block] = classes
            else:
                classes = _classify(canonical)
            found = (canonical, *classes)
            if len(self._known) >= self._BOUND:
                self._known.clear()
            self._known[value] = found
        return found


#: the IPv4 /24s inside which ``ipaddress`` or ``can_be_a_device`` tell addresses apart
#: (0.0.0.0, 192.0.0.0/29 and 192.0.0.170/31, 255.255.255.255); every other network they
#: test is a /24 or wider, so one address of any other /24 answers for all of it
_MIXED_BLOCKS = frozenset({"0.0.0", "192.0.0", "255.255.255"})


def _classify(canonical: str) -> tuple[bool, bool]:
    """``(is local, can be a device's)`` of a canonical address."""
    address = ipaddress.ip_address(canonical)
    device = can_be_a_device(address)
    return device and address.is_private, device


#: which responders (servers) of a flow are taken as devices (option ``responders``)
RESPONDERS = ("local", "none", "all")


def responders(context: SourceContext) -> str:
    """The ``responders`` option: ``local`` (default), ``none`` or ``all``."""
    choice = context.options.get("responders", "local").strip().lower()
    if choice not in RESPONDERS:
        raise InvalidInput(f"option responders={choice[:20]!r}: choose one of "
                           + ", ".join(RESPONDERS))
    return choice


def clip(text: str) -> str:
    """A detail cut to ``MAX_DETAIL`` characters."""
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 1] + "…"


_HASH = re.compile(r"(sha3-\d+|sha\d+|md5|md2|shake\d+)", re.IGNORECASE)


def signature_hash(algorithm: str | None) -> str | None:
    """``sha1WithRSAEncryption`` / ``ecdsa-with-SHA256`` -> ``sha1`` / ``sha256``."""
    if not algorithm:
        return None
    found = _HASH.search(algorithm)
    return found.group(1).lower() if found else None


#: OpenSSL's curve names -> the SEC names ``Sighting.key`` uses
CURVES = {"prime256v1": "secp256r1", "prime192v1": "secp192r1", "prime239v1": "prime239v1"}


def key_label(kind: str | None, bits: int | None = None, curve: str | None = None
              ) -> str | None:
    """``rsa:2048``, ``ec:secp256r1``, ``ed25519``, ``dsa:1024`` from a log's key facts."""
    if not kind:
        return None
    name = kind.strip().lower()
    if name in ("ecdsa", "ec", "id-ecpublickey"):
        if not curve:
            return "ec"
        return "ec:" + CURVES.get(curve.lower(), curve.lower())
    if name in ("ed25519", "ed448"):
        return name
    if name in ("rsa", "rsaencryption", "dsa"):
        base = "dsa" if name == "dsa" else "rsa"
        return f"{base}:{bits}" if bits else base
    return name[:40]


def certificate_facts(encoded: str) -> dict[str, Any]:
    """What a base64 DER certificate in a log says, in ``Sighting``'s terms.

    Suricata logs a SHA-1 fingerprint and Zeek may use another hash; with the
    certificate itself the SHA-256 fingerprint, the issuer as RFC 4514 text and the
    exact key and signature hash can be had (RFC 5280 §4.1). A key cryptography cannot
    load refuses the record, like any other part that does not parse.
    """
    try:
        der = base64.b64decode(encoded, validate=True)
        facts = read_certificate(x509.load_der_x509_certificate(der), der)
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm) as e:
        raise InvalidInput(f"the logged certificate does not parse: {str(e)[:80]}") from None
    facts["issuer"] = bounded_text(facts["issuer"], "the certificate's issuer")
    facts["subject"] = facts["subject"][:256]
    return facts


def soft(normalize: Callable[[str], str], value: str | None) -> str | None:
    """``normalize(value)``, or None when the value is missing or not of its form.

    For hints a device makes up itself (a DHCP host name such as "Anna's phone"): a
    bad hint is dropped, and the record is kept for its other identifiers.
    """
    if not value:
        return None
    try:
        return normalize(value)
    except InvalidInput:
        return None
