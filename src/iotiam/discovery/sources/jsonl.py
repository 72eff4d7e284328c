"""``jsonl``: one JSON object per line, with the field names of ``models.Sighting``.

The generic way in for anything no dedicated source reads (a script's output, another
tool's export). ``seen_at`` is ISO 8601 or seconds since the epoch (a number or a decimal
text); a line without it takes the import's time. Identifiers are normalised as every
source normalises them. A line that is not one such object is refused with its number
and why; a line longer than ``MAX_LINE`` is skipped without being held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO, Any

from iotiam.discovery.models import (
    MAX_TEXT,
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
from iotiam.discovery.sources._common import epoch, import_time, json_object
from iotiam.discovery.sources.lines import MAX_LINE, bounded_lines, too_long
from iotiam.errors import InvalidInput

#: the text fields, each with the normalisation its value goes through (None: as given)
_TEXT: dict[str, Callable[[str], str] | None] = {
    "source": None, "site": None, "network": None,
    "ip": normalize_ip, "mac": normalize_mac, "hostname": normalize_hostname,
    "client_id": None, "username": None, "certificate": normalize_fingerprint,
    "issuer": None, "subject": None, "key": None, "signature_hash": None,
    "psk_identity": None, "vendor": None, "model": None, "detail": None,
}
#: the fields an identifier is read from, alone (issuer and serial count as a pair)
_IDENTIFYING = frozenset({"certificate", "psk_identity", "client_id", "username", "mac",
                          "hostname", "ip"})


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


def _not_after(value: Any) -> float:
    return epoch(value, "not_after")


#: the fields that are not text, each with its parser
_OTHER: dict[str, Callable[[Any], Any]] = {
    "serial": _serial, "not_after": _not_after, "open_ports": _ports,
}


def sighting_of(record: dict[str, Any], context: SourceContext, default_time: float
                ) -> Sighting:
    """The sighting one decoded line describes; ``InvalidInput`` saying why not."""
    values: dict[str, Any] = {"source": "jsonl", "site": context.site,
                              "network": context.network}
    seen_at = default_time
    for name, raw in record.items():
        if raw is None:
            continue
        if name in _TEXT:
            if raw.__class__ is not str:
                raise InvalidInput(f"{name} must be a string")
            # bounded_text's rules, without a call per field (most lines are all text)
            text = raw.strip()
            if len(text) > MAX_TEXT or "\x00" in text:
                bounded_text(text, name)  # refuses, saying why
            if text:
                normalize = _TEXT[name]
                values[name] = text if normalize is None else normalize(text)
        elif name == "seen_at":
            seen_at = epoch(raw, "seen_at")
        elif name in _OTHER:
            parsed = _OTHER[name](raw)
            if parsed != ():
                values[name] = parsed
        else:
            raise InvalidInput(f"unknown field {str(name)[:40]!r}")
    if values.keys().isdisjoint(_IDENTIFYING) and not ("issuer" in values
                                                       and "serial" in values):
        raise InvalidInput("no identifier (ip, mac, hostname, client_id, username, "
                           "certificate, issuer and serial, psk_identity)")
    return Sighting(seen_at=seen_at, **values)


class JsonLinesSource:
    """Sightings written one JSON object per line."""

    name = "jsonl"
    options: frozenset[str] = frozenset()

    def read(self, stream: IO[bytes], context: SourceContext) -> Iterator[Sighting | Refusal]:
        """One sighting or refusal per non-blank line."""
        default_time = import_time(context)
        for number, line in bounded_lines(stream, what="a JSON-lines file"):
            if line is None:
                yield too_long(number, MAX_LINE)
                continue
            if not line or line.isspace():
                continue
            try:
                yield sighting_of(json_object(line, "the line"), context, default_time)
            except InvalidInput as e:
                yield Refusal(number, e.detail[:300])
