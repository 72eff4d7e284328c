"""Firmware version order: dotted numbers with an optional pre-release suffix.

Accepted: ``1``, ``1.2``, ``1.2.3``, ``2.0.1-rc.2``, ``4.10.0-beta``, ``1.2.3+build7``
(at most 64 characters, at most 8 numeric parts; a leading ``v`` is accepted and
ignored). Ordered the way SemVer 2.0.0 §11 orders versions, extended to any number of
numeric parts:

- numeric parts compare as numbers and missing ones count as 0 (``1.2`` == ``1.2.0``,
  ``1.10`` > ``1.9``);
- a pre-release suffix after ``-`` sorts before the release (``2.0-rc.1`` < ``2.0``);
  its dot-separated identifiers compare numerically when both are numbers, else as
  ASCII text, and a number sorts before text (``rc.2`` < ``rc.10`` < ``rc.a``);
- build metadata after ``+`` is kept but never ordered (``1.0+a`` == ``1.0+b``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from iotiam.errors import InvalidInput

MAX_VERSION_LENGTH = 64
_VERSION = re.compile(
    r"v?(?P<numbers>\d{1,9}(?:\.\d{1,9}){0,7})"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


@total_ordering
@dataclass(frozen=True, eq=False)
class FirmwareVersion:
    """A parsed firmware version; compare with ``<``, ``>=``, ``==``."""

    text: str
    numbers: tuple[int, ...]
    prerelease: tuple[str, ...]

    @staticmethod
    def parse(text: object) -> FirmwareVersion:
        """Parse, or raise ``InvalidInput`` saying what a version looks like."""
        if not isinstance(text, str) or len(text) > MAX_VERSION_LENGTH \
                or not (match := _VERSION.fullmatch(text)):
            shown = text[:MAX_VERSION_LENGTH] if isinstance(text, str) else text
            raise InvalidInput(f"firmware version {shown!r} is not valid: use dotted numbers "
                               "with an optional suffix, e.g. 1.4.2 or 2.0.0-rc.1")
        numbers = tuple(int(n) for n in match["numbers"].split("."))
        while len(numbers) > 1 and numbers[-1] == 0:
            numbers = numbers[:-1]
        prerelease = tuple(match["pre"].split(".")) if match["pre"] else ()
        return FirmwareVersion(text=text, numbers=numbers, prerelease=prerelease)

    def _key(self) -> tuple[tuple[int, ...], int, tuple[tuple[int, int, str], ...]]:
        # a release (no pre-release) sorts after every pre-release of the same numbers
        identifiers = tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                            for p in self.prerelease)
        return self.numbers, 0 if self.prerelease else 1, identifiers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FirmwareVersion):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: FirmwareVersion) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text
