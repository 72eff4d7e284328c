"""A lean keep-alive HTTP/1.1 load generator (asyncio streams, optional TLS).

Why not only httpx: on a 2-core machine the load generator shares the CPU with the
server. httpx spends ~2 ms of client CPU per request here, so it cannot drive more
than a few hundred requests/s and what it measures is mostly itself. This client
sends pre-encoded requests and reads ``Content-Length`` bodies (~0.1 ms a request),
which leaves the server nearly a whole core: the number is the server's. The httpx
number is still reported, as what a Python client sees.

``OneShotClient`` is the other shape of traffic: a device in the field opens a new TCP
and TLS connection, sends one request and hangs up, so every request pays a full
handshake (no session resumption: each device is a stranger to the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"content-length:"
_CHUNKED = b"transfer-encoding: chunked"


@dataclass(frozen=True)
class Answer:
    """Status and body of one response."""

    status: int
    body: bytes


def encode_request(
    method: str, url: str, body: bytes, headers: Mapping[str, str] | None = None,
    *, close: bool = False,
) -> bytes:
    """One complete HTTP/1.1 request, ready to write: keep-alive, or ``Connection: close``."""
    parts = urlsplit(url)
    lines = [f"{method} {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}",
             f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def exchange(self, request: bytes) -> Answer:
        self._writer.write(request)
        head = await self._reader.readuntil(_HEADER_END)
        status = int(head[9:12])
        lowered = head.lower()
        start = lowered.find(_CONTENT_LENGTH)
        if start < 0:
            if _CHUNKED in lowered:
                return Answer(status, await self._read_chunked())
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        start += len(_CONTENT_LENGTH)
        length = int(head[start:head.index(b"\r\n", start)])
        return Answer(status, await self._reader.readexactly(length))

    async def _read_chunked(self) -> bytes:
        # RFC 9112 §7.1: Go's net/http streams answers over 2 KiB this way (step-ca's)
        body = b""
        while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await self._reader.readexactly(size + 2))[:-2]
        while await self._reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields
            pass
        return body

    def close(self) -> None:
        self._writer.close()


class KeepAlivePool:
    """``size`` persistent connections to one origin; each request borrows one."""

    def __init__(self, base_url: str, size: int, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = tls if parts.scheme == "https" else None
        self._size = size
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._all: list[_Connection] = []

    async def __aenter__(self) -> KeepAlivePool:
        for _ in range(self._size):
            reader, writer = await asyncio.open_connection(self._host, self._port,
                                                           ssl=self._tls)
            connection = _Connection(reader, writer)
            self._all.append(connection)
            self._idle.put_nowait(connection)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in self._all:
            connection.close()

    async def send(self, request: bytes) -> Answer:
        """Write one pre-encoded request, wait for its answer."""
        connection = await self._idle.get()
        try:
            return await connection.exchange(request)
        finally:
            self._idle.put_nowait(connection)

    async def send_all(self, requests: Sequence[bytes]) -> list[Answer]:
        """Send each request once, as many at a time as there are connections."""
        return list(await asyncio.gather(*(self.send(r) for r in requests)))


#: How long a finished one-shot connection may take to shut TLS down before it is dropped
_CLOSE_SECONDS = 5.0


class OneShotClient:
    """A new TCP + TLS connection per request, closed once its answer is read.

    Build the requests with ``encode_request(..., close=True)``. Nothing is kept between
    requests, and asyncio never resumes TLS sessions on its own, so each request costs
    the server a full handshake, as a fleet of devices enrolling for the first time does.
    """

    def __init__(self, base_url: str, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = tls if parts.scheme == "https" else None

    async def send(self, request: bytes) -> Answer:
        """Connect (and handshake), write one request, read its answer, hang up."""
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._tls)
        try:
            return await _Connection(reader, writer).exchange(request)
        finally:
            writer.close()
            # the server closes too (Connection: close); a slow TLS goodbye is not ours
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), _CLOSE_SECONDS)


class ResumingClient:
    """A new TCP connection per request, resuming the TLS session its last one left.

    What a device that comes back (a renewal, an agent's next check) costs when it kept
    the session ticket the server sent: an abbreviated TLS 1.3 handshake (RFC 8446
    §2.2), no certificate signature. asyncio cannot hand a session to a new connection,
    so this client is blocking: one per thread, each thread one device.
    """

    def __init__(self, base_url: str, tls: ssl.SSLContext) -> None:
        parts = urlsplit(base_url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 443)
        self._host = parts.hostname or "127.0.0.1"
        self._tls = tls
        self._session: ssl.SSLSession | None = None
        #: requests whose handshake resumed the previous session
        self.resumed = 0

    def send(self, request: bytes) -> Answer:
        """Connect (resuming if it can), write one request, read its answer, hang up."""
        with socket.create_connection(self._address) as raw, \
                self._tls.wrap_socket(raw, server_hostname=self._host,
                                      session=self._session) as conn:
            conn.sendall(request)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            # TLS 1.3 tickets arrive after the handshake: the session is read at the end
            self.resumed += bool(conn.session_reused)
            self._session = conn.session
        head, _, body = data.partition(_HEADER_END)
        return Answer(int(head[9:12]), body)
