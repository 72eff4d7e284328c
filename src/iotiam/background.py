"""What ``iotiam serve`` runs beside the requests: every background job, in one list.

``serving.background_jobs`` builds the list (and subscribes the jobs that follow the
change feed); ``serve`` only starts and stops it. Three kinds of job:

* **every process** runs its own: the change feed's dispatcher (it delivers to this
  process's caches) and the discovery observer (the sightings this process queued);
* **the first process** of each ``serve`` (``serve --workers``) runs what belongs to
  its host: the managed broker and its sync, and saving the detection baselines;
* **singletons** (``Job.singleton``) run in one process of all replicas, the leader
  of each (``iotiam.election``): the CRL refresher, audit checkpoints, trust scores,
  pruning the change table and the risk register (``RiskRefresher``).

A job is a loop ``run(stop)`` that survives a bad moment (a database restart) and
returns soon after ``stop`` is set; ``at_exit`` runs once after its loop ended. A
singleton's loop may be run again, in a later term of leadership.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from iotiam.audit.anchor import CheckpointWriter, Refused
from iotiam.changes import ChangeFeed, Published, SightingsImported, TrustChanged
from iotiam.clock import idle
from iotiam.election import Elector, FixedLeadership, Leadership
from iotiam.inventory.models import Device

# composition-level like bootstrap.py (it wires these jobs): the CRL job drives the PKI
# service itself, the risk job the register (allowed by name in
# tests/unit/test_layering.py, SERVICE_USERS)
from iotiam.pki.service import Pki
from iotiam.response.models import TrustScore
from iotiam.risk.service import RiskRegister, ScoredDevice

log = logging.getLogger("iotiam.server")

CRL_CHECK_SECONDS = 30.0
#: how long revocations may settle into one CRL
CRL_SETTLE_SECONDS = 0.2
#: how often the detection baselines are written to the data directory
BASELINE_SAVE_SECONDS = 60.0
#: how often the audit head is read to see whether a checkpoint is due
CHECKPOINT_POLL_SECONDS = 1.0
#: how long published changes are kept (a replica away longer resyncs in full)
CHANGE_RETENTION = timedelta(days=1)
PRUNE_SECONDS = 3600.0
#: how often a loop that waits for a wake-up looks at ``stop``
STOP_SECONDS = 0.5

Loop = Callable[[threading.Event], None]


@dataclass(frozen=True)
class Job:
    """One background loop."""

    name: str
    run: Loop
    #: once, after every loop ended (e.g. save the baselines one last time)
    at_exit: Callable[[], None] | None = None
    #: runs in one process of all replicas, while it leads the job (``iotiam.election``)
    singleton: bool = False


@dataclass
class BackgroundJobs:
    """The jobs of one process: started after the fork, stopped at shutdown."""

    jobs: list[Job]
    #: the managed broker and its sync (started before the listeners, so a broker that
    #: cannot start stops ``serve`` with a one-line error)
    start_data_plane: Callable[[], Callable[[], None] | None] | None = None
    #: who runs the singleton jobs (default: this process, always)
    leadership: Leadership = field(default_factory=lambda: FixedLeadership(leads=True))
    _stop: threading.Event = field(default_factory=threading.Event)
    _resign: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _elector_thread: threading.Thread | None = None
    _stop_data_plane: Callable[[], None] | None = None
    #: runs the singleton jobs while this process leads them
    elector: Elector = field(init=False)

    def __post_init__(self) -> None:
        self.elector = Elector(self.leadership, [j for j in self.jobs if j.singleton])

    def start(self) -> None:
        """Start the data plane (if this process runs it), every loop, and the elector of
        the singleton jobs."""
        if self.start_data_plane is not None:
            self._stop_data_plane = self.start_data_plane()
        for job in self.jobs:
            if not job.singleton:
                thread = threading.Thread(target=job.run, args=(self._stop,), daemon=True,
                                          name=job.name)
                thread.start()
                self._threads.append(thread)
        self._elector_thread = threading.Thread(target=self.elector.run, args=(self._resign,),
                                                daemon=True, name="singleton-elector")
        self._elector_thread.start()

    def resign(self, timeout: float = 15.0) -> None:
        """Stop the singleton jobs this process leads and release their locks, so that
        another replica takes them over now (the first step of a drain)."""
        self._resign.set()
        if self._elector_thread is not None:
            self._elector_thread.join(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Resign, end every loop, then run what must run at exit."""
        self.resign()
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for job in self.jobs:
            if job.at_exit is not None and not job.singleton:
                job.at_exit()

    def stop_data_plane(self) -> None:
        """Stop the broker sync and the managed broker, if this process runs them."""
        if self._stop_data_plane is not None:
            self._stop_data_plane()
            self._stop_data_plane = None


