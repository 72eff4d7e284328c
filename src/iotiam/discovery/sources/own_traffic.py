"""iotiam's own traffic as a discovery source: what it refused, held or saw go by.

No I/O, no clock, no store: each function turns one thing iotiam observed into
``Sighting``s, and the module that observed it hands them to a ``SightingSink``
(``discovery.ports``), which queues. The observations and their sources:

* ``broker``: the managed Mosquitto's log, parsed into detection events
  (``iotiam.broker.events``): a TLS handshake or CONNECT refused, and a connection
  whose MQTT username (= certificate CN or PSK identity) the inventory does not know.
  What Mosquitto 2.0.11 logs of a refusal is measured in docs/discovery-own-traffic.md:
  the source address and the TLS error, never the certificate nor the PSK identity.
* ``events``: detection events sent to ``POST /v1/events``: auth failures of
  unknown clients, and flows whose peer is an address of the site's own network (the
  peer is a device there; reconciliation tells whether it is a registered one).
* ``est``: EST first contacts held in the approval queue (RFC 7030 §4.2.3).
* ``api``: OAuth clients refused at the token, introspection or revocation endpoint as
  unknown, or presenting a TLS client certificate iotiam did not issue.

A device that keeps trying yields the same sighting again and again: ``RecentSightings``
lets one through per ``window`` seconds, so a retry loop costs the sink nothing.

How a certificate reads as sighting fields is ``discovery.certificates``, shared with the
log sources; which addresses can be a device's is ``discovery.models.can_be_a_device``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from cryptography import x509

from iotiam.detection.models import Event, EventKind
from iotiam.discovery.certificates import public_key_label, read_certificate
from iotiam.discovery.models import MAX_TEXT, Sighting, can_be_a_device, normalize_ip
from iotiam.enrollment.models import EnrollmentRequest
from iotiam.errors import InvalidInput

BROKER = "broker"
API = "api"
EST = "est"
EVENTS = "events"
#: a sighting identical but for its time is let through once per this many seconds
REPEAT_SECONDS = 60.0
#: the throttle forgets everything past this many distinct sightings (bounded memory)
MAX_REMEMBERED = 100_000
#: the kinds of event that can show an unmanaged identity
_TELLING = frozenset({EventKind.AUTH_FAILURE, EventKind.CONNECT, EventKind.FLOW})


class NoSightings:
    """A ``SightingSink`` that drops everything: the default until discovery is wired."""

    def observe(self, sightings: Sequence[Sighting]) -> None:
        """Drop ``sightings``."""


NO_SIGHTINGS = NoSightings()


def is_site_address(address: str) -> bool:
    """Private (RFC 1918), link-local or unique-local (RFC 4193): an address a device of
    the site itself may hold; loopback, unspecified and multicast are nobody's."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return can_be_a_device(ip) and (ip.is_private or ip.is_link_local)


# -- detection events (the broker's log and the events API) ------------------------------

def sightings_of_events(events: Iterable[Event], *, source: str,
                        unknown_devices: frozenset[str] = frozenset()) -> list[Sighting]:
    """What ``events`` show of identities iotiam does not manage.

    ``unknown_devices``: the device ids among the events that the inventory does not
    know (a certificate or PSK identity nobody registered, connecting anyway).
    """
    found: list[Sighting] = []
    # most events are publishes, on the broker's hot path: one set lookup each (~25 ns
    # a publish, measured here, against ~280 ns for the three kind tests in a row)
    for event in events:
        kind = event.kind
        if kind not in _TELLING:
            continue
        sighting: Sighting | None = None
        if kind is EventKind.AUTH_FAILURE:
            if event.device_id is None:
                sighting = _refused_connection(event, source)
        elif kind is EventKind.CONNECT:
            if event.device_id in unknown_devices:
                sighting = _unknown_identity(event, source)
        elif event.dst_ip and is_site_address(event.dst_ip):
            sighting = _flow_peer(event, source)
        if sighting is not None:
            found.append(sighting)
    return found


def _refused_connection(event: Event, source: str) -> Sighting | None:
    ip = _ip(event.source_ip)
    client_id = _text(event.client_id)
    if ip is None and client_id is None:
        return None  # the log could not say who: nothing to recognise it by
    detail = event.reason or "authentication failed"
    if event.dst_port is not None:
        detail = f"{detail} (port {event.dst_port})"
    return Sighting(source=source, seen_at=event.at, ip=ip, client_id=client_id,
                    detail=_text(f"refused: {detail}"))


