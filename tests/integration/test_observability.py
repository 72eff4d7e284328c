"""A live ``serve`` with two workers and JSON logs: ``/metrics`` sums both processes,
and every log line is one JSON object."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from iotiam.testing import make_csr

from .conftest import serve_live
from .live_server import Server

pytestmark = pytest.mark.integration

CERTIFICATES = 12


@pytest.fixture(scope="module")
def json_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers (IOTIAM_WORKERS) logging JSON (IOTIAM_LOG_FORMAT)."""
    yield from serve_live("sqlite", tmp_path_factory.mktemp("observability"),
                          {"IOTIAM_WORKERS": "2", "IOTIAM_LOG_FORMAT": "json"})


def scrape(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """One scrape on a new connection (any worker may answer it)."""
    answer = httpx.get(f"{server.http_url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples}


def pids_with_files(metrics_dir: Path, prefix: str) -> set[str]:
    """The processes that wrote values of this kind (``histogram_<pid>.db``)."""
    return {f.stem.rpartition("_")[2] for f in metrics_dir.glob(f"{prefix}_*.db")}


def test_workers_ok_metrics_summed_whichever_worker_answers(json_workers: Server) -> None:
    server = json_workers
    server.register("m-1")
    for _ in range(CERTIFICATES):
        with server.api() as api:  # a connection each: the kernel spreads them
            answer = api.post("/v1/certificates",
                              json={"device": "m-1", "csr": make_csr("m-1").decode()})
            assert answer.status_code == 201, answer.text
    issued = ("iotiam_issuance_total",
              frozenset({("kind", "certificate"), ("outcome", "success")}))
    posts = ("iotiam_http_request_duration_seconds_count", frozenset({
        ("listener", "api"), ("method", "POST"), ("route", "/v1/certificates"),
        ("status", "2xx")}))
    # both processes counted requests, and every scrape (on either) sums them once each
    # has added its latest requests to the shared files (its sampler, every second)
    time.sleep(1.5)
    assert len(pids_with_files(server.data_dir / "metrics", "histogram")) == 2
    for _ in range(6):
        samples = scrape(server)
        assert samples[issued] == CERTIFICATES
        assert samples[posts] == CERTIFICATES
    # each process reports the singleton jobs it leads: on SQLite the first leads all
    leaders: dict[str, dict[str, float]] = {}
    for (name, labels), value in scrape(server).items():
        if name == "iotiam_singleton_leader":
            leaders.setdefault(dict(labels)["job"], {})[dict(labels)["pid"]] = value
    assert set(leaders) >= {"crl-refresher", "audit-checkpoints", "trust-and-risk"}
    for job, by_process in leaders.items():
        assert sorted(by_process.values()) == [0.0, 1.0], (job, by_process)


def test_workers_ok_json_log_lines(json_workers: Server) -> None:
    server = json_workers
    # a warning from the server's own code and one from uvicorn's (an invalid request)
    with httpx.Client(base_url=server.http_url) as client:
        client.get("/healthz")
    import socket
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        sock.recv(1024)
    lines = [line for line in server.log_text().splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"ts", "level", "logger", "message"} <= set(record), record
    loggers = {record["logger"] for record in records}
    assert "iotiam.server" in loggers, loggers
    assert any(name.startswith("uvicorn") for name in loggers), loggers
