"""Mosquitto as a child of ``iotiam serve``: started, reloaded with SIGHUP, restarted.

A port held by another process (typically a second iotiam instance's broker) is found
before the start by binding it, and after the start by checking that our process is the
one listening on every port (``/proc``): an accepted connection alone may come from the
other broker, which then answers our admin with "Not authorized".
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from iotiam.broker.layout import BrokerConfig, BrokerFiles
from iotiam.child_processes import die_with_parent
from iotiam.errors import SetupError

log = logging.getLogger("iotiam.broker")

START_SECONDS = 10.0


class ManagedMosquitto:
    """One broker process; ``generation`` counts (re)starts so a sync knows to redo all."""

    def __init__(self, binary: Path, config: BrokerConfig, files: BrokerFiles, *,
                 listeners: Sequence[tuple[str, str, int]] | None = None) -> None:
        """``listeners`` (what, host, port) replace the managed broker's three (a
        gateway's local broker listens elsewhere, ``broker.child_listener``)."""
        self._binary = binary
        self._config = config
        self._files = files
        self._own_listeners = tuple(listeners) if listeners is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.generation = 0

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        """Start the broker and wait until it listens on all its ports."""
        with self._lock:
            if self.pid is not None:
                return
            self._refuse_taken_ports()
            with self._files.log.open("ab") as out:
                self._process = subprocess.Popen(
                    [str(self._binary), "-c", str(self._files.config)],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    # a kill -9 of iotiam must not leave a broker holding the ports
                    preexec_fn=die_with_parent,
                )
            deadline = time.monotonic() + START_SECONDS
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    self._refuse_taken_ports()  # it lost a race for one of them
                    raise SetupError(f"mosquitto exited with {self._process.returncode} at "
                                     f"start: {self._last_error()}")
                if self._listening():
                    self.generation += 1
                    log.info("mosquitto running (pid %d, %s)", self._process.pid,
                             ", ".join(f"{what} :{port}" for what, _, port in
                                       self._listeners()))
                    return
                time.sleep(0.05)
            self._process.kill()
            self._process.wait()
            self._refuse_taken_ports()
            raise SetupError(f"mosquitto did not start in {START_SECONDS:.0f}s: "
                             f"{self._last_error()}")

    def _listeners(self) -> list[tuple[str, str, int]]:
        """(what, host, port) of each listener."""
        if self._own_listeners is not None:
            return list(self._own_listeners)
        return [("mTLS", self._config.host, self._config.mtls_port),
                ("TLS-PSK", self._config.host, self._config.psk_port),
                ("admin", "127.0.0.1", self._config.admin_port)]

    def _refuse_taken_ports(self) -> None:
        """SetupError naming the first port another process listens on."""
        for what, host, port in self._listeners():
            problem = port_taken(host, port)
            if problem:
                raise SetupError(
                    f"the broker's {what} port {host}:{port} is already in use ({problem}): "
                    "another broker (a second iotiam instance?) holds it; stop it or give "
                    "this instance other broker ports")

    def _listening(self) -> bool:
        """Whether our process listens on every port (not merely: someone does)."""
        process = self._process
        if process is None:
            return False
        owned = listening_ports(process.pid)
        if owned is None:  # no /proc: the last port answering must do
            return _accepts(self._listeners()[-1][2])
        return all(port in owned for _, _, port in self._listeners())

    def answers(self, timeout: float = 2.0) -> bool:
        """Liveness: the broker reacts to a packet on its admin port (a hung broker's
        kernel still accepts the TCP connection). The packet is a PINGREQ before any
        CONNECT, which Mosquitto answers by closing the connection: no authentication
        is tried, so the probe is never logged as an authorization failure."""
        try:
            with socket.create_connection(("127.0.0.1", self._config.admin_port),
                                          timeout=timeout) as sock:
                sock.sendall(_PROBE_PINGREQ)
                return sock.recv(1) in (b"", b"\xd0")  # closed (or PINGRESP)
        except ConnectionResetError:
            return True  # closed, abruptly: it reacted
        except OSError:
            return False

    def _last_error(self) -> str:
        """The broker log's last error line (one line, for the operator)."""
        lines = [line for line in self.log_tail().splitlines() if "Error" in line]
        return lines[-1].strip() if lines else "see " + str(self._files.log)

    def reload(self) -> None:
        """SIGHUP: re-read the CRL and the PSK file (connected sessions stay)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGHUP)

    def ensure_running(self) -> bool:
        """Restart a broker that died; True when it had to (the caller then resyncs all)."""
        if self.pid is not None:
            return False
        log.warning("mosquitto is not running; starting it again")
        self.start()
        return True

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        with self._lock:
            process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the broker's log."""
        try:
            return self._files.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


#: an MQTT PINGREQ, which as a first packet is a protocol error the broker must act on
_PROBE_PINGREQ = bytes([0xC0, 0x00])
_LISTEN = "0A"


def port_taken(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on ("" if it can): a bind probe."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # as Mosquitto binds: TIME_WAIT leftovers are no obstacle, a listener is
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                return ""  # not a collision: Mosquitto will say what is wrong with it
            return e.strerror or str(e)
    return ""


def listening_ports(pid: int) -> set[int] | None:
    """TCP ports process ``pid`` listens on, from ``/proc`` (None where there is none)."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()  # gone, or not ours to look at
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]  # noqa: SIM115 - read at once
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == _LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
