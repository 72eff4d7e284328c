"""Read device rows from CSV, JSON or JSON-lines files for a bulk import."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iotiam.errors import InvalidInput
from iotiam.untrusted import load_json

MAX_IMPORT_FILE_BYTES = 256 * 1024 * 1024

Row = tuple[int, dict[str, Any]]
#: the key of a row standing for a line that could not be read; its value says why
UNREADABLE = "__unreadable__"


def read_rows(path: Path, fmt: str | None = None, *,
              csv_key_columns: Sequence[str] = ("id",)) -> list[Row]:
    """Rows with their position in the file (CSV: line number; JSON: 1-based index).

    A CSV header must name one of ``csv_key_columns`` (devices: ``id``).
    """
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_FILE_BYTES:
            raise InvalidInput(f"{path} is larger than {MAX_IMPORT_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path} is not UTF-8 text") from e
    kind = (fmt or path.suffix.lstrip(".")).lower()
    if kind == "csv":
        return parse_csv(text, csv_key_columns)
    if kind == "json":
        return parse_json(text)
    if kind in ("jsonl", "ndjson"):
        return parse_jsonl(text)
    raise InvalidInput(f"cannot tell the format of {path}; use --format csv|json|jsonl")


def parse_csv(text: str, key_columns: Sequence[str] = ("id",)) -> list[Row]:
    """A header row naming ``id``, ``type`` and optional ``org``, ``site``, ``location``;
    every other column becomes a free attribute (``attr.`` prefix optional).

    Other imports (manufacturing manifests) name their own ``key_columns``.
    """
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not set(key_columns) & set(reader.fieldnames):
        if tuple(key_columns) == ("id",):
            raise InvalidInput("CSV needs a header row with at least 'id' and 'type' columns")
        wanted = " or ".join(repr(c) for c in key_columns)
        raise InvalidInput(f"CSV needs a header row naming a {wanted} column")
    rows: list[Row] = []
    for record in reader:
        extra = record.pop(None, None)
        data: dict[str, Any] = {k: (v or "").strip() for k, v in record.items()}
        if extra:
            data["__extra_columns__"] = extra
        rows.append((reader.line_num, data))
    return rows


def parse_json(text: str) -> list[Row]:
    """A list of objects, or an object with a ``devices`` list."""
    doc = load_json(text, what="the file", max_bytes=MAX_IMPORT_FILE_BYTES)
    items = doc.get("devices") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InvalidInput("JSON import needs a list of devices or {\"devices\": [...]}")
    return [(i + 1, item if isinstance(item, dict) else {"__invalid__": item})
            for i, item in enumerate(items)]


def parse_jsonl(text: str) -> list[Row]:
    """One JSON object per line; a broken line becomes a row that fails on import."""
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = load_json(line, what="the line")
        except InvalidInput as e:  # the row fails on import, saying why
            item = {UNREADABLE: e.detail}
        rows.append((number, item if isinstance(item, dict) else {"__invalid__": item}))
    return rows
