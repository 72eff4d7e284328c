"""The change feed on one host (SQLite): the change table, polled.

Changes this process commits are delivered at once (``Database.on_changes_committed``);
the poll, every ``poll_seconds``, brings those of the other processes sharing the file
(``serve --workers``).
"""

from __future__ import annotations

import logging
import threading

from iotiam.errors import IamError
from iotiam.storage.change_delivery import ChangeDelivery
from iotiam.storage.database import Database

log = logging.getLogger("iotiam.changes")

POLL_SECONDS = 0.1


class PollingChangeFeed(ChangeDelivery):
    """``ChangeFeed`` polling the change table."""

    def __init__(self, database: Database, *, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__(database)
        self._poll_seconds = poll_seconds

    def run(self, stop: threading.Event) -> None:
        """Deliver what any process commits until ``stop`` is set."""
        while not stop.wait(self._poll_seconds):
            try:
                self.deliver_pending()
            except IamError as e:  # the database restarts, is locked too long, ...
                log.warning("reading the change table failed; retrying: %s", e)
