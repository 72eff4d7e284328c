"""``iotiam serve``: the HTTPS API and the plain-HTTP endpoints in one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import LOGGING_CONFIG

from iotiam.api.app import create_api_app, create_public_app
from iotiam.api.one_send import OneSendHttpToolsProtocol
from iotiam.api.tls import TlsAwareHttpToolsProtocol
from iotiam.api.workers import fork_workers, stop_workers
from iotiam.bootstrap import Services
from iotiam.config import ca_passphrase
from iotiam.errors import SetupError
from iotiam.readiness import Draining
from iotiam.response.alerts import AlertDispatcher
from iotiam.response.models import Action, Playbook
from iotiam.server_certificate import ServerCertificate
from iotiam.serving import (
    background_jobs,
    manufacturer_trust,
    readiness_checks,
    server_certificate,
)

log = logging.getLogger("iotiam.server")

#: what is left of the drain (``Settings.drain_seconds``, IOTIAM_DRAIN_SECONDS) when the
#: connections still open are cut: their requests see the client gone and end, before
#: uvicorn would cancel them at the drain's end
CUT_BEFORE_END_SECONDS = 1.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to ``serve`` and ends its drain by
    cutting the connections still open."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Signals are handled once for both listeners."""
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown, but a request still open near the drain's end
        (a client that stopped sending its body) is told its client is gone rather than
        cancelled, which logs a traceback of a ``CancelledError`` and skips its clean-up."""
        drain = self.config.timeout_graceful_shutdown or 0
        cut = asyncio.get_running_loop().call_later(
            max(drain - CUT_BEFORE_END_SECONDS, drain / 2), self._cut_connections)
        try:
            await super().shutdown(sockets)
        finally:
            cut.cancel()

    def _cut_connections(self) -> None:
        for connection in list(self.server_state.connections):
            connection.transport.abort()  # connection_lost: the request reads a disconnect


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Bind a listener's sockets up front, as asyncio would for ``host``.

    Left to uvicorn, a taken port ends ``iotiam serve`` with tracebacks and exit code 3;
    bound here it is a one-line ``SetupError``.
    """
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as e:
        for sock in sockets:
            sock.close()
        raise SetupError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    return sockets


def warn_if_alerts_go_nowhere(playbook: Playbook, alerts: AlertDispatcher) -> None:
    """Say at start when the playbook alerts but no channel would carry an alert."""
    if alerts.enabled or not any(Action.ALERT in rule.actions for rule in playbook.rules):
        return
    log.warning("the detection playbook alerts but no alert channel is configured "
                "(set IOTIAM_ALERT_WEBHOOK_URL or IOTIAM_ALERT_SYSLOG): findings are "
                "stored, and alerts are only counted as undelivered in "
                "GET /v1/detection/stats")


#: young collections between two full ones (CPython's default is 10; see below)
FULL_COLLECTION_EVERY = 100
#: container objects allocated (less those freed) between two young collections
#: (CPython's default is 700; see below)
YOUNG_COLLECTION_AFTER = 10_000


def freeze_start_up() -> None:
    """Leave what start-up built out of the collector's walks, and space full collections.

    What start-up built lives as long as the process: frozen, the collector need not walk
    it again, and forked workers keep sharing its pages. CPython holds a full collection
    back until the objects promoted since the last one reach a quarter of those it kept;
    once start-up is frozen, that is a quarter of a few thousand, so a batch's objects
    (a 5,000-row import, its scores and register entries, all alive until the batch
    ends) set one off every ten young collections, and each walked the whole batch
    again: 14-32 µs of an API import's 100-190 µs of server CPU a device (issue 19,
    ``benchmarks/README.md``). Young collections come after ``YOUNG_COLLECTION_AFTER``
    allocations, not 700: a batch's short-lived objects (a request's rows, a statement's
    parameters) are mostly freed before one, not walked by it (an import's own CPU fell
    by 1.5-3 µs a device of 28-31, measured in process). Cyclic garbage waits longer;
    reference counting frees everything else at once, as before.
    """
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, middle, FULL_COLLECTION_EVERY)


