"""Many certificates in one call: each request stands or falls alone, all are audited."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from expect import audit_records, row_counts
from fleet import add_device

from conftest import Installation
from iotiam.errors import (
    Conflict,
    Forbidden,
    IamError,
    InternalError,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from iotiam.fast.signature_helper import HELPER_MIN_BATCH, HELPER_SHARE, PendingAnswers
from iotiam.inventory.models import Device, DeviceState
from iotiam.kernel import SYSTEM, Principal, Role
from iotiam.pki.models import CertificateRecord, CertificateStatus, IssueRequest, SerialInUse
from iotiam.pki.service import Pki
from iotiam.storage.status_reader import SqlStatusReader
from iotiam.testing import make_csr, make_key


def test_batch_ok_every_request_issued(installation: Installation) -> None:
    api = installation.api()
    ids = [f"dev-{i}" for i in range(5)]
    for device_id in ids:
        add_device(api, device_id)
    results = installation.services.pki.issue_certificates(
        SYSTEM, [IssueRequest(device_id, make_csr(device_id)) for device_id in ids])

    assert all(isinstance(r, CertificateRecord) for r in results)
    records = [r for r in results if isinstance(r, CertificateRecord)]
    assert [r.device_id for r in records] == ids
    assert len({r.serial for r in records}) == 5
    for record in records:
        assert record.status is CertificateStatus.ISSUED and record.pem
        cert = x509.load_pem_x509_certificate(record.pem.encode())
        assert cert.serial_number == record.serial
        assert cert.subject.rfc4514_string().startswith(f"CN={record.device_id},")
        assert api.get(f"/v1/devices/{record.device_id}").json()["state"] == "active"
    issued = [r for r in audit_records(api) if r["tag"] == "device:certificate:issued"]
    assert [r["subject"] for r in issued] == [f"device:{d}" for d in ids]
    assert installation.api().get("/v1/audit/verify").json()["ok"] is True


def test_batch_fail_bad_requests_refused_alone(installation: Installation) -> None:
    api = installation.api()
    for device_id in ("good-1", "good-2", "retired"):
        add_device(api, device_id)
    installation.services.inventory.set_state(SYSTEM, "retired", DeviceState.DECOMMISSIONED)
    shared = make_key()
    before = row_counts(installation)
    results = installation.services.pki.issue_certificates(SYSTEM, [
        IssueRequest("good-1", make_csr("good-1", key=shared)),
        IssueRequest("nobody", make_csr("nobody")),
        IssueRequest("good-2", b"not a csr"),
        IssueRequest("retired", make_csr("retired")),
        # the same key as the first request, in the same batch: a shared identity
        IssueRequest("good-2", make_csr("good-2", key=shared)),
        IssueRequest("good-2", make_csr("good-2")),
    ])

    kinds = [type(r) for r in results]
    assert kinds == [CertificateRecord, NotFound, InvalidInput, Conflict, Conflict,
                     CertificateRecord]
    after = row_counts(installation)
    assert after["certificates"] == before["certificates"] + 2
    assert after["reserved_certificates"] == before["reserved_certificates"]
    refused = [r for r in audit_records(api) if r["tag"] == "device:certificate:refused"]
    assert [(r["subject"], r["outcome"]) for r in refused] == [
        ("device:nobody", "denied"), ("device:good-2", "failure"),
        ("device:retired", "failure"), ("device:good-2", "failure")]
    assert "already certified" in refused[-1]["reason"]


def test_batch_fail_viewer_refused_every_request(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    viewer = Principal(name="token:viewer", role=Role.VIEWER, org_unit_id="root",
                       org_path="/root/")
    before = row_counts(installation)
    results = installation.services.pki.issue_certificates(
        viewer, [IssueRequest("dev-1", make_csr("dev-1")), IssueRequest("dev-1", b"junk")])

    assert [type(r) for r in results] == [Forbidden, Forbidden]
    assert row_counts(installation)["certificates"] == before["certificates"]
    refused = [r for r in audit_records(api) if r["tag"] == "device:certificate:refused"]
    assert [(r["actor"], r["outcome"]) for r in refused] == [("token:viewer", "denied")] * 2


def test_batch_ok_authenticate_names_the_actor_in_the_reservation(
        installation: Installation) -> None:
    # a request whose asker only the reservation can tell (an EST claim): its hook runs
    # first, is given the device as read, and its principal is the one checked and
    # audited; the stand-in actor has no rights of its own
    api = installation.api()
    for device_id in ("dev-1", "dev-2"):
        add_device(api, device_id)
    stand_in = Principal(name="est:someone", role=Role.VIEWER, org_unit_id="root",
                         org_path="/root/")
    seen: list[str | None] = []

    def as_device(uow: object, device: Device | None) -> Principal:
        seen.append(device.id if device else None)
        if device is None or device.id != "dev-1":
            raise Unauthenticated("not this one")
        return Principal(name=f"est:{device.id}", role=Role.OPERATOR,
                         org_unit_id=device.org_unit_id, org_path=device.org_path)

    before = row_counts(installation)
    results = installation.services.pki.issue_batch([
        (stand_in, IssueRequest("dev-1", make_csr("dev-1"), authenticate=as_device)),
        (stand_in, IssueRequest("dev-2", make_csr("dev-2"), authenticate=as_device)),
        (stand_in, IssueRequest("nobody", make_csr("nobody"), authenticate=as_device)),
        (stand_in, IssueRequest("dev-2", make_csr("dev-2"))),  # no hook: the stand-in
    ])

    assert [type(r) for r in results] == [CertificateRecord, Unauthenticated,
                                          Unauthenticated, Forbidden]
    assert seen == ["dev-1", "dev-2", None]
    assert row_counts(installation)["certificates"] == before["certificates"] + 1
    records = audit_records(api)
    issued = [r for r in records if r["tag"] == "device:certificate:issued"]
    assert [(r["actor"], r["subject"]) for r in issued][-1:] == [("est:dev-1", "device:dev-1")]
    refused = [r for r in records if r["tag"] == "device:certificate:refused"]
    assert [(r["actor"], r["subject"]) for r in refused] == [
        ("est:someone", "device:dev-2"), ("est:someone", "device:nobody"),
        ("est:someone", "device:dev-2")]


def test_concurrent_callers_ok_combined(installation: Installation) -> None:
    api = installation.api()
    ids = [f"dev-{i}" for i in range(24)]
    for device_id in ids:
        add_device(api, device_id)
    csrs = {device_id: make_csr(device_id) for device_id in ids}
    csrs["dev-0"] = b"garbage"  # one caller's bad request must not fail the others
    pki = installation.services.pki
    start = threading.Barrier(len(ids))

    def issue(device_id: str) -> CertificateRecord | Exception:
        start.wait()
        try:
            return pki.issue_certificate(SYSTEM, device_id=device_id, csr_data=csrs[device_id])
        except Exception as e:
            return e

    with ThreadPoolExecutor(len(ids)) as pool:
        results = dict(zip(ids, pool.map(issue, ids), strict=True))

    assert isinstance(results.pop("dev-0"), InvalidInput)
    assert all(isinstance(r, CertificateRecord) for r in results.values()), results
    assert {r.device_id for r in results.values() if isinstance(r, CertificateRecord)} == \
        set(ids) - {"dev-0"}
    assert len({r.serial for r in results.values() if isinstance(r, CertificateRecord)}) == 23
    assert row_counts(installation)["reserved_certificates"] == 0
    tags = [r["tag"] for r in audit_records(api)]
    assert tags.count("device:certificate:issued") == 23
    assert tags.count("device:certificate:refused") == 1
    assert api.get("/v1/audit/verify").json()["ok"] is True


def test_batch_ok_helper_checks_signatures(installation: Installation,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    api = installation.api()
    ids = [f"dev-{i}" for i in range(HELPER_MIN_BATCH + 4)]
    for device_id in ids:
        add_device(api, device_id)
    issuance = installation.services.pki._issuance
    assert issuance._proofs is not None
    helper = issuance._proofs.helper
    assert helper is not None and helper.wait_ready(30)
    sent: list[int] = []
    real_check = helper.check

    def spy(csrs_der: Sequence[bytes]) -> PendingAnswers | None:
        sent.append(len(csrs_der))
        return real_check(csrs_der)

    monkeypatch.setattr(helper, "check", spy)
    csrs = [make_csr(device_id, pem=False) for device_id in ids]
    broken = {0, 3, len(ids) - 1}  # two in the helper's share, one in this process's
    for i in broken:
        csrs[i] = csrs[i][:-1] + bytes([csrs[i][-1] ^ 0x01])
    # a broken signature is reported before a wrong name, wherever it was checked
    wrong_name = make_csr("dev-0", pem=False)
    csrs[5] = wrong_name[:-1] + bytes([wrong_name[-1] ^ 0x01])
    before = row_counts(installation)
    results = installation.services.pki.issue_certificates(
        SYSTEM, [IssueRequest(d, c) for d, c in zip(ids, csrs, strict=True)])

    assert sent == [round(len(ids) * HELPER_SHARE)]
    refused = sorted(broken | {5})
    assert [i for i, r in enumerate(results) if not isinstance(r, CertificateRecord)] == refused
    for i in refused:
        assert isinstance(results[i], InvalidInput)
        assert str(results[i].detail) == "CSR signature does not verify (no proof of possession)"
    assert row_counts(installation)["certificates"] == before["certificates"] + len(ids) - 4
    assert row_counts(installation)["reserved_certificates"] == 0
    tags = [r["tag"] for r in audit_records(api)]
    assert tags.count("device:certificate:refused") == 4
    assert tags.count("device:certificate:issued") == len(ids) - 4


def test_batch_fail_a_bug_in_one_request_fails_it_alone(installation: Installation) -> None:
    """G12: not only a refusal: an unexpected exception (here in one request's reservation
    hook) answers that request with an InternalError, and the batch's others are issued."""
    api = installation.api()
    for device_id in ("good-1", "buggy", "good-2"):
        add_device(api, device_id)

    def hook_with_a_bug(uow: object, device: object) -> None:
        raise RuntimeError("a bug in one request's hook")

    results = installation.services.pki.issue_certificates(SYSTEM, [
        IssueRequest("good-1", make_csr("good-1")),
        IssueRequest("buggy", make_csr("buggy"), on_reserve=hook_with_a_bug),
        IssueRequest("good-2", make_csr("good-2")),
    ])
    assert [type(r) for r in results] == [CertificateRecord, InternalError, CertificateRecord]
    assert "the error was logged" in str(results[1])
    assert api.get("/v1/devices/buggy").json()["state"] == "pending"
    refused = [r for r in audit_records(api) if r["tag"] == "device:certificate:refused"]
    assert [r["subject"] for r in refused] == ["device:buggy"]
    assert installation.api().get("/v1/audit/verify").json()["ok"] is True


