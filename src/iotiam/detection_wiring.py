"""Composition of the detection side (part of the composition root, ``bootstrap``):
incident response and trust scores, attestation, the event pipeline with its engine, the
alert channels, and the site zones the engine reads."""

from __future__ import annotations

from iotiam.attestation.service import Attestation
from iotiam.audit.service import AuditTrail
from iotiam.clock import Clock
from iotiam.config import Settings
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.ingest import EventIngest
from iotiam.detection.ports import EventPublisher, ModeSource, ZoneSource
from iotiam.discovery.ports import SightingSink
from iotiam.errors import InvalidInput, SetupError
from iotiam.eventstream.publisher import NatsEventPublisher
from iotiam.inventory.ports import AllCredentials, DeviceLifecycle
from iotiam.local_keys import alert_webhook_key
from iotiam.pki.service import Pki
from iotiam.response.alerts import AlertChannel, AlertDispatcher, SyslogChannel, WebhookChannel
from iotiam.response.ports import NoFirmwareData
from iotiam.response.scoring import TrustScores
from iotiam.response.service import IncidentResponse
from iotiam.storage.baseline_file import BaselineFile
from iotiam.storage.database import Database, SqlUnitOfWork
from iotiam.storage.response_store import SqlDeviceLookup
from iotiam.storage.site_zones import SqlSiteZones


def detection_and_response(
    settings: Settings, database: Database, clock: Clock, audit: AuditTrail, pki: Pki,
    devices: DeviceLifecycle[SqlUnitOfWork],
    every_credential: AllCredentials[SqlUnitOfWork],
    alerts: AlertDispatcher,
    sightings: SightingSink,
) -> tuple[IncidentResponse[SqlUnitOfWork], TrustScores, Attestation, EventIngest,
           SqlSiteZones]:
    """Incident response, the trust scores it keeps, attestation reporting findings to
    it, and the event pipeline whose engine reads its per-type modes and its devices'
    zones (or which hands its events to the event stream, when one is configured, whose
    workers score them)."""
    trust = TrustScores(database, clock, NoFirmwareData())
    response = IncidentResponse(database, clock, audit, devices, every_credential, alerts,
                                trust)
    attestation = Attestation(database, clock, audit, pki, finding_sink=response)
    trust.use_firmware_source(attestation)
    zones = SqlSiteZones(database.engine).load()
    ingest = EventIngest(detection_engine(settings, response, zones), response,
                         SqlDeviceLookup(database.engine), sightings=sightings,
                         publisher=event_publisher(settings))
    response.on_false_positive(ingest.false_positive)
    return response, trust, attestation, ingest, zones


def event_publisher(settings: Settings) -> EventPublisher | None:
    """Where ingestion publishes events: the configured stream, else nowhere (scored in
    process)."""
    stream = settings.event_stream
    return NatsEventPublisher(stream) if stream is not None else None


def alert_channels(settings: Settings) -> list[AlertChannel]:
    """The configured alert channels (none: findings are stored, not sent)."""
    channels: list[AlertChannel] = []
    if settings.alert_webhook_url:
        channels.append(WebhookChannel(settings.alert_webhook_url, alert_webhook_key(settings)))
    if settings.alert_syslog:
        target, _, transport = settings.alert_syslog.partition("/")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit() or transport not in ("", "udp", "tcp"):
            raise SetupError(f"IOTIAM_ALERT_SYSLOG {settings.alert_syslog!r}: use host:port "
                             "or host:port/tcp")
        channels.append(SyslogChannel(host, int(port), tcp=transport == "tcp"))
    return channels


def detection_engine(settings: Settings, modes: ModeSource,
                     zones: ZoneSource | None = None) -> DetectionEngine:
    """The detection engine: carrying on from its saved baselines when they fit, reading
    each type's mode from ``modes`` (the response settings) and each device's time zone
    from ``zones`` (its site's)."""
    learning = settings.detection_learning_seconds
    saved_file = BaselineFile(settings.baselines_file)
    saved = saved_file.load()
    engine: DetectionEngine | None = None
    if saved is not None:
        try:
            engine = DetectionEngine.restore(saved, modes=modes, zones=zones)
        except InvalidInput as e:
            saved_file.set_aside(e.detail)
        if engine is not None and engine.learning_seconds != learning:
            engine = None  # a changed learning period: the saved baselines do not fit it
    return engine or DetectionEngine(learning_seconds=learning, modes=modes, zones=zones)
