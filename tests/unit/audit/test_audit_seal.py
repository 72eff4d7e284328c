"""Sealing a draft: what is hashed is exactly what is stored, whatever the details hold."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from iotiam.audit.chain import GENESIS_HASH, make_head, seal, verify_chain
from iotiam.audit.models import AuditDraft, AuditTag

AT = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
KEY = b"k" * 32


class Color(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize("details", [
    {},
    {"serial": "5eed", "count": 3, "ok": True, "none": None, "ünï": "cödé"},
    {"nested": {"b": [1, 2], "a": "x"}},
    {"when": AT, "color": Color.RED, "ratio": 1.0},
    {1: "int key"},
], ids=["empty", "flat", "nested", "non-json-types", "int-key"])
def test_seal_ok_details_are_what_json_gives_back(details: dict[Any, Any]) -> None:
    draft = AuditDraft(tag=AuditTag.CERTIFICATE_ISSUED, actor="system", org_path="/root/",
                       subject="device:dev-1", details=details)
    record = seal(draft, seq=1, at=AT, prev_hash=GENESIS_HASH)

    stored = json.loads(json.dumps(record.details))
    assert record.details == stored
    assert [type(v) for v in record.details.values()] == [type(v) for v in stored.values()]
    assert record.details is not draft.details
    assert verify_chain([record], make_head(record, KEY), KEY).ok
