"""Follow the managed broker's log as it is written and hand its events on in batches.

Why the log file and not the broker's stdout pipe: a file decouples the two processes.
Mosquitto never blocks on iotiam (a full pipe would stall the broker's single thread
when the reader lags behind a burst), a slow ``deliver`` only makes the reader fall
behind, and a broker restart just appends to the same file. The cost is disk: at level
``messages`` every publish writes ~2-3 lines, so the source rotates the file itself
(rename to ``.1``, then SIGHUP, on which Mosquitto reopens its log; the same HUP re-reads
the CRL and PSK file, which iotiam only ever installs verified). External rotation
(logrotate rename + HUP, or copytruncate) is followed too: a new inode is opened from
its start once the old file is drained; a shrunk file is read again from the start (a
copytruncate that is refilled past the read position between two polls goes unnoticed:
prefer rename + HUP).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from iotiam.broker.events import BrokerLogParser, ParserStats
from iotiam.detection.models import Event

log = logging.getLogger("iotiam.broker.events")

Deliver = Callable[[list[Event]], None]

#: a batch goes out when it is this old or this big, whichever comes first
BATCH_SECONDS = 0.1
BATCH_EVENTS = 1000
#: rotate the broker's log past this size (one old file is kept)
MAX_LOG_BYTES = 64 * 1024 * 1024
_READ_BYTES = 1024 * 1024
#: a longer "line" is no Mosquitto line (topics are at most 64 KiB): dropped, counted
_MAX_LINE = 256 * 1024


class BrokerEventSource:
    """A thread that tails ``path``, parses it and calls ``deliver(events)`` in batches."""

    def __init__(self, path: Path, deliver: Deliver, *,
                 rotate: Callable[[], None] | None = None,
                 max_log_bytes: int = MAX_LOG_BYTES,
                 batch_seconds: float = BATCH_SECONDS, batch_events: int = BATCH_EVENTS,
                 poll_seconds: float = 0.02, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._deliver = deliver
        self._rotate = rotate
        #: rotate (when a ``rotate`` hook is given) once the log passes this size
        self.max_log_bytes = max_log_bytes
        self._batch_seconds = batch_seconds
        self._batch_events = batch_events
        self._poll = poll_seconds
        self._clock = clock
        self.parser = BrokerLogParser()
        self.delivered = 0
        self.deliver_errors = 0
        self.rotations = 0
        self._file: _Followed | None = None
        self._batch: list[Event] = []
        self._batch_started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> ParserStats:
        """The parser's counters (lines, events, malformed …)."""
        return self.parser.stats

    def start(self, *, from_start: bool = False) -> None:
        """Follow from the current end of the log (or its start) in a daemon thread."""
        self._file = _Followed.open(self._path, from_start=from_start)
        self._thread = threading.Thread(target=self._run, name="broker-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Read what is left, deliver it, stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.poll():
                    self._stop.wait(self._poll)
            self.poll()
            self._flush()
        finally:
            if self._file is not None:
                self._file.close()

    def poll(self) -> bool:
        """One step: read what is there, parse, maybe deliver; whether it read anything."""
        followed = self._file
        if followed is None:
            followed = self._file = _Followed.open(self._path, from_start=True)
        lines = followed.read_lines()
        if lines:
            now = self._clock()
            if not self._batch:
                self._batch_started = time.monotonic()
            feed = self.parser.feed
            for line in lines:
                self._batch.extend(feed(line, now))
                if len(self._batch) >= self._batch_events:
                    self._flush()
        else:
            self._file = followed.reopened()
            self._maybe_rotate(followed)
        if self._batch and time.monotonic() - self._batch_started >= self._batch_seconds:
            self._flush()
        return bool(lines)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._batch_started = time.monotonic()
        if not batch:
            return
        try:
            self._deliver(batch)
            self.delivered += len(batch)
        except Exception:  # a failing consumer must not stop the broker's monitoring
            self.deliver_errors += 1
            log.exception("delivering %d broker events failed; they are dropped", len(batch))

    def _maybe_rotate(self, followed: _Followed) -> None:
        if self._rotate is None or followed.position < self.max_log_bytes:
            return
        old = self._path.with_name(self._path.name + ".1")
        try:
            os.replace(self._path, old)
        except OSError as e:
            log.warning("cannot rotate the broker log %s: %s", self._path, e)
            return
        self.rotations += 1
        # the broker keeps writing to the renamed file until the HUP reopens its log;
        # the reader keeps that file until a new one appears and the old one is drained
        self._rotate()


class _Followed:
    """One open log file, its identity and read position."""

    def __init__(self, path: Path, fd: int | None, inode: tuple[int, int] | None) -> None:
        self.path = path
        self.fd = fd
        self.inode = inode
        self.position = 0
        self._partial = b""
        #: the last lines of the file this one replaced, read before this file's own
        self.leftover: list[str] = []

    @staticmethod
    def open(path: Path, *, from_start: bool) -> _Followed:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return _Followed(path, None, None)  # not written yet: read it from its start
        stat = os.fstat(fd)
        followed = _Followed(path, fd, (stat.st_dev, stat.st_ino))
        if not from_start:
            followed.position = os.lseek(fd, 0, os.SEEK_END)
        return followed

    def read_lines(self) -> list[str]:
        if self.leftover:
            lines, self.leftover = self.leftover, []
            return lines
        if self.fd is None:
            return []
        data = os.pread(self.fd, _READ_BYTES, self.position)
        if not data:
            return []
        self.position += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n")
        if cut == -1:
            self._partial = data if len(data) <= _MAX_LINE else b""
            return []
        self._partial = data[cut + 1:]
        if len(self._partial) > _MAX_LINE:
            self._partial = b""
        return data[:cut].decode("utf-8", "replace").split("\n")

    def reopened(self) -> _Followed:
        """Self, or the file now at ``path`` if this one was rotated away or truncated."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return self  # renamed and not recreated yet: keep draining the old one
        if self.fd is None or (stat.st_dev, stat.st_ino) != self.inode:
            # the broker wrote its last line here before it created the new file, maybe
            # after this reader's last (empty) read: drain it once more
            tail = self.read_lines()
            self.close()
            fresh = _Followed.open(self.path, from_start=True)
            fresh.leftover = tail
            return fresh
        if stat.st_size < self.position:  # copytruncate
            self.position = 0
            self._partial = b""
        return self

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LoggedSessions:
    """The managed broker's live sessions as its log opened and closed them
    (``response.ports.LiveSessions``: a set revocation's dry run counts them)."""

    def __init__(self, source: BrokerEventSource) -> None:
        self._source = source

    def connected(self, device_ids: Sequence[str]) -> int | None:
        """How many of these devices have a session open now."""
        for _ in range(3):
            try:
                # the reader thread edits the dict; a copy taken mid-edit is retried
                online = {s.device_id for s in list(self._source.parser.sessions.values())}
            except RuntimeError:
                continue
            return sum(1 for d in set(device_ids) if d in online)
        return None
