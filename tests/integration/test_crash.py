"""``kill -9`` mid-burst and restart: G1 (unique serials), G2 (CRL numbers only go up),
G4 (revocation is final) and G5 (a reserved serial is never vouched for).

A few threads issue and revoke through the HTTPS API with the profile's token and CA
file while another polls the CRL at the CDP URL; the server is killed with SIGKILL
while requests are in flight, then ``iotiam serve`` is started again on the same data
directory and the survivors are checked from the outside (OCSP, CRL) and the inside
(the database).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from iotiam.testing import make_csr

from .live_server import Server
from .relying_party import crl_number, crl_serials, crl_url, fetch_crl, ocsp_status, run

pytestmark = pytest.mark.integration

ISSUING_DEVICES = 8
REVOCATION_TARGETS = 80
ISSUER_THREADS = 2
REVOKER_THREADS = 2
# kill once this much has happened (requests are still in flight then) ...
MIN_ISSUED, MIN_REVOKED, MIN_NEW_CRLS = 15, 15, 2
MIN_BURST_SECONDS = 1.0
# ... or give up
MAX_BURST_SECONDS = 60.0


@dataclass
class Burst:
    """What the client threads saw before the kill."""

    killed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: list[tuple[int, str]] = field(default_factory=list)  # serial, PEM (201s)
    revoked: list[int] = field(default_factory=list)  # serials whose revoke returned 200
    crls: list[tuple[int, bytes]] = field(default_factory=list)  # number, DER, in fetch order
    unexpected: list[str] = field(default_factory=list)
    interrupted: int = 0  # requests the kill cut off mid-flight

    def counts(self) -> tuple[int, int]:
        """Successful issuances and revocations so far."""
        with self.lock:
            return len(self.issued), len(self.revoked)

    def crls_newer_than(self, number: int) -> int:
        """How many CRLs fetched during the burst were published during it."""
        with self.lock:
            return len({n for n, _ in self.crls if n > number})

    def run(self, work: Callable[[], None]) -> None:
        """Loop ``work`` until stopped; connection errors after the kill end the loop."""
        while not self.stop.is_set():
            try:
                work()
            except (httpx.HTTPError, OSError) as e:
                with self.lock:
                    if self.killed.is_set():
                        self.interrupted += 1
                    else:
                        self.unexpected.append(f"{type(e).__name__}: {e}")
                return
            except IndexError:  # every target revoked: this thread is done
                return


def _issue(api: httpx.Client, device: str) -> tuple[int, str]:
    answer = api.post("/v1/certificates",
                      json={"device": device, "csr": make_csr(device).decode()})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return int(body["serial"], 16), body["pem"]


def _ocsp_answer(server: Server, cert: x509.Certificate, issuer: x509.Certificate
                 ) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    answer = httpx.post(f"{server.http_url}/ocsp", timeout=10,
                        content=request.public_bytes(serialization.Encoding.DER),
                        headers={"Content-Type": "application/ocsp-request"})
    assert answer.status_code == 200
    return ocsp.load_der_ocsp_response(answer.content)


def test_kill_9_mid_burst_keeps_serials_unique_revocations_final_crl_numbers_rising(
    fresh_server: Server, openssl: str, curl: str
) -> None:
    server = fresh_server
    devices = [f"burst-{i}" for i in range(ISSUING_DEVICES)]
    targets: list[tuple[int, str]] = []
    with server.api() as api:
        for device in devices:
            assert api.post("/v1/devices", json={"id": device, "type": "sensor"}
                            ).status_code == 201
        for i in range(REVOCATION_TARGETS):
            assert api.post("/v1/devices", json={"id": f"victim-{i}", "type": "sensor"}
                            ).status_code == 201
            targets.append(_issue(api, f"victim-{i}"))
    pem_by_serial = dict(targets)
    first = server.work_dir / "first-target.pem"
    first.write_text(targets[0][1])
    cdp_url = crl_url(openssl, first)  # as a relying party finds it
    baseline = crl_number(openssl, fetch_crl(openssl, curl, cdp_url, server.work_dir,
                                             "before-burst"))

    burst = Burst()
    # the first target is kept out of the burst, for a revocation after the restart
    spare = targets[0][0]
    queue = [serial for serial, _ in targets[1:]]

    def issuer_work(client: httpx.Client, n: list[int]) -> None:
        device = devices[n[0] % len(devices)]
        n[0] += 1
        answer = client.post("/v1/certificates",
                             json={"device": device, "csr": make_csr(device).decode()})
        with burst.lock:
            if answer.status_code == 201:
                burst.issued.append((int(answer.json()["serial"], 16), answer.json()["pem"]))
            else:
                burst.unexpected.append(f"issue: {answer.status_code} {answer.text}")

    def revoker_work(client: httpx.Client) -> None:
        with burst.lock:
            serial = queue.pop()
        answer = client.post(f"/v1/certificates/{serial:x}/revoke",
                             json={"reason": "keyCompromise"})
        with burst.lock:
            if answer.status_code == 200:
                burst.revoked.append(serial)
            else:
                burst.unexpected.append(f"revoke: {answer.status_code} {answer.text}")

    def crl_work(client: httpx.Client) -> None:
        answer = client.get(cdp_url)
        if answer.status_code != 200:
            with burst.lock:
                burst.unexpected.append(f"crl: {answer.status_code}")
            return
        crl = x509.load_der_x509_crl(answer.content)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        with burst.lock:
            burst.crls.append((number, answer.content))
        time.sleep(0.02)

    def issuer_thread() -> None:
        with server.api(timeout=10) as client:
            counter = [0]
            burst.run(lambda: issuer_work(client, counter))

    def revoker_thread() -> None:
        with server.api(timeout=10) as client:
            burst.run(lambda: revoker_work(client))

    def crl_thread() -> None:
        with httpx.Client(timeout=10) as client:
            burst.run(lambda: crl_work(client))

    threads = ([threading.Thread(target=issuer_thread) for _ in range(ISSUER_THREADS)]
               + [threading.Thread(target=revoker_thread) for _ in range(REVOKER_THREADS)]
               + [threading.Thread(target=crl_thread)])
    for thread in threads:
        thread.start()
    started = time.monotonic()
    try:
        while time.monotonic() < started + MAX_BURST_SECONDS:
            issued, revoked = burst.counts()
            if (issued >= MIN_ISSUED and revoked >= MIN_REVOKED
                    and burst.crls_newer_than(baseline) >= MIN_NEW_CRLS
                    and time.monotonic() >= started + MIN_BURST_SECONDS):
                break
            time.sleep(0.02)
        burst.killed.set()
        server.crash()
        # the workers end by themselves at the request the kill cuts short or refuses;
        # stopping them first could catch every one between two requests on a slow host
        for thread in threads:
            thread.join(timeout=10)
    finally:
        burst.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    issued, revoked = burst.counts()
    # G10: nothing but the kill itself interrupted the burst (no 4xx/5xx, no resets)
    assert not burst.unexpected, burst.unexpected
    assert issued >= MIN_ISSUED and revoked >= MIN_REVOKED, (
        f"the burst did not get going: {issued} issued, {revoked} revoked")
    assert burst.crls_newer_than(baseline) >= MIN_NEW_CRLS, burst.crls
    assert burst.interrupted >= 1, "the kill cut no request short: not mid-burst"
    crl_numbers_before = [baseline] + [number for number, _ in burst.crls]
    # G2 before the crash: one number names one CRL, and numbers never went down
    by_number: dict[int, set[str]] = {}
    for number, der in burst.crls:
        by_number.setdefault(number, set()).add(hashlib.sha256(der).hexdigest())
    assert all(len(d) == 1 for d in by_number.values()), "two different CRLs share a number"
    assert crl_numbers_before == sorted(crl_numbers_before)

    server.start()

    # G1: no (issuer, serial) twice, in the database or in what clients were handed
    duplicates = server.sql("SELECT issuer_id, serial, COUNT(*) FROM certificates "
                            "GROUP BY issuer_id, serial HAVING COUNT(*) > 1")
    assert duplicates == []
    handed_out = [serial for serial, _ in targets + burst.issued]
    assert len(set(handed_out)) == len(handed_out)
    assert all(serial.bit_length() > 64 for serial in handed_out)
    listed = server.cli("cert", "list", "--json", "--limit", "1000").out
    listed_serials = [c["serial"] for c in json.loads(listed)]
    assert len(set(listed_serials)) == len(listed_serials)
    rows = {int(r[0], 16): r[1] for r in
            server.sql("SELECT serial, status FROM certificates")}
    # every certificate a client received is on record as issued (or, for targets, revoked)
    assert all(rows.get(serial) == "issued" for serial, _ in burst.issued)

    issuing = x509.load_pem_x509_certificate(server.issuing_pem.read_bytes())
    # G4: every revocation that returned 200 survived the kill -- OCSP ...
    for serial in burst.revoked:
        assert rows[serial] == "revoked", f"{serial:x} is {rows[serial]} after the crash"
        cert = x509.load_pem_x509_certificate(pem_by_serial[serial].encode())
        answer = _ocsp_answer(server, cert, issuing)
        assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED, f"{serial:x}"
        assert answer.revocation_reason is x509.ReasonFlags.key_compromise
    # ... as stock openssl sees it, for a few of them
    for serial in burst.revoked[:3]:
        leaf = server.work_dir / f"crashed-{serial:x}.pem"
        leaf.write_text(pem_by_serial[serial])
        result = run(openssl, "ocsp", "-issuer", server.issuing_pem, "-cert", leaf,
                     "-url", f"{server.http_url}/ocsp", "-CAfile", server.root_pem)
        assert ocsp_status(result, leaf) == "revoked"
    # ... and the CRL at the CDP
    crl_after = fetch_crl(openssl, curl, cdp_url, server.work_dir, "after-crash")
    assert set(burst.revoked) <= crl_serials(openssl, crl_after)

    # G5: only requests the kill cut short can have left a serial reserved but unsigned,
    # and such a serial is never vouched for
    reserved = server.sql("SELECT serial FROM certificates WHERE status = 'reserved'")
    assert len(reserved) <= ISSUER_THREADS, reserved
    for (serial_hex,) in reserved:
        result = run(openssl, "ocsp", "-issuer", server.issuing_pem, "-serial",
                     f"0x{serial_hex}", "-url", f"{server.http_url}/ocsp",
                     "-CAfile", server.root_pem, "-no_nonce")
        assert ": good" not in result.stdout, result.stdout

    # G2 across the restart: the next CRL outranks everything seen before the kill
    assert rows[spare] == "issued"
    with server.api() as api:
        after = api.post(f"/v1/certificates/{spare:x}/revoke", json={})
        assert after.status_code == 200, after.text
    newest = fetch_crl(openssl, curl, cdp_url, server.work_dir, "after-restart-revoke")
    assert spare in crl_serials(openssl, newest)
    assert crl_number(openssl, newest) > max(crl_numbers_before)
    shown = server.cli("ca", "crl").out
    shown_number = int(next(line.split()[1] for line in shown.splitlines()
                            if line.startswith("number ")))
    assert shown_number > max(crl_numbers_before)
    _assert_crl_numbers_follow_time(server, issuing_id(server))


def issuing_id(server: Server) -> str:
    """The issuing CA's id, as the API names it."""
    with server.api() as api:
        body: dict[str, Any] = api.get("/v1/ca").json()
    return str(body["issuing"]["id"])


def _assert_crl_numbers_follow_time(server: Server, issuer_id: str) -> None:
    """G2 in the store: every CRL ever published by the issuer, in number order, is newer."""
    rows = server.sql("SELECT number, this_update FROM crls WHERE issuer_id = :issuer "
                      "ORDER BY number", issuer=issuer_id)
    numbers = [r[0] for r in rows]
    assert len(set(numbers)) == len(numbers)
    stamps = [r[1] for r in rows]
    assert stamps == sorted(stamps), rows
