"""Start and stop the data plane inside ``iotiam serve`` (one process of the workers)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from iotiam.broker.broker_watch import BrokerWatch
from iotiam.broker.decision_socket import DecisionSocket
from iotiam.broker.dynsec import DynsecAdmin
from iotiam.broker.event_source import BrokerEventSource, Deliver
from iotiam.broker.fleet import LiveFleet
from iotiam.broker.gateway_reports import GatewayReportConsumer, ReportTaker
from iotiam.broker.installed_files import BrokerFileInstaller
from iotiam.broker.layout import ADMIN_USERNAME, BrokerConfig, BrokerFiles, mosquitto_binary
from iotiam.broker.plugin_plane import PdpAnswers, PluginAuthorization
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.provision import admin_password, provision_broker, renew_broker_certificate
from iotiam.broker.sync import BrokerSync
from iotiam.config import Settings
from iotiam.errors import SetupError

log = logging.getLogger("iotiam.broker")


def broker_config(settings: Settings) -> BrokerConfig:
    """The broker's listeners as ``init`` recorded them."""
    return BrokerConfig(host=settings.host, mtls_port=settings.broker_port,
                        psk_port=settings.broker_psk_port, admin_port=settings.broker_admin_port,
                        event_log=settings.broker_event_log, auth=settings.broker_auth)


def broker_files(settings: Settings) -> BrokerFiles:
    """``<data-dir>/broker``."""
    return BrokerFiles(settings.data_dir / "broker")


@dataclass
class DataPlane:
    """The running sync loop (or, with the plugin, the upkeep loop) and, when managed,
    the broker process."""

    sync: BrokerSync | PluginAuthorization
    broker: ManagedMosquitto | None
    thread: threading.Thread
    stop_event: threading.Event
    #: the managed broker's log followed into detection events (when asked for)
    events: BrokerEventSource | None = None
    #: $SYS statistics; on an external broker also every message's metadata
    watch: BrokerWatch | None = None
    #: gateways' reports over MQTT, read and answered (docs/gateways.md)
    reports: GatewayReportConsumer | None = None

    def stop(self) -> None:
        """Stop syncing, then the broker, then read the broker's last log lines."""
        self.stop_event.set()
        self.sync.wake.set()
        self.thread.join(timeout=5)
        self.sync.close()
        if self.reports is not None:
            self.reports.stop()
        if self.watch is not None:
            self.watch.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.events is not None:
            self.events.stop()


def start_data_plane(fleet: LiveFleet, settings: Settings,
                     deliver: Deliver | None = None, answers: PdpAnswers | None = None,
                     certified: Callable[[], None] | None = None,
                     reports: ReportTaker | None = None) -> DataPlane | None:
    """Provision and start the managed broker (or attach to an external one) and sync it.

    With ``deliver`` (e.g. the detection service's ingest), the managed broker's log is
    followed and its events are handed to it in batches; an external broker's log is
    not iotiam's to read, so there a subscription to every message gives their metadata
    instead (``BrokerWatch``). Either way ``$SYS`` is watched for broker statistics.
    ``certified``: told of each new certificate of the managed broker. ``reports``:
    takes the gateways' reports published on the broker (``GatewayReportConsumer``).
    """
    if settings.broker_mode == "off":
        return None
    config = broker_config(settings)
    files = broker_files(settings)
    link = _admin_link(fleet, settings, config, files)
    if link is None:
        return None
    broker, host, password = link
    stop = threading.Event()

    def connect() -> DynsecAdmin:
        return DynsecAdmin(host, config.admin_port, ADMIN_USERNAME, password, cancel=stop)

    own_certificate = None if broker is None else broker_certificate(fleet, settings, files,
                                                                       certified)
    sync = _sync(fleet, files, config, broker, connect, answers, own_certificate)
    events: BrokerEventSource | None = None
    if broker is not None and deliver is not None:
        # started before the broker: its first connections are in the part of the log
        # that follows the current end
        events = BrokerEventSource(files.log, deliver, rotate=broker.reload)
        events.start()
    if broker is not None:
        try:
            log.info("broker cold start: %s", sync.cold_start())
        except BaseException:
            if events is not None:
                events.stop()
            sync.close()
            raise
    # on the managed broker the log already has every publish: `#` would double them
    watch = BrokerWatch(host, config.admin_port, ADMIN_USERNAME, password,
                        deliver=deliver if broker is None else None)
    watch.start()
    consumer = None
    if reports is not None:
        consumer = GatewayReportConsumer(host, config.admin_port, ADMIN_USERNAME, password,
                                         reports, max_bytes=settings.max_body_bytes)
        consumer.start()
    thread = threading.Thread(target=sync.run, args=(stop,), daemon=True, name="broker-sync")
    thread.start()
    if broker is not None:
        log.info("managed Mosquitto: mTLS :%d, TLS-PSK :%d", config.mtls_port, config.psk_port)
    return DataPlane(sync, broker, thread, stop, events, watch, consumer)