def _unknown_identity(event: Event, source: str) -> Sighting:
    return Sighting(source=source, seen_at=event.at, ip=_ip(event.source_ip),
                    client_id=_text(event.client_id), username=_text(event.device_id),
                    detail="connected with an identity the inventory does not know")


def _flow_peer(event: Event, source: str) -> Sighting | None:
    ip = _ip(event.dst_ip)
    if ip is None:
        return None
    ports = (event.dst_port,) if event.dst_port is not None else ()
    via = f" over {event.protocol}" if event.protocol else ""
    return Sighting(source=source, seen_at=event.at, ip=ip, open_ports=ports,
                    detail=_text(f"peer of a flow from device {event.device_id}{via}"))


# -- the EST approval queue --------------------------------------------------------------

def sighting_of_held_request(request: EnrollmentRequest, seen_at: float) -> Sighting:
    """A first contact waiting in the approval queue (held, or polling again)."""
    presented: dict[str, Any] = {}
    if request.idevid_pem:
        try:
            cert = x509.load_pem_x509_certificate(request.idevid_pem.encode())
        except ValueError:
            cert = None
        if cert is not None:
            presented = certificate_fields(cert)
    if not presented:
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem.encode())
            presented = {"subject": _text(csr.subject.rfc4514_string()),
                         "key": public_key_label(csr.public_key())}
        except (ValueError, TypeError):
            presented = {}
    return Sighting(source=EST, seen_at=seen_at, ip=_ip(request.source),
                    client_id=_text(request.device_id),
                    detail=_text(f"awaiting approval: {request.reason}"), **presented)


# -- the OAuth endpoints -----------------------------------------------------------------

def sighting_of_refused_client(*, client_id: str | None, source_ip: str | None,
                               certificate_der: bytes | None, reason: str,
                               seen_at: float) -> Sighting | None:
    """An OAuth client the API refused as unknown (or whose TLS certificate iotiam did
    not issue); None when the request named nothing to recognise it by."""
    presented: dict[str, Any] = {}
    if certificate_der:
        presented = {"certificate": hashlib.sha256(certificate_der).hexdigest()}
        # unparsable: the fingerprint of what was sent is all there is
        with contextlib.suppress(ValueError):
            presented = certificate_fields(x509.load_der_x509_certificate(certificate_der))
    ip = _ip(source_ip)
    name = _text(client_id)
    if ip is None and name is None and not presented:
        return None
    return Sighting(source=API, seen_at=seen_at, ip=ip, client_id=name,
                    detail=_text(f"oauth client refused: {reason}"), **presented)


# -- certificates and keys (the log sources' too) ----------------------------------------

def certificate_fields(cert: x509.Certificate) -> dict[str, Any]:
    """The ``Sighting`` fields a presented certificate fills (fingerprint, issuer and
    serial as ``discovery.models`` normalises them, subject, expiry, key, hash); text
    is cut, never refused, and a key cryptography cannot load is left out: it was seen."""
    fields = read_certificate(cert, lenient_key=True)
    fields["issuer"] = _text(fields["issuer"])
    fields["subject"] = _text(fields["subject"])
    return fields


# -- repeats -----------------------------------------------------------------------------

class RecentSightings:
    """Lets a sighting through once per ``window`` seconds of its own time (thread-safe).

    Two sightings are the same when they differ only in ``seen_at``: a client retrying
    its refused connection every second is one sighting a minute.
    """

    def __init__(self, window: float = REPEAT_SECONDS, limit: int = MAX_REMEMBERED) -> None:
        self._window = window
        self._limit = limit
        self._last: dict[Sighting, float] = {}
        self._lock = threading.Lock()

    def fresh(self, sightings: Iterable[Sighting]) -> list[Sighting]:
        """The sightings not let through within the window before their own time."""
        out: list[Sighting] = []
        with self._lock:
            for sighting in sightings:
                key = replace(sighting, seen_at=0.0)
                last = self._last.get(key)
                if last is not None and 0.0 <= sighting.seen_at - last < self._window:
                    continue
                if len(self._last) >= self._limit:
                    self._last.clear()  # a flood of distinct ones: forget, never grow
                self._last[key] = sighting.seen_at
                out.append(sighting)
        return out


def _ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return normalize_ip(value)
    except InvalidInput:
        return None  # "unknown", a host name from a proxy: no address to match on


def _text(value: str | None) -> str | None:
    """Text a client chose, cut to what a sighting holds (never refused: it was seen)."""
    if value is None:
        return None
    text = value.replace("\x00", "").strip()
    return text[:MAX_TEXT] or None