class CrlRefresher:
    """Rebuilds CRLs soon after revocations and well before nextUpdate."""

    def __init__(self, pki: Pki) -> None:
        self._pki = pki
        self._wanted = threading.Event()

    def revoked(self, published: Published) -> None:
        """A certificate was revoked (subscribed to the change feed): rebuild soon."""
        self._wanted.set()

    def run(self, stop: threading.Event) -> None:
        """Rebuild what is out of date, then wait for a revocation or the next check."""
        while not stop.is_set():
            try:
                self._pki.refresh_crls()
            except Exception:  # the loop must survive a bad moment (DB restart, ...)
                log.exception("CRL refresh failed; retrying")
            deadline = time.monotonic() + CRL_CHECK_SECONDS
            while not stop.is_set() and time.monotonic() < deadline:
                if self._wanted.wait(STOP_SECONDS):
                    break
            self._wanted.clear()
            stop.wait(CRL_SETTLE_SECONDS)  # a burst of revocations: one CRL


class ChangeDispatcher(ChangeFeed, Protocol):
    """The change feed as a job: delivers, and prunes the table."""

    def run(self, stop: threading.Event) -> None:
        """Deliver what any process commits until ``stop`` is set."""
        ...

    def prune(self, keep: timedelta, now: datetime) -> int:
        """Delete changes older than ``keep``."""
        ...

    def seconds_since_read(self) -> float:
        """How long ago the change table was last read."""
        ...


def together(*loops: Loop) -> Loop:
    """One loop that runs ``loops`` side by side, each on a thread of its own, until the
    stop (jobs that must run in the same process: one singleton lock for all of them)."""
    def run(stop: threading.Event) -> None:
        threads = [threading.Thread(target=loop, args=(stop,), daemon=True,
                                    name=getattr(loop, "__qualname__", "loop"))
                   for loop in loops]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run


class Waker:
    """A loop calling ``step`` at start, every ``every_seconds`` and soon after ``wake``
    (a change that may make work due: one pass for a burst of them)."""

    def __init__(self, what: str, step: Callable[[], object], every_seconds: float,
                 settle_seconds: float = 1.0) -> None:
        self._what = what
        self._step = step
        self._every = every_seconds
        self._settle = settle_seconds
        self._wanted = threading.Event()

    def wake(self, published: object = None) -> None:
        """Run a pass soon (subscribed to the change feed)."""
        self._wanted.set()

    def run(self, stop: threading.Event) -> None:
        """One pass now, then one per wake-up or ``every_seconds``, until ``stop``."""
        while not stop.is_set():
            self._wanted.clear()
            try:
                self._step()
            except Exception:  # the loop must survive a bad moment (DB restart, ...)
                log.exception("%s failed; retrying", self._what)
            idle(self._wanted, stop, self._every, STOP_SECONDS)
            stop.wait(self._settle if not stop.is_set() else 0)


def pruner(what: str, prune: Callable[[], object]) -> Loop:
    """A loop calling ``prune`` every ``PRUNE_SECONDS`` (``what`` names it in the log)."""
    def run(stop: threading.Event) -> None:
        while not stop.wait(PRUNE_SECONDS):
            try:
                prune()
            except Exception:  # a database hiccup must not end the loop
                log.exception("pruning %s failed; retrying", what)
    return run


def baseline_saver(save: Callable[[], None]) -> Loop:
    """A loop saving the detection baselines every ``BASELINE_SAVE_SECONDS``."""
    def run(stop: threading.Event) -> None:
        while not stop.wait(BASELINE_SAVE_SECONDS):
            try:
                save()
            except OSError as e:
                log.warning("saving detection baselines failed: %s", e)
    return run


def checkpoint_signer(writer: CheckpointWriter, every_records: int,
                      every_seconds: float) -> Loop:
    """A loop signing an audit checkpoint every N records and at least every minute (G7).

    The head is polled (one indexed read) rather than signalled by the appenders: the
    token path appends thousands of records a second and must not wait for a signature
    or a file write.
    """
    def run(stop: threading.Event) -> None:
        last_written = time.monotonic()
        pending = 1  # at start-up: anchor whatever was appended while nothing ran
        refused = False
        while True:
            due = time.monotonic() - last_written >= every_seconds
            # a chain that shrank is reported at once, then once a minute while it lasts
            if (pending >= every_records and not refused) or \
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
    return run


