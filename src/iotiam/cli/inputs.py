"""What an operator hands the CLI (durations, files), read with bounds and one-line errors."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.errors import InvalidInput
from iotiam.untrusted import MAX_BYTES, load_json

#: no lifetime iotiam manages is longer; the server applies each field's own bound
MAX_DURATION = timedelta(days=100 * 365)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the API's bound on ``limit`` for every list route (``Query(ge=1, le=1000)``)
MAX_PAGE = 1000

#: ``--limit`` of every list command: bounded here, so that ``--limit 0`` or ``-5`` is a
#: usage error (exit 2) rather than an empty listing or the server's 422
LimitOption = Annotated[int, typer.Option(
    min=1, max=MAX_PAGE, help=f"At most this many (1 to {MAX_PAGE}).")]


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``12h``, ``30d``; at most :data:`MAX_DURATION`."""
    match = re.fullmatch(r"\s*(\d{1,30})\s*([smhd])\s*", text)
    if not match:
        raise InvalidInput(f"bad duration {text[:40]!r}; use e.g. 90s, 10m, 12h or 30d")
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    # compared as an int first: timedelta itself overflows past 999,999,999 days
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidInput(f"duration {text.strip()[:40]} is longer than "
                           f"{MAX_DURATION.days // 365} years")
    return timedelta(seconds=seconds)


def read_file(path: Path, what: str, *, max_bytes: int) -> bytes:
    """The bytes of a local file the user named, or one line saying why not."""
    try:
        with path.open("rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as e:
        raise InvalidInput(f"cannot read {what} {path}: {e.strerror or e}") from e
    if len(data) > max_bytes:
        raise InvalidInput(f"{what} {path} is larger than {max_bytes} bytes")
    return data


def load_json_file(path: Path, what: str, *, max_bytes: int = MAX_BYTES) -> Any:
    """A local JSON file, decoded as strictly as one from the network."""
    return load_json(read_file(path, what, max_bytes=max_bytes), what=f"{what} {path}",
                     max_bytes=max_bytes)
