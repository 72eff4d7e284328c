"""What both change feeds share: the subscriptions, and reading the change table by id.

Ids are handed out when a row is inserted, not when its transaction commits: on
PostgreSQL a transaction that took id 10 may commit after the one that took 11. So the
cursor does not simply remember the highest id seen: an id missing below it is a *gap*,
read again on every pass for ``GAP_GRACE`` seconds (a transaction still committing)
before it is given up (a rolled-back one). SQLite writers are serialised, so there no
gaps occur. Delivery is at least once: a consumer may see a change twice, never miss
one committed while the table keeps it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from iotiam.changes import Change, Consumer, Published
from iotiam.storage.change_table import last_change_id, prune_changes, read_changes
from iotiam.storage.database import Database

log = logging.getLogger("iotiam.changes")

#: how long an id missing below the newest one is waited for (its transaction may
#: still be committing)
GAP_GRACE = 10.0
PAGE = 1000
#: how long a committing thread waits for another thread's delivery to end before it
#: leaves its changes to that thread
COMMIT_WAIT = 1.0
#: a gap wider than this is not tracked id by id (a sequence jump, not a transaction)
MAX_GAP = 10_000


class ChangeCursor:
    """Which ids were delivered: all up to ``position``, and some above it."""

    def __init__(self, position: int) -> None:
        self.position = position
        self._ahead: set[int] = set()
        self._gaps: dict[int, float] = {}

    def unseen(self, found: Iterable[Published]) -> list[Published]:
        """What of ``found`` was not delivered yet."""
        return [p for p in found if p.position > self.position and p.position not in self._ahead]

    def was_delivered(self, position: int) -> bool:
        """Whether the change at ``position`` was delivered."""
        return position <= self.position or position in self._ahead

    def delivered(self, positions: Iterable[int]) -> None:
        """Note delivered ids and move ``position`` over every settled id."""
        self._ahead.update(positions)
        if not self._ahead:
            return
        now = time.monotonic()
        top = max(self._ahead)
        if top - self.position > MAX_GAP:
            self.position, self._ahead, self._gaps = top, set(), {}
            return
        for missing in range(self.position + 1, top):
            if missing not in self._ahead:
                self._gaps.setdefault(missing, now)
        while True:
            following = self.position + 1
            if following in self._ahead:
                self._ahead.discard(following)
            elif following in self._gaps and now - self._gaps[following] >= GAP_GRACE:
                del self._gaps[following]
            else:
                break
            self.position = following
            self._gaps.pop(following, None)


class ChangeDelivery:
    """Subscriptions, and delivery of what the table holds beyond the cursor."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._subscribers: list[tuple[tuple[type[Change], ...], Consumer]] = []
        with database.reading() as uow:
            start = last_change_id(uow.conn)
        self._cursor = ChangeCursor(start)
        self._read_at = time.monotonic()
        self._delivering = threading.Lock()
        self._again = threading.Event()
        # every commit of this process that recorded a change delivers it at once
        database.on_changes_committed(self.committed)

    def subscribe(self, kinds: tuple[type[Change], ...], consumer: Consumer, *,
                  after: int | None = None) -> None:
        """Call ``consumer`` with every change of these kinds committed from now on; with
        ``after``, first with those already delivered to others since that position."""
        with self._delivering:
            position = self._cursor.position if after is None else after
            while True:
                with self._database.reading() as uow:
                    found = read_changes(uow.conn, position, PAGE)
                for published in found:
                    if self._cursor.was_delivered(published.position) and \
                            isinstance(published.change, kinds):
                        consumer(published)
                if len(found) < PAGE:
                    break
                position = found[-1].position
            self._subscribers.append((kinds, consumer))
        if self._again.is_set():  # a commit came while we held the delivery
            self.deliver_pending()

    @property
    def position(self) -> int:
        """Every change up to this id was delivered."""
        return self._cursor.position

    def seconds_since_read(self) -> float:
        """How long ago the change table was last read (``/readyz``: a feed that stopped
        reading leaves this replica's caches behind the others)."""
        return time.monotonic() - self._read_at

    def committed(self, published: list[Published]) -> None:
        """This process just committed these changes: deliver them before the committing
        call returns (G3: a revocation is reflected once its call returns). As they are
        when they follow the last one delivered (no read), else by reading the table up
        to them. Another thread delivering (the listener catching up) is waited for,
        briefly: it may deliver these too."""
        if not self._delivering.acquire(timeout=COMMIT_WAIT):
            # a consumer that itself committed changes (same thread), or a stuck one:
            # the thread delivering reads again before it lets go
            self.deliver_pending()
            return
        try:
            if all(self._cursor.was_delivered(p.position) for p in published):
                return
            follows = published[0].position == self._cursor.position + 1 and all(
                later.position == earlier.position + 1
                for earlier, later in itertools.pairwise(published))
            if follows:
                for change in published:
                    self._deliver(change)
                self._cursor.delivered(p.position for p in published)
            else:
                self._again.clear()
                self._deliver_all()
        finally:
            self._delivering.release()
        if self._again.is_set():  # a commit came while we held the delivery
            self.deliver_pending()

    def deliver_pending(self) -> int:
        """Deliver every change committed since the last delivery; how many.

        One thread delivers at a time, in order; a call while another delivers leaves
        the work to it (it reads once more before it returns).
        """
        count = 0
        self._again.set()
        while self._again.is_set():
            if not self._delivering.acquire(blocking=False):
                return count
            try:
                self._again.clear()
                count += self._deliver_all()
            finally:
                self._delivering.release()
        return count

    def _deliver_all(self) -> int:
        count = 0
        while True:
            with self._database.reading() as uow:
                found = read_changes(uow.conn, self._cursor.position, PAGE)
            self._read_at = time.monotonic()
            fresh = self._cursor.unseen(found)
            for published in fresh:
                self._deliver(published)
            self._cursor.delivered(p.position for p in fresh)
            count += len(fresh)
            if len(found) < PAGE:
                return count

    def _deliver(self, published: Published) -> None:
        for kinds, consumer in self._subscribers:
            if isinstance(published.change, kinds):
                try:
                    consumer(published)
                except Exception:  # one consumer's bug must not starve the others
                    log.exception("a consumer of %s failed", type(published.change).__name__)

    def prune(self, keep: timedelta, now: datetime) -> int:
        """Delete changes older than ``keep``; how many (the pruning job)."""
        with self._database() as uow:
            return prune_changes(uow.conn, keep, now)