def _sync(fleet: LiveFleet, files: BrokerFiles, config: BrokerConfig,
          broker: ManagedMosquitto | None, connect: Callable[[], DynsecAdmin],
          answers: PdpAnswers | None, own_certificate: Callable[[], bool] | None
          ) -> BrokerSync | PluginAuthorization:
    """The dynsec sync, or with the plugin its upkeep loop (a managed broker only)."""
    if broker is not None and config.auth == "plugin":
        if answers is None:
            raise SetupError("the broker plugin needs the decision point")
        socket = DecisionSocket(files.plugin_socket, answers.answer)
        socket.start()
        return PluginAuthorization(files, BrokerFileInstaller(fleet, fleet.clock, files, broker,
                                                              own_certificate=own_certificate),
                                   broker, socket, answers.may_connect_many,
                                   updates=fleet.updates_since, reread=answers.reread,
                                   clock=fleet.clock, gateways_for=fleet.gateways_for)
    return BrokerSync(fleet, fleet.clock, files, connect, broker,
                      own_certificate=own_certificate)


def broker_certificate(fleet: LiveFleet, settings: Settings, files: BrokerFiles,
                       certified: Callable[[], None] | None) -> Callable[[], bool]:
    """Renews the managed broker's certificate when the active issuing CA did not sign it
    (the file installer calls it before its SIGHUP); True if it did."""
    def renew() -> bool:
        if not renew_broker_certificate(files, issuing=fleet.issuing,
                                        names=list(settings.server_names), now=fleet.now(),
                                        serial=x509.random_serial_number()):
            return False
        if certified is not None:
            certified()
        return True
    return renew


def _admin_link(fleet: LiveFleet, settings: Settings, config: BrokerConfig, files: BrokerFiles
                ) -> tuple[ManagedMosquitto | None, str, str] | None:
    """The managed broker, provisioned but not started, or none for an external one; and
    where and with which password its dynsec admin is reached. ``None``: no broker to
    run (no mosquitto binary)."""
    if settings.broker_mode != "managed":
        if not settings.broker_password:
            raise SetupError("external broker mode needs IOTIAM_BROKER_PASSWORD "
                             f"(the dynsec password of {ADMIN_USERNAME!r})")
        return None, settings.broker_admin_host, settings.broker_password
    binary = mosquitto_binary()
    if binary is None:
        log.warning("no mosquitto binary on PATH: the managed broker is off "
                    "(apt-get install mosquitto, or `iotiam init --broker off`)")
        return None
    provision_broker(files, config, issuing=fleet.issuing, root=fleet.root,
                     names=list(settings.server_names), now=fleet.now(),
                     serial=x509.random_serial_number())
    return ManagedMosquitto(binary, config, files), "127.0.0.1", admin_password(files)
