"""Mosquitto as a child of ``iotiam serve``: started, reloaded with SIGHUP, restarted."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from iotiam.broker.layout import BrokerConfig, BrokerFiles
from iotiam.errors import SetupError
from iotiam.lifetime import die_with_parent

log = logging.getLogger("iotiam.broker")

START_SECONDS = 10.0


class ManagedMosquitto:
    """One broker process; ``generation`` counts (re)starts so a sync knows to redo all."""

    def __init__(self, binary: Path, config: BrokerConfig, files: BrokerFiles) -> None:
        self._binary = binary
        self._config = config
        self._files = files
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.generation = 0

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        """Start the broker and wait until its admin listener accepts connections."""
        with self._lock:
            if self.pid is not None:
                return
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
                    raise SetupError(f"mosquitto exited with {self._process.returncode} at "
                                     f"start: {self.log_tail()}")
                if _accepts(self._config.admin_port):
                    self.generation += 1
                    log.info("mosquitto running (pid %d, mTLS :%d, PSK :%d)",
                             self._process.pid, self._config.mtls_port, self._config.psk_port)
                    return
                time.sleep(0.05)
            self._process.kill()
            raise SetupError(f"mosquitto did not start in {START_SECONDS:.0f}s: {self.log_tail()}")

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


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
