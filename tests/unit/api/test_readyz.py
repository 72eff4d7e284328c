"""``GET /readyz``: 200 while every registered check passes, else a 503 problem naming
what is not ready; checks are a registry another part of ``serve`` can add to."""

from __future__ import annotations

from expect import assert_problem

from conftest import Installation
from iotiam.readiness import Draining, Status
from iotiam.serving import background_jobs, readiness_checks


def _registered(installation: Installation) -> Draining:
    services = installation.services
    draining = Draining()
    readiness_checks(services, background_jobs(services, first_process=True), draining)
    return draining


def test_readyz_ok_every_check_answers(installation: Installation) -> None:
    _registered(installation)
    answer = installation.public().get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert list(body["checks"]) == ["draining", "database", "change-feed", "singletons"]
    assert all(check["ready"] for check in body["checks"].values())
    assert body["checks"]["singletons"]["leading"] == []  # the jobs were not started
    assert body["checks"]["change-feed"]["seconds_since_read"] >= 0


def test_readyz_fail_draining_after_sigterm(installation: Installation) -> None:
    draining = _registered(installation)
    draining.begin()
    answer = installation.public().get("/readyz")
    assert_problem(answer, 503)
    assert answer.json()["detail"] == "draining: this replica is shutting down"
    assert answer.json()["checks"]["database"]["ready"] is True
    assert answer.headers["cache-control"] == "no-store"


def test_readyz_fail_a_check_added_later_that_fails_or_raises(
        installation: Installation) -> None:
    _registered(installation)
    readiness = installation.services.readiness
    readiness.add("stream", lambda: Status(False, "no connection to nats"))

    def broken() -> Status:
        raise OSError("refused")

    readiness.add("broken", broken)
    answer = installation.public().get("/readyz")
    assert_problem(answer, 503)
    assert answer.json()["detail"] == (
        "stream: no connection to nats; "
        "broken: the check failed (OSError; the server's log says why)")


def test_readyz_ok_nothing_registered_is_ready(installation: Installation) -> None:
    """An app not run by ``serve`` (tests, tools) has no checks and is ready."""
    assert installation.public().get("/readyz").status_code == 200
