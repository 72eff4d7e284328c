"""Many certificates in one call: each request stands or falls alone, all are audited."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509
from expect import audit_records, row_counts
from fleet import add_device

from conftest import Installation
from iotiam.admin.models import SYSTEM, Principal, Role
from iotiam.errors import Conflict, Forbidden, InvalidInput, NotFound
from iotiam.inventory.models import DeviceState
from iotiam.pki.issuing import IssueRequest
from iotiam.pki.models import CertificateRecord, CertificateStatus
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
