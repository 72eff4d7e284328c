"""An outside judge's tests of ``/readyz`` and ``/healthz``, from docs/deployment.md alone:
what a load balancer and an anonymous caller on the plain-HTTP port must get."""

from __future__ import annotations

import pytest

from conftest import Installation
from iotiam.readiness import Draining, Status
from iotiam.serving import background_jobs, readiness_checks


def _registered(installation: Installation) -> Draining:
    services = installation.services
    draining = Draining()
    readiness_checks(services, background_jobs(services, first_process=True), draining)
    return draining


def _failing(message: str) -> Status:
    raise RuntimeError(message)


def test_readyz_ok_head_answers_like_get(installation: Installation) -> None:
    _registered(installation)
    answer = installation.public().head("/readyz")
    assert answer.status_code == 200
    assert answer.content == b""


def test_readyz_fail_200_is_not_cached(installation: Installation) -> None:
    _registered(installation)
    answer = installation.public().get("/readyz")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_readyz_fail_other_methods_are_405_problems(
        installation: Installation, method: str) -> None:
    _registered(installation)
    for path in ("/readyz", "/healthz"):
        answer = installation.public().request(method, path)
        assert answer.status_code == 405, (path, answer.status_code)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "GET" in answer.headers.get("allow", ""), (path, dict(answer.headers))


def test_readyz_fail_a_check_that_raises_is_a_503_problem(installation: Installation) -> None:
    _registered(installation)
    installation.services.readiness.add("judge", lambda: _failing("boom"))
    answer = installation.public().get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert "judge" in body["detail"]
    assert body["checks"]["judge"]["ready"] is False
    assert body["checks"]["database"]["ready"] is True
    assert answer.headers["cache-control"] == "no-store"


def test_readyz_fail_anonymous_caller_never_reads_an_exception_text(
        installation: Installation) -> None:
    _registered(installation)
    secret = "postgresql://iotiam:s3cret-pass@10.0.0.5/iotiam"
    installation.services.readiness.add("judge", lambda: _failing(f"cannot reach {secret}"))
    answer = installation.public().get("/readyz")
    assert answer.status_code == 503
    assert "s3cret-pass" not in answer.text


def test_readyz_fail_draining_and_a_failing_check_both_named(
        installation: Installation) -> None:
    draining = _registered(installation)
    installation.services.readiness.add("judge", lambda: Status(False, "judge says no", {}))
    draining.begin()
    answer = installation.public().get("/readyz")
    assert answer.status_code == 503
    detail = answer.json()["detail"]
    assert "draining" in detail and "judge" in detail, detail


def test_healthz_ok_on_both_ports(installation: Installation) -> None:
    _registered(installation)
    for client in (installation.public(), installation.api()):
        answer = client.get("/healthz")
        assert answer.status_code == 200, answer.text


def test_healthz_fail_answer_is_not_cached(installation: Installation) -> None:
    _registered(installation)
    answer = installation.public().get("/healthz")
    assert answer.headers.get("cache-control") == "no-store", dict(answer.headers)


def test_readyz_fail_query_string_garbage_is_ignored(installation: Installation) -> None:
    _registered(installation)
    answer = installation.public().get("/readyz?verbose=%00&x=" + "a" * 5000)
    assert answer.status_code == 200, answer.text
