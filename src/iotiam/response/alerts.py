"""Alert channels: a signed webhook and syslog (RFC 5424), fed from a background queue.

A finding must never wait on a slow receiver: ``AlertDispatcher.send`` only queues, one
thread delivers. The webhook body is signed with HMAC-SHA256 over ``timestamp.body``
(``X-Iotiam-Signature: t=<unix>,v1=<hex>``) so a receiver can check origin and
freshness; ``verify_webhook_signature`` is what a receiver runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from iotiam.errors import InvalidInput

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Iotiam-Signature"
#: a receiver refuses signatures older than this (replays)
SIGNATURE_TOLERANCE_SECONDS = 300


class AlertChannel(Protocol):
    """Somewhere an alert goes."""

    name: str

    def deliver(self, alert: Mapping[str, Any]) -> None:
        """Send one alert; raise on failure (the dispatcher counts and logs it)."""
        ...


def sign_webhook(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_webhook_signature(secret: bytes, body: bytes, header: str, *,
                             now: float | None = None) -> bool:
    """Whether ``header`` is a fresh, valid signature of ``body`` (for receivers)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = sign_webhook(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


@dataclass
class WebhookChannel:
    """POST each alert as JSON, signed."""

    url: str
    secret: bytes
    timeout: float = 5.0
    name: str = "webhook"

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise InvalidInput(f"webhook URL {self.url!r} must be http(s)")
        if len(self.secret) < 16:
            raise InvalidInput("the webhook secret must be at least 16 bytes")
        self._client = httpx.Client(timeout=self.timeout)

    def deliver(self, alert: Mapping[str, Any]) -> None:
        """POST the alert; a non-2xx answer is a failure."""
        body = json.dumps(alert, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign_webhook(self.secret, body, int(time.time()))}
        response = self._client.post(self.url, content=body, headers=headers)
        response.raise_for_status()


#: RFC 5424 §6.2.1: facility 10 (security/authorization)
SYSLOG_FACILITY = 10
_SYSLOG_SEVERITY = {"low": 5, "medium": 4, "high": 3, "critical": 2}  # notice .. critical


@dataclass
class SyslogChannel:
    """RFC 5424 messages over UDP (or TCP with octet counting, RFC 6587 §3.4.1)."""

    host: str
    port: int = 514
    tcp: bool = False
    app_name: str = "iotiam"
    name: str = "syslog"

    def deliver(self, alert: Mapping[str, Any]) -> None:
        """Send one message."""
        self.send(format_syslog(alert, app_name=self.app_name))

    def send(self, message: bytes) -> None:
        """Send one already formatted RFC 5424 message."""
        if self.tcp:
            with socket.create_connection((self.host, self.port), timeout=5) as conn:
                conn.sendall(f"{len(message)} ".encode() + message)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, (self.host, self.port))


def format_syslog(alert: Mapping[str, Any], *, app_name: str = "iotiam") -> bytes:
    """One RFC 5424 message: structured data for the key fields, JSON as the message."""
    severity = _SYSLOG_SEVERITY.get(str(alert.get("severity")), 5)
    pri = SYSLOG_FACILITY * 8 + severity
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = socket.gethostname()[:255] or "-"

    def param(value: object) -> str:
        # RFC 5424 §6.3.3: escape '"', '\' and ']' in PARAM-VALUE
        text = str(value)
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")

    sd = (f'[finding@32473 id="{param(alert.get("finding_id"))}" '
          f'type="{param(alert.get("type"))}" device="{param(alert.get("device_id"))}" '
          f'severity="{param(alert.get("severity"))}"]')
    body = json.dumps(alert, sort_keys=True, separators=(",", ":"))
    return f"<{pri}>1 {stamp} {host} {app_name} - finding {sd} ".encode() + \
        b"\xef\xbb\xbf" + body.encode()


class AlertDispatcher:
    """Queues alerts and delivers them to every channel from one background thread.

    An alert that reaches no receiver is counted in ``undelivered`` by reason
    (``no_channel``, ``queue_full``, ``delivery_failed``): an installation with no
    channel configured still shows, in ``/v1/detection/stats``, what went nowhere.
    """

    def __init__(self, channels: Sequence[AlertChannel], *, capacity: int = 10_000) -> None:
        self._channels = list(channels)
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(capacity)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.undelivered: Counter[str] = Counter()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """Whether any channel is configured."""
        return bool(self._channels)

    def send(self, alert: Mapping[str, Any]) -> None:
        """Queue an alert (counted as undelivered if there is no channel or room)."""
        if not self._channels:
            self.undelivered["no_channel"] += 1
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="iotiam-alerts", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            self.undelivered["queue_full"] += 1

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            delivered = False
            for channel in self._channels:
                try:
                    channel.deliver(alert)
                    self.sent += 1
                    delivered = True
                except Exception as e:  # a receiver's failure must not stop the others
                    self.failed += 1
                    log.warning("alert to %s failed: %s", channel.name, e)
            if not delivered:
                self.undelivered["delivery_failed"] += 1
            self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until the queue is empty (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Deliver what is queued, then stop."""
        if self._thread is not None:
            self.flush()
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None
