"""Manufacturing manifest rows: which IDevID serials a manufacturer shipped, and keys.

A row names the serial (``serial``, ``serial_number`` or ``hardware_id``) and
optionally the IDevID's public key (``public_key``: PEM or base64 DER
SubjectPublicKeyInfo) or its SHA-256 (``public_key_sha256``, hex), and optionally the
production ``batch`` (kept: a set revocation selects by it, docs/revocation.md). Other
columns (MAC address, ...) are ignored, except ones that look like a key: a typo there
must not silently drop the key binding.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from iotiam.enrollment.idevid import check_device_id, spki_sha256
from iotiam.errors import InvalidInput
from iotiam.inventory.bulk_import import readable_row, row_text

SERIAL_COLUMNS = ("serial", "serial_number", "hardware_id")
KEY_COLUMNS = ("public_key", "public_key_sha256")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: what a set revocation's filter can name (``response/device_filter.py``, quoted)
_BATCH = re.compile(r"[A-Za-z0-9._:@/+\- ]{1,128}")
MAX_KEY_CHARS = 8192


@dataclass(frozen=True)
class ManifestRow:
    """A parsed manifest row."""

    serial: str
    public_key_sha256: str | None
    batch: str | None = None


def serial_of(raw: Any) -> str | None:
    """The serial a raw row names, for the per-row report (even when the row is bad)."""
    if not isinstance(raw, dict):
        return None
    for column in SERIAL_COLUMNS:
        value = raw.get(column)
        if isinstance(value, str) and value.strip():
            return value.strip()[:128]
    return None


def parse_row(raw: Any) -> ManifestRow:
    """Validate one row (a CSV record or a JSON object)."""
    row = readable_row(raw)
    for column in row:
        if _looks_like_a_key(str(column)) and column not in KEY_COLUMNS:
            raise InvalidInput(f"unknown column {str(column)[:64]!r}; a key goes in "
                               "'public_key' (PEM) or 'public_key_sha256' (hex)")
    # other columns are ignored, so only these must be text (bulk_import.text_of)
    named = {c: text for c in SERIAL_COLUMNS if (text := row_text(row, c))}
    if not named:
        raise InvalidInput("missing 'serial' (or 'serial_number' / 'hardware_id')")
    values = set(named.values())
    if len(values) > 1:
        raise InvalidInput(f"the row names several serials: {', '.join(sorted(values))[:200]}")
    serial = check_device_id(values.pop(), "serial")
    from_key = _key_hash(row_text(row, "public_key"))
    given = _given_hash(row_text(row, "public_key_sha256"))
    if from_key and given and from_key != given:
        raise InvalidInput("'public_key' and 'public_key_sha256' disagree")
    batch = row_text(row, "batch")
    if batch is not None and not _BATCH.fullmatch(batch):
        raise InvalidInput("'batch' must be 1-128 letters, digits, spaces or ._:@/+-")
    return ManifestRow(serial=serial, public_key_sha256=from_key or given, batch=batch)


def _looks_like_a_key(column: str) -> bool:
    name = column.lower()
    return "spki" in name or ("key" in name and ("pub" in name or name.startswith("key")))


def _key_hash(text: str | None) -> str | None:
    if text is None:
        return None
    if len(text) > MAX_KEY_CHARS:
        raise InvalidInput("'public_key' is too long")
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(
                base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as e:
        raise InvalidInput("'public_key' is not a PEM or base64 DER public key") from e
    return spki_sha256(key)


def _given_hash(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.lower().replace(":", "")
    if not _HEX64.fullmatch(text):
        raise InvalidInput("'public_key_sha256' must be 64 hex digits")
    return text
