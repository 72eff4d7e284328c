"""Reading an input line by line in bounded memory: the one reader of every line-based source.

A hostile or broken input (a 10 MB line, a binary file, a stray Latin-1 byte) costs at
most one line's worth of memory and one refusal, never the whole import: a line longer
than the bound is skipped to its end without being held, and a line that does not decode
is refused on its own. Only a first line that is not text at all refuses the input as a
whole, since then nothing after it can be trusted to be the format either.

``bounded_lines`` gives the raw bytes (the log sources hand them to the JSON loader or
split them themselves); ``read_lines`` decodes them. Both drop a UTF-8 byte order mark
and refuse UTF-16 text at the first line.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from itertools import chain
from typing import NamedTuple, Protocol

from iotiam.discovery.models import Refusal
from iotiam.errors import InvalidInput

#: most lines of these formats are a few hundred bytes; a Zeek x509 or Suricata TLS record
#: carrying its certificate, a few KiB
MAX_LINE = 64 * 1024
_BOM = codecs.BOM_UTF8


class LineStream(Protocol):
    """What the readers read: a binary stream's ``readline``."""

    def readline(self, size: int = -1, /) -> bytes:
        """At most ``size`` bytes, up to and including the next newline."""
        ...


#: ``(line number, line)`` with None for a line over the bound
Lines = Iterator[tuple[int, bytes | None]]


class Line(NamedTuple):
    """One decoded line and its 1-based number."""

    # a tuple, made ~3x faster than a frozen dataclass: one is made for every line

    number: int
    text: str


def bounded_lines(stream: LineStream, *, what: str, limit: int = MAX_LINE,
                  keep_ends: bool = False) -> Lines:
    """``(line number, line)`` as bytes, its end stripped unless ``keep_ends``; ``None``
    for a line over ``limit`` bytes, which is read past in chunks, never held."""
    readline = stream.readline
    raw = readline(limit + 1)
    if raw and (len(raw) <= limit or raw[-1:] == b"\n"):
        raw = _without_bom(raw, what)  # before the loop: no test per line
    number = 0
    while raw:
        number += 1
        if len(raw) > limit and raw[-1:] != b"\n":
            _skip_to_end_of_line(stream, limit)
            yield number, None
        elif keep_ends:
            yield number, raw
        else:
            yield number, raw.rstrip(b"\r\n")
        raw = readline(limit + 1)


def read_lines(stream: LineStream, *, what: str, encoding: str = "utf-8",
               max_line: int = MAX_LINE, keep_ends: bool = False) -> Iterator[Line | Refusal]:
    """Each line of ``stream``, decoded, or a refusal for a line too long or not text.

    A UTF-8 byte order mark on the first line is dropped (Excel writes one); the end of
    line is stripped unless ``keep_ends`` (the CSV reader needs it inside quoted fields).
    """
    # the end is stripped from the bytes: the same as from the text, since the encoding
    # is ASCII-compatible (check_encoding)
    for number, raw in bounded_lines(stream, what=what, limit=max_line, keep_ends=keep_ends):
        if raw is None:
            yield too_long(number, max_line)
            continue
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            text = "\x00"
        if "\x00" in text:
            if number == 1:
                raise InvalidInput(f"{what} is not a text file in {encoding} (its first "
                                   "line is binary data or in another encoding)")
            yield Refusal(number, f"the line is not {encoding} text")
            continue
        yield Line(number, text)


def too_long(number: int, limit: int = MAX_LINE) -> Refusal:
    """The refusal for line ``number``, over ``limit`` bytes."""
    return Refusal(number, f"the line is longer than {limit} bytes; skipped")


def opening(lines: Lines, what: str) -> tuple[bytes, Lines] | None:
    """The first non-blank line, and every line from it on; None for a blank input."""
    for number, line in lines:
        if line is None:
            raise InvalidInput(f"not {what}: its first line is over-long")
        if line.strip():
            return line, chain([(number, line)], lines)
    return None


def _without_bom(first: bytes, what: str) -> bytes:
    if first.startswith(_BOM):
        return first[len(_BOM):]
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InvalidInput(f"{what} is UTF-16 text (Excel's \"Unicode Text\"); save it as "
                           "UTF-8 (\"CSV UTF-8\")")
    return first


def _skip_to_end_of_line(stream: LineStream, chunk: int) -> None:
    while part := stream.readline(chunk):
        if part.endswith(b"\n"):
            return


def check_encoding(name: str) -> str:
    """An ASCII-compatible encoding for an ``encoding`` option; ``InvalidInput`` if not."""
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise InvalidInput(f"unknown text encoding {name[:40]!r}") from None
    if codec.encode("\n;,")[0] != b"\n;,":  # lines are split on the byte b"\n"
        raise InvalidInput(f"the encoding {name[:40]!r} is not ASCII-compatible; use UTF-8")
    return codec.name