def test_batch_ok_plain_ports_issue_the_same(installation: Installation) -> None:
    """Without the fast paths (builder signing, every proof checked here, no combining)
    a batch gives the same certificates and records."""
    services = installation.services
    plain = Pki(services.database, services.clock, services.audit, services.settings.pki,
                services.pki.cas, x509.random_serial_number,
                SqlStatusReader(services.database.engine))
    api = installation.api()
    ids = [f"dev-{i}" for i in range(HELPER_MIN_BATCH + 2)]
    for device_id in ids:
        add_device(api, device_id)
    csrs = [make_csr(device_id) for device_id in ids]
    csrs[1] = b"garbage"
    results = plain.issue_certificates(
        SYSTEM, [IssueRequest(d, c) for d, c in zip(ids, csrs, strict=True)])

    assert isinstance(results[1], InvalidInput)
    issued = [r for r in results if isinstance(r, CertificateRecord)]
    assert [r.device_id for r in issued] == ids[:1] + ids[2:]
    issuing = services.pki.cas.issuing.certificate
    for record in issued:
        assert record.pem is not None
        cert = x509.load_pem_x509_certificate(record.pem.encode())
        cert.verify_directly_issued_by(issuing)
        assert cert.serial_number == record.serial
    assert row_counts(installation)["reserved_certificates"] == 0
    assert api.get("/v1/audit/verify").json()["ok"] is True


