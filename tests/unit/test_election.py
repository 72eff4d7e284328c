"""The elector of singleton jobs: a job runs only while its lock is held, stops before
the process campaigns again after a loss, and ends before its lock is released."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from iotiam import election
from iotiam.background import Job
from iotiam.election import Elector, FixedLeadership


@dataclass
class ScriptedLeadership:
    """Locks whose answers the test sets, with a log of what the elector did."""

    free: set[str] = field(default_factory=set)
    held: bool = True
    takeover_seconds: float = 0.0
    calls: list[str] = field(default_factory=list)

    def acquire(self, job: str) -> float | None:
        if job not in self.free:
            return None
        self.free.discard(job)
        return self.takeover_seconds

    def release(self, job: str) -> None:
        self.calls.append(f"release {job}")

    def check(self) -> bool:
        held, self.held = self.held, True
        return held

    def close(self) -> None:
        self.calls.append("close")


class Loop:
    """A job loop that says when it runs and when it ended."""

    def __init__(self, log: list[str], name: str, *, obeys_stop: bool = True) -> None:
        self.log, self.name, self.obeys_stop = log, name, obeys_stop
        self.running = threading.Event()
        self.release = threading.Event()

    def __call__(self, stop: threading.Event) -> None:
        self.running.set()
        (stop if self.obeys_stop else self.release).wait()
        self.running.clear()
        self.log.append(f"{self.name} ended")


def _elector(leadership: ScriptedLeadership, *loops: Loop) -> Elector:
    return Elector(leadership, [Job(loop.name, loop, singleton=True) for loop in loops])


def test_elector_ok_runs_only_the_jobs_whose_lock_it_holds() -> None:
    log: list[str] = []
    a, b = Loop(log, "a"), Loop(log, "b")
    leadership = ScriptedLeadership(free={"a"})
    elector = _elector(leadership, a, b)
    elector.step()
    assert a.running.wait(5)
    assert elector.leading() == ["a"]
    assert not b.running.is_set()
    leadership.free.add("b")  # the other process gave b up
    elector.step()
    assert b.running.wait(5)
    assert elector.leading() == ["a", "b"]
    elector.resign()


def test_elector_ok_lost_lock_stops_the_job_before_it_campaigns_again() -> None:
    log: list[str] = []
    a = Loop(log, "a")
    leadership = ScriptedLeadership(free={"a"})
    elector = _elector(leadership, a)
    elector.step()
    assert a.running.wait(5)
    leadership.held = False  # the lock's connection dropped
    leadership.free.add("a")  # and nobody else took it yet
    elector.step()
    assert log == ["a ended"]  # ended within the step, not later
    assert elector.leading() == []
    assert "release a" not in leadership.calls  # a lost lock is not released
    elector.step()  # next pass: campaigns again and wins
    assert a.running.wait(5)
    assert elector.terms_begun == 2
    elector.resign()


def test_elector_ok_winner_waits_the_takeover_time_before_starting() -> None:
    log: list[str] = []
    a = Loop(log, "a")
    leadership = ScriptedLeadership(free={"a"}, takeover_seconds=3600)
    elector = _elector(leadership, a)
    elector.step()
    elector.step()
    assert not a.running.is_set()
    assert elector.leading() == []
    elector.resign()
    assert leadership.calls == ["release a", "close"]


def test_elector_ok_resign_ends_every_job_then_releases_its_lock() -> None:
    log: list[str] = []
    a = Loop(log, "a")
    leadership = ScriptedLeadership(free={"a"})
    leadership_log = leadership.calls
    elector = Elector(leadership, [Job("a", a, singleton=True,
                                       at_exit=lambda: log.append("a at exit"))])
    elector.step()
    assert a.running.wait(5)
    elector.resign()
    assert log == ["a ended", "a at exit"]
    assert leadership_log == ["release a", "close"]


def test_elector_fail_job_that_ignores_stop_keeps_its_lock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A job still running when its term ends keeps the lock until the process exits:
    releasing it would let another replica run a second copy."""
    monkeypatch.setattr(election, "JOIN_SECONDS", 0.05)
    log: list[str] = []
    stubborn = Loop(log, "a", obeys_stop=False)
    leadership = ScriptedLeadership(free={"a"})
    elector = _elector(leadership, stubborn)
    elector.step()
    assert stubborn.running.wait(5)
    elector.resign()
    assert leadership.calls == []  # neither released nor closed
    stubborn.release.set()


def test_elector_ok_run_campaigns_until_stopped() -> None:
    log: list[str] = []
    a = Loop(log, "a")
    leadership = ScriptedLeadership(free={"a"})
    elector = Elector(leadership, [Job("a", a, singleton=True)], check_seconds=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=elector.run, args=(stop,))
    thread.start()
    assert a.running.wait(5)
    stop.set()
    thread.join(10)
    assert log == ["a ended"]
    assert leadership.calls == ["release a", "close"]


def test_fixed_leadership_ok_first_process_leads_the_others_never() -> None:
    first, other = FixedLeadership(leads=True), FixedLeadership(leads=False)
    assert first.acquire("crl-refresher") == 0 and first.check()
    assert other.acquire("crl-refresher") is None


def test_elector_ok_campaign_failure_retried_at_the_next_pass(
        caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    a = Loop(log, "a")
    leadership = ScriptedLeadership(free={"a"})
    down = True

    def acquire(job: str) -> bool:
        if down:
            raise OSError("connection refused")
        return ScriptedLeadership.acquire(leadership, job)

    leadership.acquire = acquire  # type: ignore[method-assign]
    elector = _elector(leadership, a)
    elector.step()
    elector.step()
    assert elector.leading() == []
    # said once for the outage, not at every pass
    assert sum("campaigning" in r.message for r in caplog.records) == 1
    down = False
    elector.step()
    assert a.running.wait(5)
    elector.resign()


def test_elector_ok_check_that_raises_counts_as_lost_and_lets_every_lock_go() -> None:
    log: list[str] = []
    a = Loop(log, "a")
    leadership = ScriptedLeadership(free={"a"})
    elector = _elector(leadership, a)
    elector.step()
    assert a.running.wait(5)

    def broken() -> bool:
        raise RuntimeError("driver bug")

    leadership.check = broken  # type: ignore[method-assign]
    elector.step()
    assert log == ["a ended"] and elector.leading() == []
    assert leadership.calls == ["close"]  # no lock left held by a session we gave up on
