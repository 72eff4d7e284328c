"""What the managed Mosquitto logs, turned into detection ``Event``s (never payloads).

Facts about Mosquitto 2.0.11 (Debian) with ``connection_messages true``, mTLS +
``use_identity_as_username`` + the dynamic-security plugin, measured here with real
clients (``log_timestamp_format %Y-%m-%dT%H:%M:%S%z``; each line is ``<time>: <text>``):

Level ``connections`` (log types error, warning, notice, information):

* TCP accept: ``New connection from 127.0.0.1:49093 on port 8883.`` (peer ip:port, the
  listener's port). A TLS listener logs it only once the handshake needs more data.
* CONNECT accepted: ``New client connected from 127.0.0.1:49093 as dev-1-abc (p5, c1,
  k30, u'dev-1').`` — client id after ``as`` (any UTF-8, spaces included, chosen by the
  device), ``p`` protocol (1 = 3.1, 2 = 3.1.1, 5 = 5.0), clean start, keepalive,
  ``u'…'`` the username = the certificate CN (mTLS) or PSK identity = the device id.
* A certificate whose CN has no dynsec client, or a *disabled* one, still connects
  (dynsec is not asked about certificate identities); it only gets no rights.
* Disconnects, by reason: ``Client X disconnected.`` (DISCONNECT packet),
  ``Client X closed its connection.`` (socket closed, after an OpenSSL ``unexpected eof``
  line), ``Client X been disconnected by administrative action.`` (dynsec kick:
  deleteClient, disableClient, role removal), ``Client X already connected, closing old
  connection.`` (client-id takeover; the old session gets no other line),
  ``Client X has exceeded timeout, disconnecting.`` (keepalive; from the 2.0 source),
  ``Client X disconnected: Protocol error.`` (strerror of a socket/TLS error) and
  ``Client X disconnected due to <why>.`` (malformed/oversize packet …).
* A failed TLS handshake never names the client and, mostly, not the source either:
  ``OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed`` then
  ``Client <unknown> disconnected: Protocol error.``; the ip:port is only on the
  ``New connection`` line logged before it (the parser attributes it when the pending
  connections leave no doubt; the failure then carries that line's client port as
  ``src_port`` and its listener as ``dst_port``, which tells a refused certificate
  from a refused PSK). When the whole handshake completes inside accept the one
  line is ``Client connection from 127.0.0.1 failed: error:0A000086:SSL
  routines::certificate verify failed.`` (ip, no port). Unknown CA, revoked (CRL) and
  expired certificates all read ``certificate verify failed``; no certificate reads
  ``peer did not return a certificate``; a wrong PSK ``binder does not verify``; an
  unknown PSK identity ``no suitable signature algorithm`` (TLS 1.3 falls back to
  certificates, which the PSK listener has none of). A TCP connect-and-close reads
  ``unexpected eof while reading``, HTTP on the TLS port ``http request``.
* CONNECT refused (bad password on the admin listener): ``Client <unknown>
  disconnected, not authorised.`` — neither client id nor username is logged.

Level ``messages`` adds log types debug and subscribe:

* ``Received PUBLISH from dev-1-abc (d0, q1, r0, m1, 'devices/dev-1/telemetry', ...
  (5 bytes))`` — topic and payload *size* only; the payload is never logged.
* ``Denied PUBLISH from dev-1-abc (d0, q1, r0, m3, 'devices/dev-2/cmd', ... (7
  bytes))`` — an ACL refusal. It exists only at debug level: at ``connections`` level
  denied publishes and denied subscribes are invisible.
* SUBSCRIBE: ``Received SUBSCRIBE from dev-1-abc``, one ``\\tdevices/dev-1/# (QoS 1)``
  line per filter, after each *granted* filter a line ``dev-1-abc 1 devices/dev-1/#``
  (log type subscribe), then ``Sending SUBACK to dev-1-abc``; a filter without its
  grant line was denied. Mosquitto is single-threaded, so these lines are contiguous.
* ``Sending CONNACK to 127.0.0.1 (0, 135)`` names the source ip of a refused CONNECT.
* Also ``Sending PUBLISH to …`` (deliveries), PUBACK/PINGREQ/UNSUBSCRIBE lines: not
  events (counted as ignored).

What level ``messages`` costs (measured here, one Mosquitto 2.0.11, mTLS P-256, 4
``mosquitto_pub -l`` publishers at QoS 1 + one QoS 0 subscriber, two runs each):
22.7k-28.1k publishes/s at ``connections`` vs 16.0k-16.3k at ``messages`` (-30 to -40 %);
the log grows ~235 bytes per message (3 lines: received, PUBACK, delivery), 23.5 MB per
100k messages, against ~0 at ``connections``. Connect + publish + disconnect cycles
(client-spawn bound) measured 102-157/s vs 87-95/s. The default is ``messages`` all the
same: without it the broker's authorization failures and message rates are invisible,
and the topic-probing, rate and size detectors are blind on the managed broker — the
embedded default is for fleets well under 16k messages/s, and the log rotates at
64 MiB. ``connections`` (``broker_event_log``, ``IOTIAM_BROKER_EVENT_LOG``, recorded
by ``iotiam init``) gives that third of the throughput back where the message rate needs
it, keeping connects, disconnects and auth failures, which cost nothing measurable. The
parser itself reads ~380k lines/s (~130k publish events/s) on one core, 8x what the
broker logs at ``messages``.

Lines of iotiam's own admin/sync link (username ``iotiam-broker-admin``; any reserved
name, ``iotiam-*``) are dropped, keyed on the authenticated username, never on the client
id a device chooses. A line's time has one-second resolution; the live source passes
the time it read the line, and ``at`` is that time clamped into the logged second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from iotiam.detection.models import MAX_TEXT, Event, EventKind
from iotiam.inventory.models import is_reserved_id

#: protocol numbers in ``New client connected … (pN, …)``
PROTOCOLS = {"1": "mqtt3.1", "2": "mqtt3.1.1", "5": "mqtt5"}
#: OpenSSL reasons that are no attempt to authenticate (health checks, scanners, HTTP
#: on the MQTT port): counted, not reported as auth failures
NOT_AUTH_ATTEMPTS = frozenset({"unexpected eof while reading", "http request",
                               "https proxy request", "wrong version number",
                               "unsupported protocol"})
#: a ``New connection`` with no CONNECT after this long no longer explains a failure
PENDING_SECONDS = 10.0
_MAX_PENDING = 10_000
#: fixed ``Client X <suffix>`` disconnect texts and the reason they become
_DISCONNECTS = (
    (" disconnected.", "normal"),
    (" closed its connection.", "closed"),
    (" has exceeded timeout, disconnecting.", "keepalive_timeout"),
    (" been disconnected by administrative action.", "kicked"),
    (" already connected, closing old connection.", "taken_over"),
    (" disconnected, not authorised.", "not_authorised"),
)
_CONNECTED = re.compile(r"(.+) \(p(\d+), c(\d), k(\d+)(?:, u'(.*)')?\)\.")
_PUBLISH_TAIL = re.compile(r"\(d\d, q(\d), r\d, m\d+, '(.*)', \.\.\. \((\d+) bytes\)\)")
_SUB_FILTER = re.compile(r"\t(.*) \(QoS (\d)\)")
_DISCONNECTED_WHY = re.compile(r"(.+) disconnected(?: due to|:) (.+)\.")
_CONNECTION_FAILED = re.compile(r"Client connection from (\S+) failed: error:[0-9A-F]+:"
                                r"[^:]*:[^:]*:(.+?)\.?")
_OPENSSL = re.compile(r"OpenSSL Error\[\d+\]: error:[0-9A-F]+:[^:]*:[^:]*:(.+)")
_CONNACK = re.compile(r"Sending CONNACK to (\S+) \(\d, (\d+)\)")


@dataclass(slots=True)
class Session:
    """A connected client as the log introduced it."""

    client_id: str
    #: the username (= device id); None for iotiam's own links, whose lines are dropped
    device_id: str | None
    source_ip: str
    src_port: int | None


@dataclass
class ParserStats:
    """What the parser did with the lines it was given."""

    lines: int = 0
    events: int = 0
    #: lines that should have had a known shape and did not (never raised)
    malformed: int = 0
    #: well-formed lines that are no event (PUBACKs, deliveries, dynsec, startup …)
    ignored: int = 0
    #: lines about a client id no CONNECT introduced (the log was joined mid-session)
    unattributed: int = 0
    #: TLS handshakes that ended before any credential was offered
    aborted_handshakes: int = 0
    #: auth failures whose source ip the log left ambiguous
    unknown_source: int = 0

    def as_dict(self) -> dict[str, int]:
        """For metrics and logs."""
        return dict(self.__dict__)


@dataclass
class _Subscribe:
    session: Session
    at: float
    filters: list[tuple[str, int]] = field(default_factory=list)
    granted: set[str] = field(default_factory=set)


class BrokerLogParser:
    """Mosquitto 2.0 log lines in, ``Event``s out; state = the sessions the log opened.

    No I/O and no clock: feed it lines in log order; it never raises on bad input.
    """

    def __init__(self) -> None:
        self.stats = ParserStats()
        self.sessions: dict[str, Session] = {}
        #: "ip:port" -> (ip, port, listener port, logged time) of TCP accepts not yet a
        #: client
        self._pending: dict[str, tuple[str, int | None, int | None, float]] = {}
        self._tls_error: str | None = None
        self._refused_ip: str | None = None
        self._subscribe: _Subscribe | None = None
        self._stamp = ("", 0.0)

    def feed(self, line: str, now: float | None = None) -> list[Event]:
        """The events of one log line (no trailing newline needed); ``now`` = read time."""
        self.stats.lines += 1
        head, sep, text = line.partition(": ")
        at = self._time(head) if sep else None
        if at is None:
            self.stats.malformed += 1
            return []
        if now is not None:
            at = min(max(now, at), at + 0.999)
        text = text.rstrip("\r\n")
        try:
            events = self._dispatch(text, at)
        except (ValueError, IndexError):
            self.stats.malformed += 1
            return []
        self.stats.events += len(events)
        return events

    def feed_all(self, lines: Iterable[str]) -> list[Event]:
        """Every event of ``lines``, in order."""
        out: list[Event] = []
        for line in lines:
            out.extend(self.feed(line))
        return out

    def _time(self, head: str) -> float | None:
        if head == self._stamp[0]:
            return self._stamp[1]
        try:
            if head.isdigit():
                at = float(head)
            else:
                # with %z the zone is exact; without it Mosquitto wrote local time
                at = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S%z" if len(head) > 19
                                       else "%Y-%m-%dT%H:%M:%S").timestamp()
        except ValueError:
            return None
        self._stamp = (head, at)
        return at

    def _dispatch(self, text: str, at: float) -> list[Event]:
        tls_error, self._tls_error = self._tls_error, None
        refused_ip, self._refused_ip = self._refused_ip, None
        if self._subscribe is not None:
            return self._in_subscribe(text, at)
        if text.startswith("Received PUBLISH from "):
            return self._publish(text[22:], at, EventKind.PUBLISH)
        if text.startswith("Denied PUBLISH from "):
            return self._publish(text[20:], at, EventKind.AUTHZ_FAILURE)
        if text.startswith("Received SUBSCRIBE from "):
            session = self.sessions.get(text[24:])
            if session is None:
                self.stats.unattributed += 1
                return []
            self._subscribe = _Subscribe(session, at)
            return []
        if text.startswith("New connection from "):
            return self._accepted(text[20:], at)
        if text.startswith("New client connected from "):
            return self._connected(text[26:], at)
        if text.startswith("Client "):
            return self._client(text[7:], at, tls_error, refused_ip)
        if text.startswith("OpenSSL Error["):
            match = _OPENSSL.fullmatch(text)
            if match is None:
                self.stats.malformed += 1
            else:
                self._tls_error = match.group(1)
            return []
        if text.startswith("Sending CONNACK to "):
            match = _CONNACK.fullmatch(text)
            if match is not None and match.group(2) != "0":
                self._refused_ip = match.group(1)
            self.stats.ignored += 1
            return []
        if text.startswith("mosquitto version ") and text.endswith((" starting", " terminating")):
            return self._broker_stopped(at)
        self.stats.ignored += 1
        return []

    # -- connections ------------------------------------------------------------------

    def _accepted(self, rest: str, at: float) -> list[Event]:
        peer, _, listener = rest.partition(" on port ")
        ip, port = _split_peer(peer)
        listener = listener.removesuffix(".")
        if len(self._pending) >= _MAX_PENDING:
            self._expire_pending(at)
            if len(self._pending) >= _MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
        self._pending[peer] = (ip, port, int(listener) if listener.isdigit() else None, at)
        return []

    def _connected(self, rest: str, at: float) -> list[Event]:
        peer, sep, identity = rest.partition(" as ")
        match = _CONNECTED.fullmatch(identity) if sep else None
        if match is None:
            self.stats.malformed += 1
            return []
        self._pending.pop(peer, None)
        ip, port = _split_peer(peer)
        client_id, protocol, username = match.group(1), match.group(2), match.group(5)
        device_id = None if username is None or is_reserved_id(username) else username
        events: list[Event] = []
        old = self.sessions.get(client_id)
        if old is not None and old.device_id is not None:  # a takeover's line came first
            events.append(_disconnect(old, at, "taken_over"))
        session = Session(client_id, device_id, ip, port)
        self.sessions[client_id] = session
        if device_id is None:
            if username is None:  # anonymous: not a configuration iotiam writes
                self.stats.unattributed += 1
            return events
        events.append(Event(EventKind.CONNECT, at, device_id=device_id,
                            client_id=_text(client_id), source_ip=ip, src_port=port,
                            protocol=PROTOCOLS.get(protocol, f"mqtt-p{protocol}")))
        return events

    def _client(self, rest: str, at: float, tls_error: str | None,
                refused_ip: str | None) -> list[Event]:
        if rest.startswith("connection from "):
            return self._handshake_failed(_CONNECTION_FAILED.fullmatch("Client " + rest), at)
        for suffix, reason in _DISCONNECTS:
            if rest.endswith(suffix):
                return self._gone(rest[:-len(suffix)], at, reason, tls_error, refused_ip)
        match = _DISCONNECTED_WHY.fullmatch(rest)
        if match is None:
            self.stats.ignored += 1
            return []
        why = match.group(2).lower().replace(" ", "_")
        return self._gone(match.group(1), at, why, tls_error, refused_ip)

    def _gone(self, client_id: str, at: float, reason: str, tls_error: str | None,
              refused_ip: str | None) -> list[Event]:
        if client_id == "<unknown>":
            if reason == "not_authorised":
                return self._refused(at, "not_authorised", refused_ip)
            if tls_error is not None:
                return self._refused(at, tls_error, None)
            self.stats.ignored += 1  # e.g. a TCP health check on the admin port
            return []
        # on a takeover the old session goes; the CONNECT line that follows opens the new
        session = self.sessions.pop(client_id, None)
        if session is None:
            self.stats.unattributed += 1
            return []
        if session.device_id is None:
            return []
        return [_disconnect(session, at, reason)]

    def _handshake_failed(self, match: re.Match[str] | None, at: float) -> list[Event]:
        if match is None:
            self.stats.malformed += 1
            return []
        # failed inside accept: no accept line of its own was logged, leave the others
        return self._refused(at, match.group(2), match.group(1), accepted=False)

    def _refused(self, at: float, reason: str, source_ip: str | None, *,
                 accepted: bool = True) -> list[Event]:
        if reason in NOT_AUTH_ATTEMPTS:
            self.stats.aborted_handshakes += 1
            if source_ip is None:
                self._attribute(at)  # still consumes its pending accept
            return []
        # the accept line gives the client's port and the listener it came to (the
        # listener tells a refused certificate from a refused PSK); an accept-time
        # failure names the ip only
        ip, port, listener = (self._attribute(at, source_ip) if accepted
                              else (source_ip, None, None))
        if ip is None:
            self.stats.unknown_source += 1
        label = reason if reason == "not_authorised" else f"tls: {reason}"
        return [Event(EventKind.AUTH_FAILURE, at, source_ip=ip, src_port=port,
                      dst_port=listener, reason=label)]

    def _attribute(self, at: float, ip: str | None = None
                   ) -> tuple[str | None, int | None, int | None]:
        """The source of a failure: the only pending accept (of ``ip``, when the log named
        it), as (ip, client port, listener port); ``ip`` alone when that is ambiguous."""
        self._expire_pending(at)
        candidates = [peer for peer, pending in self._pending.items()
                      if ip is None or pending[0] == ip]
        if len({self._pending[peer][0] for peer in candidates}) != 1 or (
                ip is not None and len(candidates) != 1):
            return ip, None, None
        # the oldest accept: handshakes finish in order
        found_ip, port, listener, _ = self._pending.pop(candidates[0])
        return found_ip, port, listener

    def _expire_pending(self, at: float) -> None:
        stale = [peer for peer, (_, _, _, t) in self._pending.items()
                 if at - t > PENDING_SECONDS]
        for peer in stale:
            del self._pending[peer]

    def _broker_stopped(self, at: float) -> list[Event]:
        events = [_disconnect(s, at, "broker_stopped") for s in self.sessions.values()
                  if s.device_id is not None]
        self.sessions.clear()
        self._pending.clear()
        return events

    # -- messages ---------------------------------------------------------------------

    def _publish(self, rest: str, at: float, kind: EventKind) -> list[Event]:
        # the client id may contain " (d": the right split is the one naming a session
        start = rest.find(" (d")
        while start != -1 and rest[:start] not in self.sessions:
            start = rest.find(" (d", start + 1)
        if start == -1:
            self.stats.unattributed += 1
            return []
        match = _PUBLISH_TAIL.fullmatch(rest, start + 1)
        if match is None:
            self.stats.malformed += 1
            return []
        session = self.sessions[rest[:start]]
        if session.device_id is None:
            return []
        return [Event(kind, at, device_id=session.device_id, client_id=_text(session.client_id),
                      source_ip=session.source_ip, topic=_text(match.group(2)),
                      action="publish" if kind is EventKind.AUTHZ_FAILURE else None,
                      size=int(match.group(3)), qos=int(match.group(1)))]

    def _in_subscribe(self, text: str, at: float) -> list[Event]:
        pending = self._subscribe
        assert pending is not None
        match = _SUB_FILTER.fullmatch(text)
        if match is not None:
            pending.filters.append((match.group(1), int(match.group(2))))
            return []
        prefix = pending.session.client_id + " "
        if text.startswith(prefix) and pending.filters:
            _, _, granted = text[len(prefix):].partition(" ")
            pending.granted.add(granted)
            return []
        self._subscribe = None
        if text != f"Sending SUBACK to {pending.session.client_id}":
            # the SUBACK went missing (client gone): report nothing rather than guess
            self.stats.malformed += 1
            return self._dispatch(text, at)
        session = pending.session
        if session.device_id is None:
            return []
        return [Event(EventKind.SUBSCRIBE if topic in pending.granted else EventKind.AUTHZ_FAILURE,
                      pending.at, device_id=session.device_id,
                      client_id=_text(session.client_id),
                      source_ip=session.source_ip, topic=_text(topic), qos=qos,
                      action=None if topic in pending.granted else "subscribe")
                for topic, qos in pending.filters]


def parse_log(lines: Iterable[str]) -> tuple[list[Event], ParserStats]:
    """Events of a whole log (a fresh parser): for tests and offline replay."""
    parser = BrokerLogParser()
    events = parser.feed_all(lines)
    return events, parser.stats


def _disconnect(session: Session, at: float, reason: str) -> Event:
    return Event(EventKind.DISCONNECT, at, device_id=session.device_id,
                 client_id=_text(session.client_id), source_ip=session.source_ip,
                 src_port=session.src_port, reason=reason)


def _split_peer(peer: str) -> tuple[str, int | None]:
    # IPv6 addresses are logged bare ("::1:50000"): the port is after the last colon
    ip, _, port = peer.rpartition(":")
    if not ip or not port.isdigit():
        return peer, None
    return ip, int(port)


def _text(value: str) -> str:
    # the event schema caps text fields; a longer topic or client id is itself a signal
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT]
