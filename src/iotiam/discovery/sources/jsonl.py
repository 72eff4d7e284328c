"""``jsonl``: one JSON object per line, with the field names of ``models.Sighting``.

The generic way in for anything no dedicated source reads (a script's output, another
tool's export). ``seen_at`` is ISO 8601 or seconds since the epoch; a line without it
takes the import's time. Identifiers are normalised as every source normalises them.
A line that is not one such object is refused with its number and why; a line longer
than ``MAX_LINE_BYTES`` is skipped without being held in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

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
from iotiam.discovery.sources._common import EARLIEST, LATEST
from iotiam.errors import InvalidInput
from iotiam.untrusted import load_json

MAX_LINE_BYTES = 64 * 1024
_READ = 64 * 1024


def _text(what: str) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if not isinstance(value, str):
            raise InvalidInput(f"{what} must be a string")
        return bounded_text(value, what)
    return parse


def _normalized(what: str, normalize: Callable[[str], str]) -> Callable[[Any], str | None]:
    text_of = _text(what)

    def parse(value: Any) -> str | None:
        text = text_of(value)
        return None if text is None else normalize(text)
    return parse


def parse_time(value: Any, what: str) -> float:
    """Seconds since the epoch from a number or an ISO 8601 text (UTC when no offset)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{what} must be ISO 8601 text or seconds since the epoch")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"{what} {value[:40]!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    else:
        seconds = float(value)
    # the bounds every source holds times to: anything else is a unit mistake or garbage
    if not math.isfinite(seconds) or not EARLIEST <= seconds <= LATEST:
        raise InvalidInput(f"{what} is out of range")
    return seconds


def _ports(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > 65536 or any(
            isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535
            for p in value):
        raise InvalidInput("open_ports must be a list of port numbers (0 to 65535)")
    return tuple(sorted(set(value)))


def _serial(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput("serial must be hex text or an integer")
    if isinstance(value, int) and value < 0:
        raise InvalidInput("serial must not be negative")
    return normalize_serial(value)


_FIELDS: dict[str, Callable[[Any], Any]] = {
    "source": _text("source"),
    "site": _text("site"),
    "network": _text("network"),
    "ip": _normalized("ip", normalize_ip),
    "mac": _normalized("mac", normalize_mac),
    "hostname": _normalized("hostname", normalize_hostname),
    "client_id": _text("client_id"),
    "username": _text("username"),
    "certificate": _normalized("certificate", normalize_fingerprint),
    "issuer": _text("issuer"),
    "serial": _serial,
    "subject": _text("subject"),
    "not_after": lambda value: parse_time(value, "not_after"),
    "key": _text("key"),
    "signature_hash": _text("signature_hash"),
    "psk_identity": _text("psk_identity"),
    "vendor": _text("vendor"),
    "model": _text("model"),
    "open_ports": _ports,
    "detail": _text("detail"),
}


def sighting_of(record: Any, context: SourceContext, default_time: float) -> Sighting:
    """The sighting one decoded line describes; ``InvalidInput`` saying why not."""
    if not isinstance(record, dict):
        raise InvalidInput("the line is not a JSON object")
    values: dict[str, Any] = {"source": "jsonl", "site": context.site,
                              "network": context.network}
    seen_at = default_time
    for name, raw in record.items():
        if raw is None:
            continue
        if name == "seen_at":
            seen_at = parse_time(raw, "seen_at")
            continue
        parse = _FIELDS.get(name)
        if parse is None:
            raise InvalidInput(f"unknown field {str(name)[:40]!r}")
        parsed = parse(raw)
        if parsed is not None and parsed != ():
            values[name] = parsed
    sighting = Sighting(seen_at=seen_at, **values)
    if not sighting.identifiers():
        raise InvalidInput("no identifier (ip, mac, hostname, client_id, username, "
                           "certificate, issuer and serial, psk_identity)")
    return sighting


class JsonLinesSource:
    """Sightings written one JSON object per line."""

    name = "jsonl"
    options: frozenset[str] = frozenset()

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """One sighting or refusal per non-blank line."""
        default_time = context.default_time if context.default_time is not None else 0.0
        for number, line in _lines(stream):
            if line is None:
                yield Refusal(number, f"the line is longer than {MAX_LINE_BYTES} bytes")
                continue
            if not line.strip():
                continue
            try:
                record = load_json(line, what="the line", max_bytes=MAX_LINE_BYTES)
                yield sighting_of(record, context, default_time)
            except InvalidInput as e:
                yield Refusal(number, e.detail[:300])


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Numbered lines; None for one over the bound (read past, never held)."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # drop the rest of the line in bounded pieces
                rest = stream.readline(_READ)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line
