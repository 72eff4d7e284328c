"""CSR signature checks (proof of possession, RFC 2986 §3) in a helper process.

``cryptography`` holds the GIL while it verifies, so a second thread cannot help: the
~90 µs ECDSA verification per CSR is the largest single cost of batch issuance. A
batch hands part of its CSRs to this helper, on the other core, while the issuing
process checks the rest itself and does the inventory and key checks.

The helper only answers "this CSR's signature verifies" for bytes it is given; every
other check stays in the issuing process, which treats any doubt (no answer, a helper
that died, hung or is still starting, a key it would not touch) as "check it here".
:class:`HelperProofChecks` is the ``pki.ports.ProofChecks`` that hands a batch's share
to it. The helper is a plain ``python -m`` child with pipes, so it never re-imports
the caller's ``__main__`` (as multiprocessing's spawn would), and it ends when its
stdin closes, which happens when the issuing process exits or dies.

Protocol: a request is a 4-byte length and then, per CSR, a 4-byte length and the DER;
the answer is one byte per CSR (:data:`VALID`, :data:`INVALID` or :data:`UNCHECKED`).
The helper writes :data:`READY` once when it can take requests.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives import serialization

VALID = 0
INVALID = 1
#: the helper did not check (unparsable, a key it would not touch): check in-process
UNCHECKED = 2
READY = b"R"
#: longer than any batch's checks; a helper that takes longer is killed and replaced
ANSWER_TIMEOUT_SECONDS = 10.0
#: batches this large hand CSR signatures to the helper process (smaller ones would
#: wait on the pipe longer than the checks take)
HELPER_MIN_BATCH = 16
#: the helper's part of a batch: it only verifies (~90 µs a CSR) while the issuing
#: process also does every other check of every request, so both end at about the
#: same time
HELPER_SHARE = 0.7
_LENGTH = 4


class HelperProofChecks:
    """Hands the first part of a large batch's CSR signatures to a :class:`SignatureHelper`."""

    def __init__(self, helper: SignatureHelper | None = None) -> None:
        self.helper = helper or SignatureHelper()

    def start(self, csrs: Sequence[x509.CertificateSigningRequest]) -> PendingAnswers | None:
        """Send the helper's share; None for a small batch or a helper not ready."""
        if len(csrs) < HELPER_MIN_BATCH:
            return None
        share = csrs[:round(len(csrs) * HELPER_SHARE)]
        return self.helper.check([csr.public_bytes(serialization.Encoding.DER)
                                  for csr in share])


