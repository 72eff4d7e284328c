"""An outside judge's tests of the SIGTERM drain of a real ``iotiam serve``, from
docs/deployment.md alone: in-flight requests finish, new ones are refused, a client
that never finishes its body cannot hold the process past the drain, exit 0, no traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import BACKENDS

from .conftest import serve_live
from .live_server import Server

#: docs/deployment.md: in-flight requests get at most IOTIAM_DRAIN_SECONDS (10 s by
#: default; shorter here so that a test that waits out the drain takes seconds)
DRAIN_SECONDS = 5.0


@pytest.fixture(scope="module", params=BACKENDS)
def stopping_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Server]:
    """One server per backend, stopped by every test and started again for the next."""
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"drain-{request.param}"),
                          {"IOTIAM_DRAIN_SECONDS": str(int(DRAIN_SECONDS))})


@pytest.fixture
def fresh_server(stopping_server: Server) -> Server:
    """The module's server, running."""
    if stopping_server.process is None:
        stopping_server.start()
    return stopping_server


def _terminate(server: Server) -> subprocess.Popen[bytes]:
    """SIGTERM the server's process group; the fixture no longer owns the process."""
    process = server.process
    assert process is not None
    server.process = None
    os.killpg(process.pid, signal.SIGTERM)
    return process


def _slow_lines(count: int, pause: float, sent: threading.Event) -> Iterator[bytes]:
    for i in range(count):
        yield (f'{{"ip": "10.7.{i // 250}.{i % 250 + 1}", '
               f'"mac": "02:00:00:00:{i // 256:02x}:{i % 256:02x}"}}\n').encode()
        sent.set()
        time.sleep(pause)


def test_drain_ok_upload_in_flight_finishes_new_requests_refused_exit_0(
        fresh_server: Server) -> None:
    server = fresh_server
    sent = threading.Event()
    outcome: dict[str, object] = {}

    def upload() -> None:
        with server.api(timeout=30) as api:
            try:
                answer = api.post("/v1/discovery/imports", params={"source": "jsonl"},
                                  content=_slow_lines(8, 0.25, sent),
                                  headers={"Content-Type": "application/x-ndjson"})
                outcome["status"] = answer.status_code
                outcome["body"] = answer.json() if answer.status_code == 200 else answer.text
            except httpx.HTTPError as error:
                outcome["error"] = repr(error)

    worker = threading.Thread(target=upload)
    worker.start()
    assert sent.wait(10)
    time.sleep(0.3)
    process = _terminate(server)
    time.sleep(0.5)
    # a new request while draining: refused (no connection) or a 503, never served
    try:
        ready = httpx.get(f"{server.http_url}/readyz", timeout=3)
        assert ready.status_code == 503, ready.text
        assert "draining" in ready.json()["detail"]
    except httpx.TransportError:
        pass
    try:
        with server.api(timeout=3) as api:
            late = api.get("/v1/whoami")
        assert late.status_code == 503, late.text
    except httpx.TransportError:
        pass
    worker.join(30)
    assert outcome.get("status") == 200, (outcome, server.log_tail())
    body = outcome["body"]
    assert isinstance(body, dict) and body["read"] == 8, body
    code = process.wait(timeout=30)
    log = server.log_tail(20000)
    assert code == 0, log
    assert "Traceback" not in log, log


def test_drain_fail_client_that_never_finishes_its_body_cannot_hold_the_stop(
        fresh_server: Server) -> None:
    server = fresh_server
    context = server.tls_context()
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        tls.sendall((f"POST /v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {server.token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                     '{"id": "slow').encode())
        time.sleep(0.5)
        started = time.monotonic()
        process = _terminate(server)
        try:
            code = process.wait(timeout=DRAIN_SECONDS + 8)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            raise AssertionError("a half-sent body held `serve` past its drain") from None
        took = time.monotonic() - started
    finally:
        with contextlib.suppress(OSError, ssl.SSLError):
            tls.close()
    log = server.log_tail(20000)
    assert code == 0, log
    assert took < DRAIN_SECONDS + 3, took  # the drain's end, not a hang
    assert "Traceback" not in log, log


def test_drain_fail_idle_keep_alive_connection_does_not_delay_the_stop(
        fresh_server: Server) -> None:
    server = fresh_server
    with server.api(timeout=5) as api:
        assert api.get("/v1/whoami").status_code == 200  # the connection stays open, idle
        started = time.monotonic()
        process = _terminate(server)
        code = process.wait(timeout=DRAIN_SECONDS + 8)
        took = time.monotonic() - started
    log = server.log_tail(20000)
    assert code == 0, log
    assert took < DRAIN_SECONDS / 2, (took, log)
    assert "Traceback" not in log, log
