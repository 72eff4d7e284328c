"""A real ``iotiam init`` + ``iotiam serve`` in a throw-away data directory, on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import (
    RunConfig,
    clean_environment,
    import_rows,
    process_cpu_seconds,
    scratch_dir,
    throwaway_database,
)
from iotiam.testing import free_ports, join_replica

STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0
_LOG_TAIL_CHARS = 2000


@dataclass(frozen=True)
class RunningServer:
    """Where a started server listens and how to talk to it."""

    data_dir: Path
    api_url: str
    http_url: str
    token: str
    ca_file: Path
    pid: int
    #: the server's PostgreSQL database (None: SQLite in the data directory)
    database_url: str | None = None
    #: the managed broker's mTLS, PSK and admin ports, when it runs
    broker_ports: tuple[int, int, int] | None = None

    def tls_context(self) -> ssl.SSLContext:
        """Trust exactly the installation's root (``<data-dir>/tls/ca.pem``)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def admin_headers(self) -> dict[str, str]:
        """The bootstrap admin token from ``profile.json``."""
        return {"Authorization": f"Bearer {self.token}"}

    def cpu_seconds(self) -> float | None:
        """CPU the server process has used so far (all threads)."""
        return process_cpu_seconds(self.pid)


def iotiam_command() -> list[str]:
    """The ``iotiam`` console script of this interpreter's environment."""
    script = shutil.which("iotiam", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "iotiam.cli.main"]


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
    except OSError:
        return ""


