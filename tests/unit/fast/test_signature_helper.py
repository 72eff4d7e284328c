"""The helper process that checks CSR signatures: right verdicts, and doubt means
"check it in the issuing process", never "valid"."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from iotiam.fast import signature_helper
from iotiam.fast.signature_helper import SignatureHelper
from iotiam.testing import make_csr

READY_TIMEOUT = 30.0


def tampered(der: bytes) -> bytes:
    return der[:-1] + bytes([der[-1] ^ 0x01])  # last byte of the ECDSA signature


@pytest.fixture
def helper() -> Iterator[SignatureHelper]:
    started = SignatureHelper()
    assert started.wait_ready(READY_TIMEOUT)
    yield started
    started.close()


def test_helper_ok_verdicts(helper: SignatureHelper) -> None:
    good = make_csr("dev-1", pem=False)
    weak = make_csr("dev-2", key=rsa.generate_private_key(65537, 1024), pem=False)
    pending = helper.check([good, tampered(good), b"\x30\x03garbage", weak])
    assert pending is not None
    # garbage and a key the issuing process refuses are left to it
    assert pending.verdicts() == [True, False, None, None]


def test_helper_ok_first_use_checks_in_process() -> None:
    helper = SignatureHelper()
    try:
        assert helper.check([make_csr("dev-1", pem=False)]) is None  # still starting
    finally:
        helper.close()


def test_helper_ok_dead_helper_leaves_checks_here(helper: SignatureHelper) -> None:
    good = make_csr("dev-1", pem=False)
    pending = helper.check([good])
    assert pending is not None
    assert helper._process is not None
    helper._process.kill()
    helper._process.wait()
    assert pending.verdicts() in ([True], [None])  # answered before dying, or doubt
    assert helper.check([good]) is None
    assert helper.wait_ready(READY_TIMEOUT)  # a new helper replaces it
    again = helper.check([tampered(good)])
    assert again is not None and again.verdicts() == [False]


def test_helper_ok_unread_answers_never_answer_the_next_request(
    helper: SignatureHelper,
) -> None:
    good = make_csr("dev-1", pem=False)
    assert helper.check([tampered(good)]) is not None  # its caller fails before reading
    follow_up = helper.check([good])
    if follow_up is None:  # the helper was replaced: the batch checks in-process
        assert helper.wait_ready(READY_TIMEOUT)
        follow_up = helper.check([good])
    assert follow_up is not None and follow_up.verdicts() == [True]


def test_helper_ok_fork_starts_its_own_and_leaves_the_parents(
    helper: SignatureHelper, monkeypatch: pytest.MonkeyPatch,
) -> None:
    parents = helper._process
    assert parents is not None
    real_pid = os.getpid()
    monkeypatch.setattr(signature_helper.os, "getpid", lambda: real_pid + 1)
    try:
        assert helper.check([make_csr("dev-1", pem=False)]) is None  # its own is starting
        assert helper._process is not parents
        assert parents.poll() is None  # the parent's helper was not stopped
    finally:
        monkeypatch.undo()
        parents.kill()
        parents.wait()
