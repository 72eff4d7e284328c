"""Where a served request's CPU goes: ``python -m benchmarks.profile_server api-issuance``.

Runs one server benchmark (``api-issuance`` or ``est-enroll``, quick sizes, one serving
process unless ``--workers``) with ``iotiam serve`` under ``benchmarks/sampling.py``,
then prints the server's sampled CPU by layer (the innermost frame that names one) and
the inclusive share of a few functions. The sampler costs CPU itself and lowers the
switch interval: read shares, not absolute numbers (the benchmark's own rows give those).
The breakdowns it gave are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import api_issuance, cascade, est_enroll, server
from benchmarks.harness import RunConfig

#: (layer, what a frame's ``file:function`` contains); a sample counts for the first
#: layer met walking from the innermost frame out
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("signing + CSR checks (cryptography)", ("cryptography/", "/pki/csr.py", "leaf_encoding",
                                            "leaf_builder", "signature_helper", "/pki/keys.py",
                                            "pkcs7")),
    ("database (SQLAlchemy + driver + stores)", ("sqlalchemy/", "sqlite3", "psycopg",
                                                 "/storage/")),
    ("audit chain", ("/audit/",)),
    ("authentication", ("/api/auth.py", "/admin/")),
    ("pydantic", ("pydantic",)),
    ("FastAPI / Starlette", ("fastapi/", "starlette/", "/api/")),
    ("thread hand-offs (anyio, futures, locks)", ("anyio/", "concurrent/futures",
                                                  "threading.py", "queue.py")),
    ("HTTP framing (uvicorn, httptools)", ("uvicorn/", "httptools")),
    ("domain use cases (pki, enrollment, batching)", ("/iotiam/",)),
    ("event loop in C: TLS records, handshakes, sockets", ("runners.py", "uvloop")),
)
#: functions whose inclusive share is printed
FUNCTIONS = ("issuing.py:issue_many", "issuing.py:_reserve", "issuing.py:_complete",
             "issuing.py:_sign_each", "ssl.py", "threading.py:wait")
#: functions whose inclusive share is printed for ``cascade``
CASCADE_FUNCTIONS = ("set_revocation.py:revoke", "set_revocation.py:_revoke_batch",
                     "scoring.py", "background.py", "risk", "broker/sync.py",
                     "broker/", "ocsp", "subjects", "change_table", "polling_feed",
                     "feed.py", "sqlite3", "threading.py:wait")
#: the background jobs' stacks are not the requests'
_SKIP = ("background.py", "polling_feed")


def layer_of(stack: str) -> str:
    """The layer a sampled stack counts for."""
    for frame in reversed(stack.split(";")):
        for name, marks in LAYERS:
            if any(mark in frame for mark in marks):
                return name
    return "other"


def breakdown(paths: list[Path], skip: tuple[str, ...] = _SKIP,
              functions_shown: tuple[str, ...] = FUNCTIONS) -> str:
    """The report over the samples in ``paths``."""
    layers: collections.defaultdict[str, float] = collections.defaultdict(float)
    functions: collections.defaultdict[str, float] = collections.defaultdict(float)
    for path in paths:
        for line in path.read_text().splitlines():
            seconds_text, _, stack = line.partition("\t")
            if any(mark in stack for mark in skip):
                continue
            seconds = float(seconds_text)
            layers[layer_of(stack)] += seconds
            for name in functions_shown:
                if name in stack:
                    functions[name] += seconds
    total = sum(layers.values()) or 1.0
    lines = [f"sampled server CPU: {total:.2f} s"]
    lines += [f"{share / total * 100:5.1f}%  {name}" for name, share in
              sorted(layers.items(), key=lambda item: -item[1])]
    lines.append("inclusive:")
    lines += [f"{functions[name] / total * 100:5.1f}%  {name}" for name in functions_shown]
    return "\n".join(lines)


def _forget(running: server.RunningServer) -> None:
    """The serving processes forget what they sampled so far."""
    children = Path(f"/proc/{running.pid}/task/{running.pid}/children").read_text()
    for pid in [running.pid, *map(int, children.split())]:
        os.kill(pid, signal.SIGUSR2)


def _forget_set_up(module: ModuleType) -> None:
    """Once the benchmark's last set-up call returns, the servers forget their samples."""
    if module is cascade:
        cascade.before_revoke = _forget
        return
    name = "import_devices" if module is api_issuance else "create_claims"
    set_up = getattr(module, name)

    def then_forget(running: server.RunningServer, *args: Any, **kwargs: Any) -> Any:
        answer = set_up(running, *args, **kwargs)
        _forget(running)
        return answer

    setattr(module, name, then_forget)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark under the sampler and print the breakdown."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_server")
    parser.add_argument("benchmark", choices=["api-issuance", "est-enroll", "cascade"])
    parser.add_argument("--devices", type=int, default=3000,
                        help="cascade: devices revoked through serve (plugin broker auth)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="also copy the serving processes' samples into DIR")
    args = parser.parse_args(argv)
    module = {"api-issuance": api_issuance, "est-enroll": est_enroll,
              "cascade": cascade}[args.benchmark]
    with tempfile.TemporaryDirectory(prefix="iotiam-samples-") as scratch:
        samples = Path(scratch) / "samples"
        os.environ["BENCHMARK_SAMPLES"] = str(samples)
        sampler = Path(__file__).with_name("sampling.py")
        server.iotiam_command = lambda: [sys.executable, str(sampler)]
        setattr(module, "WORKERS", args.workers)  # noqa: B010 (either module's)
        _forget_set_up(module)
        config = RunConfig(quick=True, database_url=args.database_url)
        results = (cascade.run_live(config, "plugin", quick=args.devices)
                   if module is cascade else module.run(config))
        for result in results:
            print(f"{result.name}: {result.value:.2f} {result.unit}  {result.notes}")
        # the serving processes wrote last (``iotiam init`` wrote one too, long before)
        files = sorted(Path(scratch).glob("samples.*"), key=lambda p: p.stat().st_mtime)
        if module is cascade:  # the background jobs are what a cascade sets going
            print(breakdown(files[-args.workers:], (), CASCADE_FUNCTIONS))
        else:
            print(breakdown(files[-args.workers:]))
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in files[-args.workers:]:
                shutil.copy(path, args.keep / path.name)


if __name__ == "__main__":
    main()