class SignatureHelper:
    """Client side: one helper process per issuing process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._owner_pid = 0
        self._ready = False
        self._broken = False
        # a request whose answers were not read yet: the next answers would be its
        self._outstanding = False
        self._finalizer: weakref.finalize[..., SignatureHelper] | None = None

    def check(self, csrs_der: Sequence[bytes]) -> PendingAnswers | None:
        """Send CSRs off for checking; None if the helper cannot take them now."""
        with self._lock:
            if self._outstanding:
                self._reset()  # its caller failed before reading: start afresh
            process = self._available()
            if process is None:
                return None
            assert process.stdin is not None
            payload = b"".join(len(d).to_bytes(_LENGTH, "big") + d for d in csrs_der)
            try:
                process.stdin.write(len(payload).to_bytes(_LENGTH, "big") + payload)
                process.stdin.flush()
            except OSError:
                self._reset()
                return None
            self._outstanding = True
            return PendingAnswers(self, process, len(csrs_der))

    def _available(self) -> subprocess.Popen[bytes] | None:
        if self._broken:
            return None
        if self._process is not None and self._owner_pid != os.getpid():
            # a fork of the process that started it: that helper answers the parent, so
            # let go of the inherited pipes without stopping it
            if self._finalizer is not None:
                self._finalizer.detach()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process, self._finalizer, self._ready = None, None, False
            self._outstanding = False
        if self._process is None:
            self._start()
            return None  # starting takes ~0.1 s: this batch checks in-process
        if self._process.poll() is not None:
            self._reset()
            return None
        if not self._ready:
            assert self._process.stdout is not None
            if not _readable(self._process.stdout, 0):
                return None
            if self._process.stdout.read(1) != READY:
                self._reset()
                return None
            self._ready = True
        return self._process

    def _start(self) -> None:
        # it needs none of iotiam's settings or secrets (the CA key passphrase)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOTIAM_")}
        # the helper imports this very package, wherever it was imported from here
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "iotiam.fast.signature_helper"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env, bufsize=0,
            )
        except OSError:
            self._broken = True  # no interpreter to start: every check stays in-process
            return
        self._process, self._owner_pid, self._ready = process, os.getpid(), False
        self._finalizer = weakref.finalize(self, _stop, process)

    def _reset(self) -> None:
        """Drop a helper that failed; the next batch starts a new one."""
        if self._finalizer is not None:
            self._finalizer()
        self._process, self._finalizer, self._ready = None, None, False
        self._outstanding = False

    def _answers(self, process: subprocess.Popen[bytes], count: int) -> bytes | None:
        with self._lock:
            if process is not self._process:
                return None
            self._outstanding = False
            assert process.stdout is not None
            answers = b""
            while len(answers) < count:
                if not _readable(process.stdout, ANSWER_TIMEOUT_SECONDS):
                    self._reset()
                    return None
                chunk = process.stdout.read(count - len(answers))
                if not chunk:
                    self._reset()
                    return None
                answers += chunk
            return answers

    def wait_ready(self, timeout: float) -> bool:
        """Start the helper if needed and wait until it takes requests (tests, warm-up)."""
        with self._lock:
            if self._available() is not None:
                return True
            process = self._process
            if process is None or process.stdout is None:
                return False
            if not _readable(process.stdout, timeout):
                return False
            return self._available() is not None

    def close(self) -> None:
        """Stop the helper (it also stops on its own when this process ends)."""
        with self._lock:
            self._reset()


class PendingAnswers:
    """The helper's verdicts on one request, read when the caller needs them."""

    def __init__(self, helper: SignatureHelper, process: subprocess.Popen[bytes],
                 count: int) -> None:
        self._helper = helper
        self._process = process
        self._count = count

    @property
    def count(self) -> int:
        """How many CSRs were sent."""
        return self._count

    def verdicts(self) -> list[bool | None]:
        """Per CSR: True (verifies), False (does not) or None (check it in-process)."""
        answers = self._helper._answers(self._process, self._count)
        if answers is None:
            return [None] * self._count
        return [True if a == VALID else False if a == INVALID else None for a in answers]


def _readable(stream: IO[bytes], timeout: float) -> bool:
    ready, _, _ = select.select([stream], [], [], timeout)
    return bool(ready)


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=1)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


# -- the helper process ------------------------------------------------------------------


def _verdict(der: bytes) -> int:
    from iotiam.errors import IamError
    from iotiam.pki.keys import require_leaf_public_key

    try:
        csr = x509.load_der_x509_csr(der)
        # the key check comes first, as in validate_csr: hostile keys never reach the
        # verifier (a huge RSA exponent would make it spin)
        require_leaf_public_key(csr.public_key())
        return VALID if csr.is_signature_valid else INVALID
    except (ValueError, TypeError, IamError, x509.InvalidVersion):
        return UNCHECKED
    except Exception:
        # anything odd is left to the issuing process, which reports it properly
        return UNCHECKED


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer requests until the issuing process closes the pipe."""
    _verdict(b"")  # import everything before saying ready
    answers.write(READY)
    answers.flush()
    while (header := _read_exact(requests, _LENGTH)) is not None:
        payload = _read_exact(requests, int.from_bytes(header, "big"))
        if payload is None:
            return
        verdicts = bytearray()
        offset = 0
        while offset < len(payload):
            size = int.from_bytes(payload[offset:offset + _LENGTH], "big")
            offset += _LENGTH
            verdicts.append(_verdict(payload[offset:offset + size]))
            offset += size
        answers.write(bytes(verdicts))
        answers.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