def _stream(pki: Pki, batches: list[list[tuple[Principal, IssueRequest]]],
            on_answer: Callable[[int], None] = lambda index: None,
            ) -> list[list[CertificateRecord | IamError] | Exception]:
    """Run ``batches`` as one stream; ``on_answer(i)`` runs as batch i is answered."""
    answers: list[list[CertificateRecord | IamError] | Exception] = []
    rest = list(batches[1:])

    def answer(outcome: list[CertificateRecord | IamError] | Exception) -> None:
        on_answer(len(answers))
        answers.append(outcome)

    pki.issue_batches(batches[0], lambda: rest.pop(0) if rest else (), answer)
    return answers


def test_stream_ok_one_commit_stores_a_batch_and_reserves_the_next(
        installation: Installation) -> None:
    """G5 across batches: a batch is answered only once its certificates are stored,
    and that same commit reserved the next batch's serials (one commit per batch)."""
    api = installation.api()
    ids = [f"dev-{i}" for i in range(5)]
    for device_id in ids:
        add_device(api, device_id)
    batches = [[(SYSTEM, IssueRequest(d, make_csr(d))) for d in ids[:2]],
               [(SYSTEM, IssueRequest(d, make_csr(d))) for d in ids[2:]]]
    seen: list[dict[str, int]] = []
    answers = _stream(installation.services.pki, batches,
                      lambda index: seen.append(row_counts(installation)))

    assert [[type(r) for r in a] for a in answers if isinstance(a, list)] == [
        [CertificateRecord] * 2, [CertificateRecord] * 3]
    # when the first batch was answered: its two stored, the second's three reserved
    assert [(s["certificates"], s["reserved_certificates"]) for s in seen] == [(5, 3), (5, 0)]
    issued = [r for r in audit_records(api) if r["tag"] == "device:certificate:issued"]
    assert [r["subject"] for r in issued] == [f"device:{d}" for d in ids]
    assert api.get("/v1/audit/verify").json()["ok"] is True


