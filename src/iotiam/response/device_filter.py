"""The filter of a set revocation: ``field=value`` terms joined by ``and``.

A small, strict grammar, because what it selects loses every credential::

    filter := term ( " and " term )*
    term   := field "=" value
    field  := manufacturer | batch | type | site | firmware | issuer
    value  := [A-Za-z0-9._:@/+-]{1,128}   or the same characters and spaces in "…"

Each field at most once; no ``or``, no wildcards, no negation, no empty filter (the
whole fleet is never one typo away). Where each field lives is in ``docs/revocation.md``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from iotiam.errors import InvalidInput

MAX_FILTER_CHARS = 1024
_VALUE = r"[A-Za-z0-9._:@/+\-]{1,128}"
_TERM = re.compile(rf'\s*([A-Za-z_]+)\s*=\s*(?:"([A-Za-z0-9._:@/+\- ]{{1,128}})"|({_VALUE}))\s*')
_AND = re.compile(r"\s+and\s+")


class FilterField(enum.StrEnum):
    """What a set revocation can select devices by."""

    MANUFACTURER = "manufacturer"
    BATCH = "batch"
    TYPE = "type"
    SITE = "site"
    FIRMWARE = "firmware"
    ISSUER = "issuer"


@dataclass(frozen=True)
class DeviceFilter:
    """The devices a set revocation selects: every term must hold (``and``)."""

    terms: tuple[tuple[FilterField, str], ...]

    def value(self, field: FilterField) -> str | None:
        """The value this filter demands of ``field`` (None: any)."""
        return next((v for f, v in self.terms if f is field), None)

    def text(self) -> str:
        """The canonical form (fields in grammar order), for audit records and replies."""
        order = list(FilterField)
        return " and ".join(f"{f}={_quoted(v)}" for f, v in
                            sorted(self.terms, key=lambda t: order.index(t[0])))


def parse_filter(text: str) -> DeviceFilter:
    """Parse ``text``, or InvalidInput saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("empty filter: name at least one of "
                           f"{', '.join(FilterField)} (e.g. 'manufacturer=acme and batch=2026-07')")
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidInput(f"filter longer than {MAX_FILTER_CHARS} characters")
    terms: list[tuple[FilterField, str]] = []
    for piece in _split(text.strip()):
        match = _TERM.fullmatch(piece)
        if match is None:
            raise InvalidInput(f"bad term {piece.strip()[:80]!r}: expected field=value "
                               "(value: letters, digits, ._:@/+- or \"quoted text\")")
        name, quoted, plain = match.groups()
        try:
            field = FilterField(name.lower())
        except ValueError:
            raise InvalidInput(f"unknown field {name[:40]!r}; fields: "
                               f"{', '.join(FilterField)}") from None
        if any(f is field for f, _ in terms):
            raise InvalidInput(f"field {field} given twice")
        terms.append((field, quoted if quoted is not None else plain))
    return DeviceFilter(tuple(terms))


def _split(text: str) -> list[str]:
    """The terms, split on `` and `` outside quotes."""
    if text.count('"') % 2:
        raise InvalidInput("unterminated quote in filter")
    pieces: list[str] = []
    start = 0
    spans = [m.span() for m in re.finditer(r'"[^"]*"', text)]
    for match in _AND.finditer(text):
        if any(a <= match.start() < b for a, b in spans):
            continue
        pieces.append(text[start:match.start()])
        start = match.end()
    pieces.append(text[start:])
    if any(not p.strip() for p in pieces):
        raise InvalidInput("'and' needs a term on each side")
    return pieces


def _quoted(value: str) -> str:
    return f'"{value}"' if " " in value else value
