"""What ``GET /readyz`` answers: whether this replica should be sent requests.

Readiness is a registry of named checks, each cheap (``/readyz`` is polled by load
balancers every few seconds) and each answering a ``Status``: the database answers, the
change feed reads, the managed broker runs, which singleton jobs this process leads,
whether it is draining. ``serving.readiness_checks`` registers them; another part of
``serve`` (an event stream, say) adds its own with ``Readiness.add``. A check that
raises counts as not ready; its error's type is the detail (its text, which may name
hosts or URLs, goes to the log only).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("iotiam.server")


@dataclass(frozen=True)
class Status:
    """One check's answer."""

    ready: bool
    detail: str
    #: what a load balancer or an operator may want besides (e.g. the jobs led)
    facts: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """Every check's answer; ready when each one is."""

    checks: Mapping[str, Status]

    @property
    def ready(self) -> bool:
        """Whether every check passed."""
        return all(status.ready for status in self.checks.values())

    def not_ready(self) -> list[str]:
        """``"name: detail"`` of each check that failed."""
        return [f"{name}: {s.detail}" for name, s in self.checks.items() if not s.ready]


Check = Callable[[], Status]


class Readiness:
    """Named readiness checks, run in the order they were added."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def add(self, name: str, check: Check) -> None:
        """Register (or replace) the check called ``name``."""
        with self._lock:
            self._checks[name] = check

    def report(self) -> Report:
        """Run every check."""
        with self._lock:
            checks = list(self._checks.items())
        answers: dict[str, Status] = {}
        for name, check in checks:
            try:
                answers[name] = check()
            except Exception as e:  # a failing check is an answer, not an outage of /readyz
                # /readyz answers anyone: the error's text (hosts, URLs) stays in the log
                log.warning("readiness check %s failed: %s", name, e)
                answers[name] = Status(False, f"the check failed ({type(e).__name__}; "
                                              "the server's log says why)")
        return Report(answers)


class Draining:
    """The check that fails once ``serve`` was told to stop (SIGTERM): load balancers
    stop sending requests while in-flight ones finish."""

    def __init__(self) -> None:
        self._since = threading.Event()

    def begin(self) -> None:
        """``serve`` is stopping."""
        self._since.set()

    def __call__(self) -> Status:
        """Not ready once draining."""
        if self._since.is_set():
            return Status(False, "this replica is shutting down")
        return Status(True, "accepting requests")
