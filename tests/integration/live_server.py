"""``iotiam init`` + ``iotiam serve`` as a subprocess, and the ways tests talk to it."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from iotiam.testing import free_ports, make_csr, make_key, require_binary

STARTUP_SECONDS = 30.0
STOP_SECONDS = 20.0  # a loaded 2-core machine: paho threads wind down in ~1 s each
CLI_SECONDS = 60.0
PEM_END = "-----END CERTIFICATE-----\n"


def venv_tool(name: str) -> str:
    """An executable installed next to this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    return require_binary(name)


class CliResult(NamedTuple):
    """What one CLI invocation did."""

    rc: int
    out: str
    err: str


class PortTaken(Exception):
    """``serve`` could not bind: another process grabbed a port between pick and bind."""


@dataclass
class Server:
    """An initialised data directory and (while started) the ``iotiam serve`` process."""

    backend: str
    data_dir: Path
    work_dir: Path
    database_url: str | None
    port: int
    http_port: int
    executable: str
    env: dict[str, str] = field(default_factory=dict)
    #: extra ``serve`` options, e.g. ``("--workers", "2")``
    serve_args: tuple[str, ...] = ()
    #: extra ``init`` options, e.g. ``("--ca-key", "pkcs11:...")``
    init_args: tuple[str, ...] = ()
    #: (mTLS, PSK, admin) ports of a managed Mosquitto; None: the data plane is off
    broker_ports: tuple[int, int, int] | None = None
    #: "managed" (serve runs Mosquitto) or "external" (serve drives one at the admin port)
    broker_mode: str = "managed"
    #: another replica leads the singleton jobs: start-up does not wait to lead some
    follower: bool = False
    process: subprocess.Popen[bytes] | None = None
    _log_offset: int = 0

    # -- addresses and files -----------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The HTTPS admin API."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The plain-HTTP endpoints (OCSP, CRL, CA certificates)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go."""
        return self.work_dir / "serve.log"

    @property
    def root_pem(self) -> Path:
        """The root CA certificate, as fetched from the running server."""
        return self.work_dir / "root.pem"

    @property
    def issuing_pem(self) -> Path:
        """The issuing CA certificate, as fetched from the running server."""
        return self.work_dir / "issuing.pem"

    @property
    def chain_pem(self) -> Path:
        """Issuing CA then root (``/ca/chain.pem``)."""
        return self.work_dir / "chain.pem"

    @property
    def tls_ca_file(self) -> Path:
        """The CA file the profile tells clients to trust for the HTTPS API."""
        return Path(self.profile()["ca_file"])

    def profile(self) -> dict[str, Any]:
        """The profile ``init`` left (URL, admin token, CA file)."""
        profile: dict[str, Any] = json.loads((self.data_dir / "profile.json").read_text())
        return profile

    @property
    def token(self) -> str:
        """The bootstrap admin token."""
        return str(self.profile()["token"])

    # -- clients -----------------------------------------------------------------------

    def cli(self, *args: str | Path, check: bool = True, timeout: float = CLI_SECONDS
            ) -> CliResult:
        """Run ``iotiam ARGS`` as an operator would (the profile found via IOTIAM_DATA_DIR)."""
        proc = subprocess.run(
            [self.executable, *map(str, args)], env=self.env, cwd=self.work_dir,
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout, f"traceback from {args}: {result}"
        if check and proc.returncode != 0:
            raise AssertionError(f"`iotiam {' '.join(map(str, args))}` exited "
                                 f"{proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return result

    def api(self, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """An httpx client of the admin API, trusting the profile's CA file."""
        return httpx.Client(base_url=self.api_url, verify=self.tls_context(),
                            headers={"Authorization": f"Bearer {token or self.token}"},
                            timeout=timeout)

    def tls_context(self) -> ssl.SSLContext:
        """Trust exactly the CA the profile names for the HTTPS API."""
        return ssl.create_default_context(cafile=str(self.tls_ca_file))

    def register(self, device_id: str, device_type: str = "sensor", **fields: Any) -> None:
        """Register a device through the API (quicker than the CLI for set-up)."""
        with self.api() as api:
            answer = api.post("/v1/devices", json={"id": device_id, "type": device_type,
                                                   **fields})
        assert answer.status_code == 201, answer.text

    def certify(self, device_id: str, key: ec.EllipticCurvePrivateKey | None = None
                ) -> tuple[Path, Path, str]:
        """A certificate for the registered ``device_id`` on ``key`` (a new one when
        None), issued through the API: its file, its key's file and its serial."""
        key = key or make_key()
        with self.api() as api:
            answer = api.post("/v1/certificates", json={
                "device": device_id, "csr": make_csr(device_id, key=key).decode()})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        cert = self.work_dir / f"{device_id}-{body['serial']}.pem"
        key_file = self.work_dir / f"{device_id}-{body['serial']}.key"
        cert.write_text(body["pem"])
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert, key_file, body["serial"]

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one SQL statement against the server's database (out of band)."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'iotiam.db'}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    # -- lifecycle ---------------------------------------------------------------------

    def init(self, *, check: bool = True) -> CliResult:
        """``iotiam --data-dir D init --port P --http-port Q``."""
        return self.cli("--data-dir", self.data_dir, "init", "--port", str(self.port),
                        "--http-port", str(self.http_port), *self.broker_options(),
                        *self.init_args, check=check)

    def broker_options(self) -> list[str]:
        """``init`` options for the data plane: off unless broker ports were chosen."""
        if self.broker_ports is None:
            return ["--no-broker"]
        mtls, psk, admin = self.broker_ports
        return ["--broker", self.broker_mode, "--broker-port", str(mtls),
                "--broker-psk-port", str(psk), "--broker-admin-port", str(admin)]

    def start(self) -> None:
        """Start ``iotiam serve`` in its own process group and wait until both ports answer."""
        assert self.process is None, "already started"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "--data-dir", str(self.data_dir), "serve",
                 "--log-level", "warning", *self.serve_args],
                env=self.env, cwd=self.work_dir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self._wait_until_ready()
        self._save_ca_files()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise PortTaken(tail)
                raise AssertionError(f"`iotiam serve` exited during start-up:\n{tail}")
            try:
                health = httpx.get(f"{self.http_url}/healthz", timeout=2)
                with self.api(timeout=2) as api:
                    whoami = api.get("/v1/whoami")
                if health.status_code == 200 and whoami.status_code == 200 and \
                        (self.follower or self.singletons_led()):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop(kill=True)
        raise AssertionError(f"`iotiam serve` not ready in {STARTUP_SECONDS}s:\n"
                             f"{self.log_tail()}")

    def singletons_led(self) -> list[str]:
        """The singleton jobs ``/readyz`` says this server runs (on PostgreSQL they start
        a moment after the listeners: ``iotiam.election``)."""
        answer = httpx.get(f"{self.http_url}/readyz", timeout=2)
        led: list[str] = answer.json()["checks"]["singletons"]["leading"]
        return led

    def _save_ca_files(self) -> None:
        chain = httpx.get(f"{self.http_url}/ca/chain.pem", timeout=10)
        assert chain.status_code == 200, chain.text
        issuing, _, root = chain.text.partition(PEM_END)
        self.issuing_pem.write_text(issuing + PEM_END)
        self.root_pem.write_text(root)
        self.chain_pem.write_text(chain.text)

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (a clean stop, exit 0) or SIGKILL the server's process group; reap it."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is not None:
            raise AssertionError(f"`iotiam serve` had died on its own (exit {process.returncode})"
                                 f":\n{self.log_tail()}")
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_SECONDS)
            raise AssertionError(f"`iotiam serve` ignored SIGTERM for {STOP_SECONDS}s") from None
        assert kill or code == 0, f"`iotiam serve` exited {code} on SIGTERM:\n{self.log_tail()}"

    def crash(self) -> None:
        """``kill -9`` the server: no shutdown handlers, no flushing."""
        self.stop(kill=True)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of what the server printed since it was last started."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")[-chars:]

    def log_text(self) -> str:
        """Everything every run of this server printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _base_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    # Nothing from the developer's own iotiam set-up leaks in; wide, colourless output
    # keeps Rich tables from truncating ids.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTIAM_")}
    env.update({"IOTIAM_DATA_DIR": str(data_dir), "NO_COLOR": "1", "COLUMNS": "250",
                "TERM": "dumb"})
    if database_url:
        env["IOTIAM_DATABASE_URL"] = database_url
    return env


def launch(backend: str, base: Path, database_url: str | None,
           extra_env: dict[str, str] | None = None, *, broker: bool = False,
           external_broker: tuple[int, int, int] | None = None,
           follower: bool = False, init_args: tuple[str, ...] = (),
           serve_args: tuple[str, ...] = ()) -> Server:
    """``init`` a data directory and start ``serve``, picking new ports if one was taken.

    ``extra_env`` sets ``IOTIAM_*`` knobs for this server (the developer's own are dropped);
    ``follower``: another replica already leads the singleton jobs.
    """
    executable = venv_tool("iotiam")
    data_dir = base / "data"
    for _attempt in range(3):
        ports = free_ports(5 if broker else 2)
        port, http_port = ports[:2]
        server = Server(backend=backend, data_dir=data_dir, work_dir=base,
                        database_url=database_url, port=port, http_port=http_port,
                        executable=executable,
                        env={**_base_env(data_dir, database_url), **(extra_env or {})},
                        broker_ports=external_broker or ((ports[2], ports[3], ports[4])
                                                         if broker else None),
                        broker_mode="external" if external_broker else "managed",
                        follower=follower, init_args=init_args, serve_args=serve_args)
        server.init()
        try:
            server.start()
        except PortTaken:
            continue
        return server
    raise AssertionError("could not find two free ports for `iotiam serve`")
