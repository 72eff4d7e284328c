"""The change feed across hosts (PostgreSQL): ``LISTEN/NOTIFY``, then the table by id.

Each change's transaction sends ``NOTIFY`` (``change_table.SqlChangeRecorder``), which
PostgreSQL delivers when the transaction commits, to every replica listening. A
notification only says "read the table": what is delivered is always read from the
change table after the cursor, so a notification lost with a dropped connection loses
nothing: after (re)connecting, ``LISTEN`` is issued first and the table read next, and
everything committed meanwhile is delivered. Without notifications the table is still
read every ``idle_seconds`` (transactions that committed out of id order settle).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import psycopg

from iotiam.errors import IamError
from iotiam.storage.change_delivery import ChangeDelivery
from iotiam.storage.change_table import NOTIFY_CHANNEL
from iotiam.storage.database import Database

log = logging.getLogger("iotiam.changes")

IDLE_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
#: how soon the listener notices it is told to stop
STOP_SECONDS = 0.25


class ListeningChangeFeed(ChangeDelivery):
    """``ChangeFeed`` woken by PostgreSQL notifications."""

    def __init__(self, database: Database, *, idle_seconds: float = IDLE_SECONDS) -> None:
        super().__init__(database)
        self._idle_seconds = idle_seconds
        self._listener: Any = None
        self.connections = 0

    def run(self, stop: threading.Event) -> None:
        """Listen and deliver until ``stop`` is set; reconnect after a lost connection."""
        while not stop.is_set():
            try:
                self._listen(stop)
            except (psycopg.Error, OSError, IamError) as e:
                log.warning("the change feed lost its connection; catching up after "
                            "reconnecting: %s", e)
                stop.wait(RECONNECT_SECONDS)
            finally:
                self._close()

    def _listen(self, stop: threading.Event) -> None:
        raw = self._database.engine.raw_connection()
        conn: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        raw.detach()  # ours alone: a pooled connection must not keep listening
        conn.rollback()  # the pool's check-out may have begun a transaction
        conn.autocommit = True
        self._listener = conn
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self.connections += 1
        # whatever was committed while nobody listened
        self.deliver_pending()
        read_at = time.monotonic()
        while not stop.is_set():
            woken = any(True for _ in conn.notifies(timeout=STOP_SECONDS, stop_after=1))
            if woken or time.monotonic() - read_at >= self._idle_seconds:
                self.deliver_pending()
                read_at = time.monotonic()

    def _close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(psycopg.Error):
                listener.close()

    def listener_pid(self) -> int | None:
        """The server process of the listening connection (tests end it to drop it)."""
        listener = self._listener
        return int(listener.info.backend_pid) if listener is not None else None
