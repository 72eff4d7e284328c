"""``iotiam`` under a CPU-weighted sampling profiler of every thread (``profile_server``).

Run as ``python benchmarks/sampling.py <iotiam arguments>`` (the serve command of a
benchmark, see ``profile_server.py``). A thread wakes every half millisecond, reads
each other thread's CPU clock (``pthread_getcpuclockid``) and, for a thread that used
CPU since its last look, adds that CPU to the thread's current Python stack. C code
(TLS, sockets, SQLite) counts under the Python frame that called it; the event loop's
own C work (uvloop: TLS records, epoll, socket calls) under the loop's ``run`` frame.
The switch interval is lowered so the sampler gets the GIL often enough to see the
working thread rather than only the points where it blocks. Every second the stacks
go to ``$BENCHMARK_SAMPLES.<pid>`` as ``seconds<TAB>file:function;...`` lines (forked
workers write their own file). SIGUSR2 forgets what was sampled so far: the driver
sends it once start-up and the benchmark's set-up are over.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import threading
import time

INTERVAL = 0.0005
_stacks: collections.defaultdict[str, float] = collections.defaultdict(float)
_sampler: list[int] = []


def _stack(frame: object) -> str:
    parts = []
    f: object = frame
    while f is not None:
        code = f.f_code  # type: ignore[attr-defined]
        parts.append(f"{code.co_filename}:{code.co_name}")
        f = f.f_back  # type: ignore[attr-defined]
    return ";".join(reversed(parts))


def _dump(path: str) -> None:
    with open(f"{path}.{os.getpid()}", "w") as out:
        for stack, seconds in list(_stacks.items()):
            out.write(f"{seconds:.6f}\t{stack}\n")


def _sample(path: str) -> None:
    seen: dict[int, float] = {}
    next_dump = time.monotonic() + 1.0
    while True:
        time.sleep(INTERVAL)
        for thread_id, frame in sys._current_frames().items():
            if thread_id in _sampler:
                continue
            try:
                cpu = time.clock_gettime(time.pthread_getcpuclockid(thread_id))
            except OSError:
                continue
            used = cpu - seen.get(thread_id, cpu)
            seen[thread_id] = cpu
            if used > 0:
                _stacks[_stack(frame)] += used
        if time.monotonic() > next_dump:
            next_dump = time.monotonic() + 1.0
            _dump(path)


def _start(path: str) -> None:
    _stacks.clear()
    _sampler.clear()
    thread = threading.Thread(target=_sample, args=(path,), name="sampler", daemon=True)
    thread.start()
    assert thread.ident is not None
    _sampler.append(thread.ident)


def main() -> None:
    """Start sampling (again in each forked worker), then run the ``iotiam`` CLI."""
    path = os.environ["BENCHMARK_SAMPLES"]
    sys.setswitchinterval(INTERVAL)
    _start(path)
    signal.signal(signal.SIGUSR2, lambda number, frame: _stacks.clear())
    os.register_at_fork(after_in_child=lambda: _start(path))
    from iotiam.cli.main import run
    sys.argv[0] = "iotiam"
    run()


if __name__ == "__main__":
    main()
