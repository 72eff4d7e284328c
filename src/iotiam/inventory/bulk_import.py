"""Read device rows from CSV, JSON or JSON-lines files for a bulk import."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iotiam.errors import InvalidInput
from iotiam.untrusted import load_json

MAX_IMPORT_FILE_BYTES = 256 * 1024 * 1024

Row = tuple[int, dict[str, Any]]
#: the key of a row standing for a line that could not be read; its value says why
UNREADABLE = "__unreadable__"
#: the key of a row standing for a JSON item that is not an object
INVALID = "__invalid__"
#: the key of a CSV row holding the cells past the header's columns
EXTRA_COLUMNS = "__extra_columns__"
#: why a value that is not a string fails: the words the API uses for a body field
#: (``POST /v1/devices`` answers ``attributes.x: Input should be a valid string``)
NOT_TEXT = "Input should be a valid string"


def readable_row(raw: Any) -> Mapping[str, Any]:
    """The row as a mapping; ``InvalidInput`` saying why when the reader could not read it."""
    # a dict first: ``isinstance`` of an ABC is slow, and a bulk import asks 10,000s
    if (type(raw) is not dict and not isinstance(raw, Mapping)) or INVALID in raw:
        raise InvalidInput("row is not a JSON object")
    if UNREADABLE in raw:  # a line that is not JSON: the reader said why
        raise InvalidInput(str(raw[UNREADABLE])[:300])
    if EXTRA_COLUMNS in raw:
        raise InvalidInput("row has more columns than the header")
    return raw


def text_of(value: Any, where: str) -> str:
    """``value`` if it is a string; ``InvalidInput`` naming ``where`` otherwise.

    Every value of an import row is a string, as a CSV cell is and as the one-at-a-time
    API requires: a JSON row's number, list, object or null fails the row, and never
    becomes its Python text (``[[1]]`` stored as ``"[[1]]"``, ``{"q": null}`` as
    ``"{'q': None}"``, ``2**63`` as a serial).
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{where[:80]}: {NOT_TEXT}")
    return value


def row_text(row: Mapping[str, Any], key: str) -> str | None:
    """The row's optional ``key`` as stripped text; None when absent, null or empty."""
    value = row.get(key)
    if value is None or value == "":
        return None
    return text_of(value, key).strip() or None


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
            data[EXTRA_COLUMNS] = extra
        rows.append((reader.line_num, data))
    return rows


def parse_json(text: str) -> list[Row]:
    """A list of objects, or an object with a ``devices`` list."""
    doc = load_json(text, what="the file", max_bytes=MAX_IMPORT_FILE_BYTES)
    items = doc.get("devices") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InvalidInput("JSON import needs a list of devices or {\"devices\": [...]}")
    return [(i + 1, item if isinstance(item, dict) else {INVALID: item})
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
        rows.append((number, item if isinstance(item, dict) else {INVALID: item}))
    return rows