def serve(services: Services, *, log_level: str = "info", workers: int = 1) -> None:
    """Run both listeners until SIGINT/SIGTERM, in ``workers`` processes."""
    settings = services.settings
    if not 1 <= workers <= 64:
        raise SetupError(f"workers must be 1-64, not {workers}")
    api_sockets = listen_sockets(settings.host, settings.port)
    try:
        public_sockets = listen_sockets(settings.host, settings.http_port)
    except SetupError:
        for sock in api_sockets:
            sock.close()
        raise
    freeze_start_up()
    warn_if_alerts_go_nowhere(services.response.playbook(), services.alerts)
    # a CA rotated or revoked while serve was down: the certificate moves before listening
    serving = server_certificate(services, first_process=True, follow=False).follow()
    index, children = fork_workers(workers - 1)
    if index:
        services.database.after_fork()
    # the host's broker and baselines: the first process; singletons: their leader
    jobs = background_jobs(services, first_process=index == 0)
    own = server_certificate(services, first_process=index == 0, serving=serving)
    draining = Draining()
    readiness_checks(services, jobs, draining)
    jobs.start()

    def drain() -> None:
        # SIGTERM: /readyz fails at once, and the singleton jobs stop and release their
        # locks while the requests in flight finish, so another replica takes them now
        draining.begin()
        threading.Thread(target=jobs.resign, name="resign", daemon=True).start()

    try:
        _serve_here(services, api_sockets, public_sockets, log_level, drain, own)
    finally:
        jobs.stop()  # the last checkpoint signs what the last requests appended
        stop_workers(children)
        jobs.stop_data_plane()


def _uvicorn_config(services: Services, app: ASGIApp, port: int, log_level: str,
                    **options: Any) -> uvicorn.Config:
    # JSON logs: uvicorn's loggers left unconfigured reach the root logger's JSON lines
    log_config = None if services.settings.log_format == "json" else LOGGING_CONFIG
    return uvicorn.Config(
        app, host=services.settings.host, port=port, log_level=log_level, access_log=False,
        log_config=log_config,
        server_header=False, timeout_graceful_shutdown=services.settings.drain_seconds,
        # iotiam reads X-Forwarded-For itself, from IOTIAM_TRUSTED_PROXIES only; uvicorn's
        # middleware would trust it from 127.0.0.1 and rewrite the peer address first
        proxy_headers=False, **options)


def _serve_here(services: Services, api_sockets: list[socket.socket],
                public_sockets: list[socket.socket], log_level: str,
                drain: Callable[[], None], own: ServerCertificate) -> None:
    tls = services.settings.tls_dir
    # devices present manufacturer IDevIDs on EST: their CAs must pass the TLS handshake
    trust = manufacturer_trust(services)
    own.serve_with(trust.load_certificate)  # a re-issued server certificate goes live
    api = _Server(_uvicorn_config(
        services, create_api_app(services), services.settings.port, log_level,
        ssl_certfile=str(tls / "server.pem"), ssl_keyfile=str(tls / "server.key"),
        ssl_keyfile_password=ca_passphrase(services.settings, create=False).decode(),
        ssl_ca_certs=str(tls / "client-ca.pem"),
        # client certificates are optional on the API (device endpoints use them)
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_context_factory=trust.context_factory,
        # puts the verified client certificate into scope["extensions"]["tls"] (EST)
        http=TlsAwareHttpToolsProtocol,
    ))
    public = _Server(_uvicorn_config(services, create_public_app(services),
                                     services.settings.http_port, log_level,
                                     http=OneSendHttpToolsProtocol))

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def shutdown() -> None:
            if not api.should_exit:
                drain()
            api.should_exit = True
            public.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shutdown)
        await asyncio.gather(api.serve(sockets=api_sockets),
                             public.serve(sockets=public_sockets))

    try:
        import uvloop  # shipped with uvicorn[standard]: a faster event loop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
