"""Singleton jobs across processes and replicas: each runs only where its lock is held.

A job that must run once in the whole installation (the CRL refresher, audit
checkpoints, trust scores, the risk register, pruning the change table) declares it
(``Job.singleton``); the ``Elector`` of every process campaigns for each such job's
lock and runs the job only while it holds it. Two ways to hold a lock
(``Leadership``), chosen by ``serving.background_jobs``:

* PostgreSQL (``storage/pg_leadership.py``): a session-level advisory lock per job on a
  connection of its own. A process that dies or loses that connection loses every
  lock at once; another replica's elector takes it at its next campaign.
* SQLite (one host, ``FixedLeadership``): the first process of ``serve`` leads every
  job, as before replicas existed.

A term ends when the lock is lost (the elector notices within ``CHECK_SECONDS`` and
stops the job before it campaigns again) or when ``serve`` stops (the job ends first,
then the lock is released, so another replica takes over at its next campaign rather
than after a timeout). A process that wins a lock after a leader whose term did not end
cleanly waits before it starts the job (``Leadership.acquire`` says how long): a leader
that lost its connection (rather than died) needs that long to notice and stop, so the
two never run at once. A lock released by a leader that ended its job first (``serve``
stopping) is taken up at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("iotiam.server")

#: how often held locks are checked and free ones campaigned for
CHECK_SECONDS = 0.5
#: how long a job that is told to stop may take before its lock is kept till exit
JOIN_SECONDS = 10.0


class SingletonJob(Protocol):
    """What the elector runs (``background.Job`` with ``singleton`` set)."""

    @property
    def name(self) -> str:
        """The job's name: its lock's name too."""
        ...

    @property
    def run(self) -> Callable[[threading.Event], None]:
        """The job's loop, ended by setting its argument."""
        ...

    @property
    def at_exit(self) -> Callable[[], None] | None:
        """Run once after a term's loop ended."""
        ...


class Leadership(Protocol):
    """Locks that say which process runs each singleton job."""

    def acquire(self, job: str) -> float | None:
        """Take the job's lock if no process holds it. ``None``: another process does;
        else how long to wait before starting the job — the time a leader that lost the
        lock without ending its term needs to notice (``CHECK_SECONDS``) and stop, or 0
        when the last term ended cleanly."""
        ...

    def release(self, job: str) -> None:
        """Give the job's lock up: its job has ended, the next winner may start at once."""
        ...

    def check(self) -> bool:
        """Whether every lock taken since the last check that failed is still held."""
        ...

    def close(self) -> None:
        """Give every lock up."""
        ...


class FixedLeadership:
    """One host (SQLite): the first process leads every singleton job, the others none."""

    def __init__(self, *, leads: bool) -> None:
        self._leads = leads

    def acquire(self, job: str) -> float | None:
        """Always and at once (first process), or never (the others)."""
        return 0.0 if self._leads else None

    def release(self, job: str) -> None:
        """Nothing to release."""

    def check(self) -> bool:
        """A lock nobody else can take is never lost."""
        return True

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class _Term:
    job: SingletonJob
    #: monotonic time the job starts (after the wait ``Leadership.acquire`` asked for)
    starts_at: float
    stop: threading.Event
    thread: threading.Thread | None = None


class Elector:
    """Runs each singleton job only while this process holds that job's lock."""

    def __init__(self, leadership: Leadership, jobs: Sequence[SingletonJob], *,
                 check_seconds: float = CHECK_SECONDS) -> None:
        self._leadership = leadership
        self._jobs = list(jobs)
        self._check_seconds = check_seconds
        self._terms: dict[str, _Term] = {}
        self._lock = threading.Lock()
        #: how many terms this process began
        self.terms_begun = 0
        self._failing = False

    def leading(self) -> list[str]:
        """The jobs this process runs now."""
        with self._lock:
            return sorted(name for name, term in self._terms.items() if term.thread)

    def run(self, stop: threading.Event) -> None:
        """Campaign, run what is won, stop what is lost; at ``stop``, end every job and
        then give its lock up."""
        try:
            while not stop.is_set():
                self.step()
                stop.wait(self._check_seconds)
        finally:
            self.resign()

    def step(self) -> None:
        """One pass: stop every job if a lock was lost, then take free locks and start
        the jobs whose takeover wait is over."""
        try:
            held = self._leadership.check()
        except Exception:  # as good as lost: let every lock go, so none is held twice
            log.exception("checking singleton leadership failed")
            held = False
            self._close_quietly()
        if not held and self._terms:
            log.warning("lost leadership of %s; stopping them", ", ".join(sorted(self._terms)))
            self._end_terms(release=False)
        now = time.monotonic()
        for job in self._jobs:
            term = self._terms.get(job.name)
            if term is None and held:
                try:
                    wait = self._leadership.acquire(job.name)
                except Exception as e:  # the next pass tries again
                    if not self._failing:  # once per outage, not twice a second
                        log.warning("campaigning for singleton jobs failed; retrying: %s", e)
                    self._failing = True
                    return
                self._failing = False
                if wait is not None:
                    term = _Term(job, now + wait, threading.Event())
                    with self._lock:
                        self._terms[job.name] = term
            if term is not None and term.thread is None and now >= term.starts_at:
                self._begin(term)

    def _begin(self, term: _Term) -> None:
        log.info("leading singleton job %s", term.job.name)
        thread = threading.Thread(target=term.job.run, args=(term.stop,), daemon=True,
                                  name=term.job.name)
        with self._lock:
            term.thread = thread
            self.terms_begun += 1
        thread.start()

    def resign(self) -> None:
        """End every job this process leads, then release its locks."""
        if not self._end_terms(release=True):
            return  # a job still runs: its lock goes only with the process
        self._close_quietly()

    def _close_quietly(self) -> None:
        try:
            self._leadership.close()
        except Exception:  # the session's end (the process's at the latest) frees them
            log.exception("releasing singleton locks failed")

    def _end_terms(self, *, release: bool) -> bool:
        """Stop every job (bounded wait); whether all of them ended."""
        with self._lock:
            terms, self._terms = self._terms, {}
        for term in terms.values():
            term.stop.set()
        deadline = time.monotonic() + JOIN_SECONDS
        ended = True
        for name, term in terms.items():
            if term.thread is not None:
                term.thread.join(timeout=max(0.0, deadline - time.monotonic()))
                if term.thread.is_alive():
                    # its lock stays held until the process exits: no second copy starts
                    log.warning("singleton job %s did not stop; keeping its lock", name)
                    ended = False
                    continue
            if term.job.at_exit is not None and term.thread is not None:
                term.job.at_exit()
            if release:
                try:
                    self._leadership.release(name)
                except Exception:
                    log.exception("releasing the lock of %s failed", name)
        return ended