#: how often the whole register is rebuilt (a refresh follows every change in between)
RISK_REBUILD_SECONDS = 3600.0
#: after a failed update, a full rebuild follows this soon (not at once: no log storm)
RISK_RETRY_SECONDS = 60.0
#: how long device changes may gather into one refresh
RISK_SETTLE_SECONDS = 1.0
#: a full rebuild follows an import this long after its last batch (an import of many
#: batches is judged once, when it is done)
RISK_AFTER_IMPORT_SECONDS = 10.0


class RiskRefresher:
    """Keeps the risk register current: changed devices are judged again within a second
    or so, the whole register on a schedule, and acceptances that ran out count again (a
    singleton: the rebuild writes the register in full).

    A device's entries read its trust score, so a changed device is judged after the
    trust refresher scored it: that refresher hands over what it scored (``queue``) and
    its own ``TrustChanged`` (``refreshed``) is left to that hand-off. Judging on the
    change itself too judged each device twice, the first time with a stale score.
    """

    def __init__(self, register: RiskRegister, every_seconds: float = RISK_REBUILD_SECONDS
                 ) -> None:
        self._register = register
        self._every = every_seconds
        #: device -> as the trust refresher stored it (None: read it when judging)
        self._pending: dict[str, ScoredDevice | None] = {}
        self._lock = threading.Lock()
        #: how many device judgements the refreshes asked for (an import's: one a device)
        self.judged = 0
        self._wanted = threading.Event()
        #: when sightings were imported: the monotonic time a rebuild is due by
        self._rebuild_by = math.inf

    def changed(self, published: Published) -> None:
        """A finding or an explanation moved trust scores, or sightings were imported
        (subscribed to the change feed): queue the devices, or a rebuild, and return at
        once. A ``TrustChanged`` the trust refresher published is left to its hand-off."""
        change = published.change
        if isinstance(change, SightingsImported):
            with self._lock:
                self._rebuild_by = time.monotonic() + RISK_AFTER_IMPORT_SECONDS
            self._wanted.set()
        elif isinstance(change, TrustChanged) and not change.refreshed:
            self.queue(change.device_ids)

    def queue(self, device_ids: Sequence[str], devices: Mapping[str, Device] | None = None,
              scores: Mapping[str, TrustScore] | None = None) -> None:
        """Judge these devices at the next refresh (the trust refresher's hand-off: a
        device change, a revocation or a touched record, its score now stored, with the
        devices and scores as it stored them, which the register then need not read)."""
        if device_ids:
            devices, scores = devices or {}, scores or {}
            with self._lock:
                for device_id in device_ids:
                    device, score = devices.get(device_id), scores.get(device_id)
                    stored = None if device is None or score is None else (device, score)
                    # a device queued to be read stays so: only a read is never stale
                    if stored is None or self._pending.get(device_id, stored) is not None:
                        self._pending[device_id] = stored
            self._wanted.set()

    def queued(self) -> int:
        """How many devices wait to be judged."""
        with self._lock:
            return len(self._pending)

    def take(self) -> list[str]:
        """The devices queued since the last call."""
        return sorted(self.take_scored())

    def take_scored(self) -> dict[str, ScoredDevice | None]:
        """The devices queued since the last call, as the trust refresher stored them
        (None: to be read)."""
        with self._lock:
            taken, self._pending = self._pending, {}
        return taken

    def _idle(self, stop: threading.Event, seconds: float) -> None:
        """Wait until a change is queued, ``stop`` is set or ``seconds`` pass (stop is
        seen within ``STOP_SECONDS``: ``serve`` shuts down at once)."""
        idle(self._wanted, stop, seconds, STOP_SECONDS)

    def run(self, stop: threading.Event) -> None:
        """Rebuild now and every ``every_seconds``; refresh queued devices in between."""
        next_rebuild = time.monotonic()
        while not stop.is_set():
            try:
                with self._lock:
                    next_rebuild, self._rebuild_by = min(next_rebuild, self._rebuild_by), \
                        math.inf
                if time.monotonic() >= next_rebuild:
                    self.take()  # the rebuild judges them too
                    next_rebuild = time.monotonic() + self._every
                    self._register.rebuild()
                elif devices := self.take_scored():
                    self._register.refresh_devices(list(devices), {
                        d: stored for d, stored in devices.items() if stored is not None})
                    self.judged += len(devices)
                self._register.expire_acceptances()
            except Exception:  # the loop must survive a bad moment (DB restart, ...)
                log.exception("risk register update failed; a full rebuild follows")
                next_rebuild = min(next_rebuild, time.monotonic() + RISK_RETRY_SECONDS)
            self._idle(stop, min(STOP_SECONDS * 10, max(0.0, next_rebuild - time.monotonic())))
            self._wanted.clear()
            stop.wait(RISK_SETTLE_SECONDS if not stop.is_set() else 0)