def test_stream_fail_shared_transaction_each_batch_alone(installation: Installation) -> None:
    """When the transaction shared by two batches fails, the signed batch is stored on
    its own and the next one reserved on its own: only the batch at fault fails."""
    services = installation.services
    drawn: list[int] = []

    def serials() -> int:
        # the first batch's draws are random; then stuck on the first one's serial
        drawn.append(x509.random_serial_number() if len(drawn) < 2 else drawn[0])
        return drawn[-1]

    pki = Pki(services.database, services.clock, services.audit, services.settings.pki,
              services.pki.cas, serials, SqlStatusReader(services.database.engine))
    api = installation.api()
    ids = ["dev-1", "dev-2", "dev-3"]
    for device_id in ids:
        add_device(api, device_id)
    answers = _stream(pki, [[(SYSTEM, IssueRequest(d, make_csr(d))) for d in ids[:2]],
                            [(SYSTEM, IssueRequest("dev-3", make_csr("dev-3")))]])

    first, second = answers
    assert isinstance(first, list) and all(isinstance(r, CertificateRecord) for r in first)
    assert isinstance(second, list) and [type(r) for r in second] == [SerialInUse]
    assert row_counts(installation)["reserved_certificates"] == 0
    assert api.get("/v1/devices/dev-1").json()["state"] == "active"
    assert api.get("/v1/devices/dev-3").json()["state"] == "pending"
    tags = [(r["tag"], r["subject"]) for r in audit_records(api)
            if r["tag"].startswith("device:certificate")]
    assert tags == [("device:certificate:issued", "device:dev-1"),
                    ("device:certificate:issued", "device:dev-2"),
                    ("device:certificate:refused", "device:dev-3")]
    assert api.get("/v1/audit/verify").json()["ok"] is True
