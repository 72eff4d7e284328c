"""``OneSendTransport``: a response's writes leave as one, in order, and nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from iotiam.api.one_send import FLUSH_AT, OneSendHttpToolsProtocol, OneSendTransport
from iotiam.testing import free_port


class Recorder(asyncio.Transport):
    """A transport that keeps what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


def _turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_ok_writes_of_one_turn_leave_as_one_in_order(loop: asyncio.AbstractEventLoop) -> None:
    inner = Recorder()
    transport = OneSendTransport(inner, loop)
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.writelines([b"hello", memoryview(b" world")])
    assert inner.writes == [] and transport.get_write_buffer_size() == 30
    _turn(loop)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nhello world"]
    transport.write(b"next")
    _turn(loop)
    assert inner.writes[1:] == [b"next"]


def test_ok_a_long_stream_is_not_held(loop: asyncio.AbstractEventLoop) -> None:
    inner = Recorder()
    transport = OneSendTransport(inner, loop)
    chunk = b"x" * (FLUSH_AT // 4)
    for _ in range(9):
        transport.write(chunk)
    # sent as it passes the limit, within the turn; only the rest waits for its end
    assert [len(w) for w in inner.writes] == [FLUSH_AT, FLUSH_AT]
    assert transport.get_write_buffer_size() == len(chunk)
    _turn(loop)
    assert b"".join(inner.writes) == chunk * 9


def test_ok_close_sends_what_is_held_first(loop: asyncio.AbstractEventLoop) -> None:
    inner = Recorder()
    transport = OneSendTransport(inner, loop)
    transport.write(b"last answer")
    transport.close()
    assert inner.writes == [b"last answer"] and inner.closed
    _turn(loop)  # the scheduled send finds nothing left
    assert inner.writes == [b"last answer"]


def test_ok_abort_drops_and_a_closing_peer_gets_nothing(loop: asyncio.AbstractEventLoop) -> None:
    inner = Recorder()
    transport = OneSendTransport(inner, loop)
    transport.write(b"never sent")
    transport.abort()
    _turn(loop)
    assert inner.writes == [] and inner.aborted
    gone = Recorder()
    gone.closed = True
    late = OneSendTransport(gone, loop)
    late.write(b"to a closed connection")
    _turn(loop)
    assert gone.writes == []


def test_ok_real_uvicorn_answers_keep_alive_and_close() -> None:
    # over TLS it is the API server's protocol, which every integration test goes through
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("x" * 70_000)  # more than one TLS record

    app = Starlette(routes=[Route("/", hello)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           http=OneSendHttpToolsProtocol))

    async def run() -> list[httpx.Response]:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                answers = [await http.get("/") for _ in range(3)]
                answers.append(await http.get("/", headers={"Connection": "close"}))
            return answers
        finally:
            server.should_exit = True
            await task

    answers = asyncio.run(run())
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.text == "x" * 70_000 for a in answers)
