"""More than one serving process on the same listening sockets (``serve --workers N``).

Signing and CSR checks hold the GIL, so one process uses one core however many
threads it runs. ``serve`` binds its sockets, then forks N-1 copies of itself; the
kernel spreads new connections over every process accepting on the socket. Each
process keeps its own database pool and caches; everything they must agree on (serial
reservations, CRL numbers, the audit head, OCSP status) is decided in the database.

The first process stays the one to signal: SIGTERM to it stops them all, and the
others are killed by the kernel if it dies (``PR_SET_PDEATHSIG``), so a ``kill -9``
never leaves orphans holding the port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

from iotiam.child_processes import die_with_parent

log = logging.getLogger("iotiam.server")


def fork_workers(extra: int) -> tuple[int, list[int]]:
    """Fork ``extra`` more processes: ``(0, their pids)`` in the first, ``(i, [])`` in each."""
    children: list[int] = []
    parent = os.getpid()
    for index in range(1, extra + 1):
        pid = os.fork()
        if pid == 0:
            _die_with(parent)
            return index, []
        children.append(pid)
    return 0, children


def _die_with(parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def stop_workers(children: list[int], *, timeout: float = 10.0) -> None:
    """SIGTERM each child, wait for it, and SIGKILL one that outlives ``timeout``."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in children:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                log.warning("worker %d did not stop; killing it", pid)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)
