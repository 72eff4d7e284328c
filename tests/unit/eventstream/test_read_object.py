"""A snapshot read that never ends (nats-py's ``get`` of an object rewritten under it) is
read again, and a read that never succeeds is a clear error, not a worker stuck for ever."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from iotiam.errors import StreamUnavailable
from iotiam.eventstream import connection
from iotiam.eventstream.connection import read_object


class Store:
    """An object store whose first ``stuck`` reads wait for ever."""

    def __init__(self, stuck: int) -> None:
        self.stuck, self.reads = stuck, 0

    async def get(self, name: str) -> Any:
        self.reads += 1
        if self.reads <= self.stuck:
            await asyncio.Event().wait()
        return f"object {name}"


def test_ok_a_read_that_hangs_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "OBJECT_READ_SECONDS", 0.05)
    store = Store(stuck=2)
    assert asyncio.run(read_object(store, "p3")) == "object p3"  # type: ignore[arg-type]
    assert store.reads == 3


def test_fail_a_read_that_always_hangs_is_stream_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "OBJECT_READ_SECONDS", 0.02)
    store = Store(stuck=1000)
    with pytest.raises(StreamUnavailable, match="p3 could not be read"):
        asyncio.run(read_object(store, "p3"))  # type: ignore[arg-type]
    assert store.reads == connection.OBJECT_READ_TRIES
