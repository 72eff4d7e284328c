"""``iotiam device import`` sends each request as one server-side batch: at most the
API's row limit, and short enough for the server's body limit."""

from __future__ import annotations

import json
from typing import Any

from iotiam.cli.devices import IMPORT_BYTES, IMPORT_CHUNK, import_requests
from iotiam.inventory.service import MAX_IMPORT_ROWS


def rows_of(count: int, attribute_bytes: int = 0) -> list[tuple[int, dict[str, Any]]]:
    return [(n, {"id": f"d-{n}", "type": "sensor", "attributes": {"blob": "x" * attribute_bytes}})
            for n in range(1, count + 1)]


def test_import_requests_ok_row_limit() -> None:
    rows = rows_of(2 * MAX_IMPORT_ROWS + 7)
    requests = list(import_requests(rows))
    assert IMPORT_CHUNK == MAX_IMPORT_ROWS
    assert [len(r) for r in requests] == [MAX_IMPORT_ROWS, MAX_IMPORT_ROWS, 7]
    sent = [(item["row"], item["data"]) for request in requests for item in request]
    assert sent == rows


def test_import_requests_ok_long_rows_make_shorter_requests() -> None:
    rows = rows_of(40, attribute_bytes=50_000)
    requests = list(import_requests(rows))
    assert len(requests) > 1
    for request in requests:
        assert len(json.dumps({"rows": request})) <= IMPORT_BYTES + 100
    assert [item["row"] for request in requests for item in request] == list(range(1, 41))


def test_import_requests_ok_row_longer_than_a_request_goes_alone() -> None:
    rows = rows_of(1) + rows_of(1, attribute_bytes=IMPORT_BYTES) + rows_of(1)
    assert [len(r) for r in import_requests(rows)] == [1, 1, 1]
