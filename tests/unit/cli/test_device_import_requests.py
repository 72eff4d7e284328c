"""``iotiam device import`` sends each request as one server-side batch: at most the
API's row limit, and short enough for the server's body limit."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from iotiam.cli.devices import IMPORT_BYTES, IMPORT_CHUNK, import_in_flight, import_requests
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


class RecordingServer:
    """Answers each chunk once released, and remembers which chunks were open at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: set[str] = set()
        self.together: list[frozenset[str]] = []

    def post(self, chunk: list[dict[str, Any]]) -> dict[str, Any]:
        name = chunk[0]["data"]["id"]
        with self.lock:
            self.open.add(name)
            self.together.append(frozenset(self.open))
        threading.Event().wait(0.2)  # long enough for a second request to start
        with self.lock:
            self.open.discard(name)
        if name == "bad":
            raise RuntimeError("refused")
        return {"first": name}


def chunk_of(*ids: Any) -> list[dict[str, Any]]:
    return [{"row": n, "data": {"id": i, "type": "sensor"} if i is not None else "row"}
            for n, i in enumerate(ids, 1)]


def test_import_in_flight_ok_two_at_once_answers_in_order() -> None:
    server = RecordingServer()
    chunks = [chunk_of(f"c{n}", f"c{n}-b") for n in range(5)]
    answers = [answer["first"] for _, answer in import_in_flight(server.post, chunks)]
    assert answers == ["c0", "c1", "c2", "c3", "c4"]
    assert max(len(open_) for open_ in server.together) == 2


def test_import_in_flight_ok_a_repeated_id_waits_for_its_first_chunk() -> None:
    """The second chunk names "c0-b" (stripped as the server reads it): it is sent only
    once the first chunk was answered; the third, naming no earlier id, overlaps."""
    server = RecordingServer()
    chunks = [chunk_of("c0", "c0-b"), chunk_of("c1", " c0-b ", None, 7), chunk_of("c2")]
    answers = [answer["first"] for _, answer in import_in_flight(server.post, chunks)]
    assert answers == ["c0", "c1", "c2"]
    assert frozenset({"c0", "c1"}) not in server.together
    assert frozenset({"c1", "c2"}) in server.together


def test_import_in_flight_fail_a_refused_request_raises_after_the_earlier_answers() -> None:
    server = RecordingServer()
    answered: list[str] = []
    with pytest.raises(RuntimeError, match="refused"):
        for _, answer in import_in_flight(server.post, [chunk_of("c0"), chunk_of("bad"),
                                                        chunk_of("c2")]):
            answered.append(answer["first"])
    assert answered == ["c0"]

