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
import time
from collections.abc import Generator

import uvicorn

from iotiam.api.app import create_api_app, create_public_app
from iotiam.api.one_send import OneSendHttpToolsProtocol
from iotiam.api.tls import ManufacturerTrust, TlsAwareHttpToolsProtocol
from iotiam.api.workers import fork_workers, stop_workers
from iotiam.audit.anchor import Refused
from iotiam.bootstrap import Services, broker_fleet, save_baselines, trust_scores_refresher
from iotiam.broker.runtime import start_data_plane
from iotiam.config import ca_passphrase
from iotiam.errors import SetupError
from iotiam.response.alerts import AlertDispatcher
from iotiam.response.models import Action, Playbook

log = logging.getLogger("iotiam.server")

CRL_CHECK_SECONDS = 30.0
#: how often the detection baselines are written to the data directory
BASELINE_SAVE_SECONDS = 60.0
TRUST_CHECK_SECONDS = 5.0
#: how often the audit head is read to see whether a checkpoint is due
CHECKPOINT_POLL_SECONDS = 1.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to ``serve``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Signals are handled once for both listeners."""
        yield


def crl_refresher(services: Services, stop: threading.Event) -> None:
    """Rebuild CRLs soon after revocations and well before nextUpdate."""
    pki = services.pki
    while not stop.is_set():
        try:
            pki.refresh_crls()
        except Exception:  # the loop must survive a bad moment (DB restart, ...)
            log.exception("CRL refresh failed; retrying")
        pki.crl_wanted.wait(CRL_CHECK_SECONDS)
        pki.crl_wanted.clear()
        # let a burst of revocations settle into one CRL
        stop.wait(0.2)


def trust_refresher(trust: ManufacturerTrust, stop: threading.Event) -> None:
    """Pick up manufacturer CAs another worker process or replica registered."""
    while not stop.wait(TRUST_CHECK_SECONDS):
        try:
            trust.refresh()
        except Exception:  # a database hiccup must not end the loop
            log.exception("manufacturer trust refresh failed; retrying")


def baseline_saver(services: Services, stop: threading.Event) -> None:
    """Save the detection baselines every ``BASELINE_SAVE_SECONDS`` (and at shutdown)."""
    while not stop.wait(BASELINE_SAVE_SECONDS):
        try:
            save_baselines(services)
        except OSError as e:
            log.warning("saving detection baselines failed: %s", e)


def checkpoint_signer(services: Services, stop: threading.Event) -> None:
    """Sign an audit checkpoint every N records and at least every minute (G7).

    The head is polled (one indexed read) rather than signalled by the appenders: the
    token path appends thousands of records a second and must not wait for a signature
    or a file write.
    """
    settings = services.settings
    writer = services.checkpoints
    last_written = time.monotonic()
    pending = 1  # at start-up: anchor whatever was appended while nothing ran
    refused = False
    while True:
        due = time.monotonic() - last_written >= settings.audit_checkpoint_seconds
        # a chain that shrank is reported at once, then once a minute while it lasts
        if (pending >= settings.audit_checkpoint_records and not refused) or \
                (pending < 0 and not refused) or (pending and due) or stop.is_set():
            try:
                refused = isinstance(writer.write(), Refused)
            except Exception:  # a database or disk hiccup must not end the loop
                log.exception("writing the audit checkpoint failed; retrying")
            last_written = time.monotonic()
        if stop.is_set():
            return
        stop.wait(CHECKPOINT_POLL_SECONDS)
        try:
            pending = writer.pending()
        except Exception:
            log.exception("reading the audit head failed; retrying")
            pending = 0


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
    # what start-up built lives as long as the process: the collector need not walk it
    # again on every full collection, and forked workers keep sharing its pages
    gc.collect()
    gc.freeze()
    warn_if_alerts_go_nowhere(services.response.playbook(), services.alerts)
    index, children = fork_workers(workers - 1)
    if index:
        services.database.after_fork()
    # one writer of the broker's state: the first process drives the data plane
    plane = start_data_plane(broker_fleet(services), settings,
                             deliver=services.ingest.deliver) if index == 0 else None
    # one process keeps trust scores current, as one drives the broker
    scores_stop = threading.Event()
    signer = threading.Thread(target=checkpoint_signer, args=(services, scores_stop),
                              daemon=True, name="audit-checkpoints")
    if index == 0:
        signer.start()
        threading.Thread(target=trust_scores_refresher(services).run, args=(scores_stop,),
                         daemon=True, name="trust-scores").start()
        threading.Thread(target=baseline_saver, args=(services, scores_stop), daemon=True,
                         name="baseline-saver").start()
    try:
        _serve_here(services, api_sockets, public_sockets, log_level)
    finally:
        scores_stop.set()
        if index == 0:
            save_baselines(services)
            signer.join(timeout=10)  # it signs what the last requests appended
        stop_workers(children)
        if plane is not None:
            plane.stop()


def _serve_here(services: Services, api_sockets: list[socket.socket],
                public_sockets: list[socket.socket], log_level: str) -> None:
    settings = services.settings
    passphrase = ca_passphrase(settings, create=False).decode()
    # devices present manufacturer IDevIDs on EST: their CAs must pass the TLS handshake
    trust = ManufacturerTrust(services.manufacturers.trust_anchors)
    services.manufacturers.add_trust_listener(trust.add)
    api = _Server(uvicorn.Config(
        create_api_app(services),
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_dir / "server.pem"),
        ssl_keyfile=str(settings.tls_dir / "server.key"),
        ssl_keyfile_password=passphrase,
        ssl_ca_certs=str(settings.tls_dir / "client-ca.pem"),
        # client certificates are optional on the API (device endpoints use them)
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_context_factory=trust.context_factory,
        # puts the verified client certificate into scope["extensions"]["tls"] (EST)
        http=TlsAwareHttpToolsProtocol,
        log_level=log_level,
        access_log=False,
        server_header=False,
        # iotiam reads X-Forwarded-For itself, from IOTIAM_TRUSTED_PROXIES only; uvicorn's
        # middleware would trust it from 127.0.0.1 and rewrite the peer address first
        proxy_headers=False,
    ))
    public = _Server(uvicorn.Config(
        create_public_app(services),
        host=settings.host,
        port=settings.http_port,
        http=OneSendHttpToolsProtocol,
        log_level=log_level,
        access_log=False,
        server_header=False,
        # iotiam reads X-Forwarded-For itself, from IOTIAM_TRUSTED_PROXIES only; uvicorn's
        # middleware would trust it from 127.0.0.1 and rewrite the peer address first
        proxy_headers=False,
    ))
    stop = threading.Event()
    refresher = threading.Thread(target=crl_refresher, args=(services, stop), daemon=True,
                                 name="crl-refresher")
    trust_thread = threading.Thread(target=trust_refresher, args=(trust, stop), daemon=True,
                                    name="trust-refresher")

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def shutdown() -> None:
            api.should_exit = True
            public.should_exit = True
            stop.set()
            services.pki.crl_wanted.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shutdown)
        refresher.start()
        trust_thread.start()
        await asyncio.gather(api.serve(sockets=api_sockets),
                             public.serve(sockets=public_sockets))
        shutdown()

    try:
        import uvloop  # shipped with uvicorn[standard]: a faster event loop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    refresher.join(timeout=5)
    trust_thread.join(timeout=5)
