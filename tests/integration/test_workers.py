"""``serve --workers 2``: two processes on the same ports, one database, one truth."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from conftest import BACKENDS
from iotiam.testing import make_csr

from .conftest import serve_live
from .live_server import Server
from .relying_party import ocsp, ocsp_status

pytestmark = pytest.mark.integration

DEVICES = 12
CERTS_PER_DEVICE = 4


def children_of(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module", params=BACKENDS)
def two_workers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Server]:
    """``serve --workers 2``, shared by the module's tests: the kill -9 test starts it again
    (on two workers), so either test finds it as the other does."""
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"workers-{request.param}"),
                          serve_args=("--workers", "2"))


def test_two_workers_ok_share_the_work(two_workers: Server, openssl: str) -> None:
    server = two_workers
    assert server.process is not None
    assert len(children_of(server.process.pid)) == 1
    ids = [f"w-{i}" for i in range(DEVICES)]
    for device_id in ids:
        server.register(device_id)

    def issue(n: int) -> dict[str, str]:
        device_id = ids[n % DEVICES]
        # a connection per request: the kernel spreads them over both processes
        with server.api() as api:
            answer = api.post("/v1/certificates",
                              json={"device": device_id, "csr": make_csr(device_id).decode()})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    with ThreadPoolExecutor(8) as pool:
        issued = list(pool.map(issue, range(DEVICES * CERTS_PER_DEVICE)))

    serials = [int(cert["serial"], 16) for cert in issued]
    assert len(set(serials)) == len(serials)  # G1 across processes
    with server.api() as api:
        verify = api.get("/v1/audit/verify").json()
        assert verify["ok"] is True, verify
    # a revocation made through one process is seen by OCSP answered by either (G3)
    victim = issued[0]
    with server.api() as api:
        assert api.post(f"/v1/certificates/{victim['serial']}/revoke",
                        json={"reason": "keyCompromise"}).status_code == 200
    cert_file = server.work_dir / "victim.pem"
    cert_file.write_text(victim["pem"])
    for _ in range(6):
        assert ocsp_status(ocsp(openssl, server, cert_file), cert_file) == "revoked"
    assert x509.load_pem_x509_certificate(victim["pem"].encode()).serial_number == serials[0]


def test_two_workers_ok_kill_9_leaves_no_orphan(two_workers: Server) -> None:
    server = two_workers
    assert server.process is not None
    (child,) = children_of(server.process.pid)
    os.kill(server.process.pid, signal.SIGKILL)  # the first process only, not the group
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the second worker outlived the first"
    server.process = None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.http_url}/healthz", timeout=2)
    server.start()  # the ports are free again
    with server.api() as api:
        assert api.get("/v1/whoami").status_code == 200