@contextmanager
def running_server(config: RunConfig, label: str, *, workers: int = 1,
                   broker_ports: tuple[int, int, int] | None = None,
                   replica_of: RunningServer | None = None,
                   init_args: Sequence[str] = (),
                   extra_env: Mapping[str, str] | None = None) -> Iterator[RunningServer]:
    """Init a data directory on free ports, start ``iotiam serve``, stop it afterwards.

    The managed broker runs only when ``broker_ports`` (mTLS, PSK, admin) are given.
    ``replica_of``: a second replica of that server's installation — its database and
    its secrets, as another host gets them (docs/deployment.md). ``init_args`` and
    ``extra_env`` go to ``init`` and ``serve`` (e.g. ``--ca-key`` and a SoftHSM2 token's
    environment: docs/hsm.md; ``--broker-auth plugin``).
    """
    broker_options = ["--no-broker"] if broker_ports is None else [
        "--broker-port", str(broker_ports[0]), "--broker-psk-port", str(broker_ports[1]),
        "--broker-admin-port", str(broker_ports[2])]
    with scratch_dir(label) as root, _database(config, replica_of) as database_url:
        data_dir = root / "data"
        if replica_of is not None:
            join_replica(replica_of.data_dir, data_dir)
        env = {**clean_environment(), **(extra_env or {})}
        if database_url:
            env["IOTIAM_DATABASE_URL"] = database_url
        port, http_port = free_ports(2)
        cli = [*iotiam_command(), "--data-dir", str(data_dir)]
        init = subprocess.run(
            [*cli, "init", "--host", "127.0.0.1", "--port", str(port),
             "--http-port", str(http_port), *broker_options, *init_args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        if init.returncode != 0:
            raise RuntimeError(f"iotiam init failed: {init.stderr.strip() or init.stdout.strip()}")
        profile = json.loads((data_dir / "profile.json").read_text())
        log_path = root / "serve.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*cli, "serve", "--log-level", "warning", "--workers", str(workers)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            server = RunningServer(
                data_dir=data_dir,
                api_url=f"https://127.0.0.1:{port}",
                http_url=f"http://127.0.0.1:{http_port}",
                token=profile["token"],
                ca_file=data_dir / "tls" / "ca.pem",
                pid=process.pid,
                database_url=database_url,
                broker_ports=broker_ports,
            )
            _wait_until_ready(server, process, log_path)
            yield server
        finally:
            stop_process(process)


@contextmanager
def _database(config: RunConfig, replica_of: RunningServer | None) -> Iterator[str | None]:
    if replica_of is None:
        with throwaway_database(config) as database_url:
            yield database_url
    else:
        yield replica_of.database_url


def _wait_until_ready(server: RunningServer, process: subprocess.Popen[bytes],
                      log_path: Path) -> None:
    def ready(client: httpx.Client) -> str | None:
        public = client.get(f"{server.http_url}/healthz")
        api = client.get(f"{server.api_url}/v1/ca", headers=server.admin_headers())
        if public.status_code == 200 and api.status_code == 200:
            return None
        return f"healthz {public.status_code}, /v1/ca {api.status_code}"

    wait_until_answering("iotiam serve", process, log_path, server.tls_context(), ready)


def wait_until_answering(name: str, process: subprocess.Popen[bytes], log_path: Path,
                         tls: ssl.SSLContext, ready: Callable[[httpx.Client], str | None],
                         seconds: float = STARTUP_SECONDS) -> None:
    """Ask ``ready`` (None: ready, else what it saw) every 0.1 s until it is, failing
    with the log's tail when ``process`` exits or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    last_error = "no answer yet"
    with httpx.Client(timeout=2.0, verify=tls) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: "
                                   f"{_log_tail(log_path)}")
            try:
                if (seen := ready(client)) is None:
                    return
                last_error = seen
            except httpx.TransportError as e:
                last_error = str(e)
            time.sleep(0.1)
    raise RuntimeError(f"{name} not ready after {seconds:.0f} s ({last_error}): "
                       f"{_log_tail(log_path)}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process``, then kill it if it has not ended in ``STOP_SECONDS``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)


# -- API calls the benchmarks share ------------------------------------------------------


def api_client(server: RunningServer, *, connections: int) -> httpx.AsyncClient:
    """A keep-alive HTTPS client of the admin API holding up to ``connections`` sockets."""
    return httpx.AsyncClient(
        base_url=server.api_url,
        verify=server.tls_context(),
        headers=server.admin_headers(),
        limits=httpx.Limits(max_connections=connections,
                            max_keepalive_connections=connections),
        timeout=30.0,
    )


def import_devices(server: RunningServer, ids: Sequence[str], chunk: int = 500) -> None:
    """Register devices through ``POST /v1/devices/import`` in chunks."""
    rows = [{"row": n, "data": data} for n, data in import_rows(ids)]
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(),
                      headers=server.admin_headers(), timeout=120.0) as client:
        for start in range(0, len(rows), chunk):
            answer = client.post("/v1/devices/import", json={"rows": rows[start:start + chunk]})
            body: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
            if answer.status_code != 200 or body.get("failed"):
                raise RuntimeError(f"device import failed: {answer.status_code} "
                                   f"{answer.text[:300]}")


#: ``POST /v1/claims`` takes at most this many devices per request
CLAIM_BATCH = 1000


def create_claims(server: RunningServer, ids: Sequence[str], *, ttl_seconds: int = 3600
                  ) -> dict[str, str]:
    """One-time claim tokens through ``POST /v1/claims`` in batches: device id -> token."""
    tokens: dict[str, str] = {}
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(),
                      headers=server.admin_headers(), timeout=120.0) as client:
        for start in range(0, len(ids), CLAIM_BATCH):
            answer = client.post("/v1/claims", json={
                "devices": list(ids[start:start + CLAIM_BATCH]), "ttl_seconds": ttl_seconds})
            if answer.status_code != 201:
                raise RuntimeError(f"creating claims failed: {answer.status_code} "
                                   f"{answer.text[:300]}")
            tokens.update((item["device"], item["token"]) for item in answer.json()["items"])
    return tokens


async def issue_via_api(client: httpx.AsyncClient, device_id: str, csr_pem: str
                        ) -> dict[str, Any]:
    """``POST /v1/certificates``; anything but 201 stops the benchmark."""
    answer = await client.post("/v1/certificates", json={"device": device_id, "csr": csr_pem})
    if answer.status_code != 201:
        raise RuntimeError(f"issuing for {device_id} answered {answer.status_code}: "
                           f"{answer.text[:300]}")
    body: dict[str, Any] = answer.json()
    return body
