"""Reading a text input line by line in bounded memory, for the line-based sources.

A hostile or broken input (a 10 MB line, a binary file, a stray Latin-1 byte) costs at
most one line's worth of memory and one refusal, never the whole import: a line longer
than the bound is skipped to its end without being held, and a line that does not decode
is refused on its own. Only a first line that is not text at all refuses the input as a
whole, since then nothing after it can be trusted to be the format either.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator
from typing import IO, NamedTuple

from iotiam.discovery.models import Refusal, SourceContext
from iotiam.errors import InvalidInput

#: the longest line any of these formats writes is a few hundred bytes
MAX_LINE = 64 * 1024
_BOM = codecs.BOM_UTF8


class Line(NamedTuple):
    """One decoded line and its 1-based number."""

    # a tuple, made ~3x faster than a frozen dataclass: one is made for every line

    number: int
    text: str


def read_lines(stream: IO[bytes], *, what: str, encoding: str = "utf-8",
               max_line: int = MAX_LINE, keep_ends: bool = False) -> Iterator[Line | Refusal]:
    """Each line of ``stream``, decoded, or a refusal for a line too long or not text.

    A UTF-8 byte order mark on the first line is dropped (Excel writes one); the end of
    line is stripped unless ``keep_ends`` (the CSV reader needs it inside quoted fields).
    """
    number = 0
    readline = stream.readline
    while raw := readline(max_line + 1):
        number += 1
        if len(raw) > max_line and raw[-1:] != b"\n":
            _skip_to_end_of_line(stream, max_line)
            yield Refusal(number, f"the line is longer than {max_line} bytes; skipped")
            continue
        if number == 1:
            raw = _without_bom(raw, what)
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
        yield Line(number, text if keep_ends else text.rstrip("\r\n"))


def _without_bom(first: bytes, what: str) -> bytes:
    if first.startswith(_BOM):
        return first[len(_BOM):]
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InvalidInput(f"{what} is UTF-16 text (Excel's \"Unicode Text\"); save it as "
                           "UTF-8 (\"CSV UTF-8\")")
    return first


def _skip_to_end_of_line(stream: IO[bytes], chunk: int) -> None:
    while part := stream.readline(chunk):
        if part.endswith(b"\n"):
            return


def import_time(context: SourceContext) -> float:
    """The time for records that carry none: the caller's, else the import's start."""
    return context.default_time if context.default_time is not None else time.time()


def check_encoding(name: str) -> str:
    """An ASCII-compatible encoding for an ``encoding`` option; ``InvalidInput`` if not."""
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise InvalidInput(f"unknown text encoding {name[:40]!r}") from None
    if codec.encode("\n;,")[0] != b"\n;,":  # lines are split on the byte b"\n"
        raise InvalidInput(f"the encoding {name[:40]!r} is not ASCII-compatible; use UTF-8")
    return codec.name
