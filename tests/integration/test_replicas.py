"""Two ``iotiam serve`` replicas sharing one PostgreSQL (separate data directories and
ports, the same CA and local keys, each its own managed Mosquitto): G3 across them —
B's OCSP, introspection, EMQX hook and broker session —, G1/G2 under concurrent issuance
and CRL publication on both, singleton jobs led by one replica with fail-over after
``kill -9``, and the SIGTERM drain.

The two servers are shared by the module (starting a pair costs ~10 s); the tests run
in file order and the fail-over test leaves both running again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from conftest import PG_URL, migrated_schema_url
from iotiam.testing import join_replica, make_csr, require

from . import test_dataplane_e2e as plane
from .live_server import Server, launch
from .test_oauth import enroll, mtls_token

pytestmark = pytest.mark.integration

SINGLETONS = ["activity-tally", "audit-checkpoints", "batch-pruner", "change-pruner",
              "child-key-rotation", "crl-refresher", "trust-and-risk"]
#: G3 "at once" across replicas: the change feed's NOTIFY, then B's caches
REFLECTED_SECONDS = 1.5
#: kill -9 of the leader → the other leads: its session ends with the process, then
#: one campaign (0.5 s) and the takeover wait (2 s)
TAKEOVER_SECONDS = 5.0

#: what every replica is configured with alike: the issuer of its tokens is the load
#: balancer's name, not the replica's own address
SHARED = {"IOTIAM_OAUTH_ISSUER": "https://iotiam.replicas.test"}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Replica A initialises the database; B joins it with A's secrets (CA passphrase,
    audit, data and checkpoint keys, and the checkpoint key's verifier key), as a second
    host would from the operator's secret store (docs/deployment.md)."""
    require(bool(PG_URL), "replicas need PostgreSQL (IOTIAM_TEST_DATABASE_URL)")
    schema = migrated_schema_url()
    url = next(schema)
    servers: list[Server] = []
    try:
        a = launch("postgresql", tmp_path_factory.mktemp("replica-a"), url, SHARED,
                   broker=True)
        servers.append(a)
        base_b = tmp_path_factory.mktemp("replica-b")
        join_replica(a.data_dir, base_b / "data")
        b = launch("postgresql", base_b, url, SHARED, broker=True, follower=True)
        servers.append(b)
        a.follower = True  # from here on either may be the one that follows
        yield a, b
    finally:
        for server in servers:
            crashed = server.process is None
            server.stop()
            assert crashed or "Traceback" not in server.log_text(), server.log_text()
        for _ in schema:
            pass


def _until(condition: Callable[[], bool], seconds: float) -> float:
    """Poll ``condition`` until it holds; how long it took (fails after ``seconds``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


def ready(server: Server) -> tuple[int, dict[str, Any]]:
    """``GET /readyz``: status and body."""
    answer = httpx.get(f"{server.http_url}/readyz", timeout=5)
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


def leading(server: Server) -> list[str]:
    """The singleton jobs the replica says it leads."""
    return server.singletons_led()


def ocsp_status(server: Server, pem: str) -> ocsp.OCSPCertStatus:
    """The replica's OCSP answer for a certificate."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    issuer = x509.load_pem_x509_certificate(server.issuing_pem.read_bytes())
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    answer = httpx.post(f"{server.http_url}/ocsp", timeout=10,
                        content=request.public_bytes(serialization.Encoding.DER),
                        headers={"Content-Type": "application/ocsp-request"})
    assert answer.status_code == 200
    return ocsp.load_der_ocsp_response(answer.content).certificate_status


def introspect(server: Server, token: str) -> bool:
    """RFC 7662 introspection at the replica: whether the token is active."""
    with server.api() as api:
        answer = api.post("/oauth2/introspect", data={"token": token})
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["active"])


def hook_allows(server: Server, device: str) -> bool:
    """The replica's decision point through the EMQX authorization hook."""
    body = {"clientid": device, "username": device, "peerhost": "10.7.0.9",
            "topic": f"devices/{device}/telemetry", "action": "publish", "qos": "0",
            "retain": "false"}
    with server.api() as api:
        answer = api.post("/v1/hooks/emqx/authz", json=body)
    assert answer.status_code == 200, answer.text
    return bool(answer.json() == {"result": "allow"})


def test_replicas_ok_both_ready_one_leads_each_singleton(
        replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    _until(lambda: sorted(leading(a) + leading(b)) == SINGLETONS, TAKEOVER_SECONDS)
    for server in (a, b):
        status, body = ready(server)
        assert status == 200 and body["status"] == "ready", body
        assert body["checks"]["database"]["ready"] and body["checks"]["change-feed"]["ready"]
    # every job led by exactly one: sampled for a few campaigns
    for _ in range(20):
        assert not set(leading(a)) & set(leading(b))
        time.sleep(0.05)


def test_replicas_ok_g3_revocation_on_a_reflected_by_b_at_once(
        replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    device = enroll(a, "replica-g3")
    token = mtls_token(a, device).json()["access_token"]
    pem = device.cert_file.read_text()
    # B has answered for the device already: its caches hold it
    assert ocsp_status(b, pem) is ocsp.OCSPCertStatus.GOOD
    assert introspect(b, token)
    assert hook_allows(b, device.device_id)
    with a.api() as api:
        revoked = api.post(f"/v1/certificates/{device.serial}/revoke",
                           json={"reason": "keyCompromise"})
    assert revoked.status_code == 200, revoked.text
    took = _until(lambda: ocsp_status(b, pem) is ocsp.OCSPCertStatus.REVOKED and
                  not introspect(b, token) and not hook_allows(b, device.device_id),
                  REFLECTED_SECONDS)
    assert took < REFLECTED_SECONDS


def test_replicas_ok_revocation_on_a_drops_the_session_on_b_broker(
        replicas: tuple[Server, Server]) -> None:
    """G3 on the data plane: B's broker learns of A's revocations through the change
    feed and drops the device's live session within a second, each of several times."""
    a, b = replicas
    took: list[float] = []
    for attempt in range(5):
        cert, key, serial = plane.enroll(a, f"replica-mqtt-{attempt}")
        device = plane.connect(b, cert, key)  # retried until B's sync knows the device
        try:
            assert device.connect_result == "Success", device.connect_result
            device.client.reconnect_delay_set(30, 60)
            with a.api() as api:
                started = time.monotonic()
                answer = api.post(f"/v1/certificates/{serial}/revoke",
                                  json={"reason": "keyCompromise"})
            assert answer.status_code == 200, answer.text
            assert device.disconnected.wait(REFLECTED_SECONDS), \
                f"B's broker kept the session of a certificate A revoked: {b.log_tail()}"
            took.append(time.monotonic() - started)
        finally:
            device.close()
    print(f"revocation on A -> session on B's broker dropped: {sorted(took)} s")
    assert max(took) < 1.0, took


def _burst(server: Server, devices: list[str], issued: list[tuple[int, str]],
           errors: list[str], lock: threading.Lock) -> None:
    with server.api() as api:
        for device in devices:
            answer = api.post("/v1/certificates",
                              json={"device": device, "csr": make_csr(device).decode()})
            with lock:
                if answer.status_code == 201:
                    issued.append((int(answer.json()["serial"], 16), server.http_url))
                else:
                    errors.append(f"{answer.status_code} {answer.text}")


def test_replicas_ok_g1_g2_concurrent_issuance_and_crls_on_both(
        replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    devices = [f"replica-burst-{i}" for i in range(8)]
    for device in devices:
        a.register(device)
    issued: list[tuple[int, str]] = []
    errors: list[str] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_burst, args=(server, devices * 3, issued, errors,
                                                     lock))
               for server in (a, b, a, b)]
    crls: list[tuple[str, int, bytes]] = []
    issuing = x509.load_pem_x509_certificate(a.issuing_pem.read_bytes())
    for thread in threads:
        thread.start()
    # revocations on both while they issue, each replica publishing CRLs
    revoked: list[int] = []
    while any(thread.is_alive() for thread in threads) or len(revoked) < 12:
        with lock:
            pending = [serial for serial, _ in issued if serial not in revoked]
        for serial, server in zip(pending[:2], (a, b), strict=False):
            with server.api() as api:
                answer = api.post(f"/v1/certificates/{serial:x}/revoke", json={})
            assert answer.status_code == 200, answer.text
            revoked.append(serial)
        for server in (a, b):
            crls.append(_crl(server, issuing))
    for thread in threads:
        thread.join(60)
    assert errors == []
    serials = [serial for serial, _ in issued]
    assert len(serials) == 4 * 3 * len(devices)
    assert len(set(serials)) == len(serials)  # G1 across replicas
    # G2: no two different CRLs carry one number, and each replica's only go up
    by_number: dict[int, bytes] = {}
    for _, number, der in crls:
        assert by_number.setdefault(number, der) == der, f"two CRLs numbered {number}"
    for server in (a, b):
        numbers = [number for url, number, _ in crls if url == server.http_url]
        assert numbers == sorted(numbers)
    # every revoked serial is in the CRL each replica publishes now
    for server in (a, b):
        _, _, der = _crl(server, issuing)
        listed = {entry.serial_number for entry in x509.load_der_x509_crl(der)}
        assert set(revoked) <= listed


def _crl(server: Server, issuing: x509.Certificate) -> tuple[str, int, bytes]:
    ca_id = _issuing_id(server)
    answer = httpx.get(f"{server.http_url}/crl/{ca_id}.crl", timeout=10)
    assert answer.status_code == 200
    crl = x509.load_der_x509_crl(answer.content)
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return server.http_url, number, answer.content


def _issuing_id(server: Server) -> str:
    rows = server.sql("SELECT id FROM cas WHERE role = 'issuing'")
    return str(rows[0][0])


def test_replicas_ok_leader_killed_the_other_takes_over(
        replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    _until(lambda: sorted(leading(a) + leading(b)) == SINGLETONS, TAKEOVER_SECONDS)
    # kill the replica that leads the CRL refresher; the survivor must take every job
    victim, survivor = (a, b) if "crl-refresher" in leading(a) else (b, a)
    victim.crash()
    took = _until(lambda: leading(survivor) == SINGLETONS, TAKEOVER_SECONDS)
    assert took < TAKEOVER_SECONDS
    # the refresher runs on the survivor: a revocation becomes a CRL with no one asking
    device = "replica-failover"
    survivor.register(device)
    with survivor.api() as api:
        answer = api.post("/v1/certificates",
                          json={"device": device, "csr": make_csr(device).decode()})
        assert answer.status_code == 201, answer.text
        serial = int(answer.json()["serial"], 16)
        before = _newest_crl(survivor)
        assert api.post(f"/v1/certificates/{serial:x}/revoke", json={}).status_code == 200
    _until(lambda: _newest_crl(survivor) > before, 5.0)
    # the victim comes back as a follower: the survivor keeps every job
    victim.start()
    assert ready(victim)[0] == 200
    time.sleep(TAKEOVER_SECONDS)
    assert leading(victim) == [] and leading(survivor) == SINGLETONS


def _newest_crl(server: Server) -> int:
    rows = server.sql("SELECT coalesce(max(number), 0) FROM crls")
    return int(rows[0][0])


def _slow_import(server: Server, device_ids: list[str], sent: threading.Event,
                 answers: list[httpx.Response | Exception]) -> None:
    rows = ",".join(f'{{"row": {n}, "data": {{"id": "{d}", "type": "sensor"}}}}'
                    for n, d in enumerate(device_ids, 1))
    body = f'{{"rows": [{rows}]}}'.encode()
    half = len(body) // 2

    def chunks() -> Iterator[bytes]:
        yield body[:half]
        sent.set()  # the request is in flight: SIGTERM comes now
        time.sleep(1.5)
        yield body[half:]

    try:
        with server.api() as api:
            answers.append(api.post("/v1/devices/import", content=chunks(),
                                    headers={"Content-Type": "application/json",
                                             "Content-Length": str(len(body))}))
    except Exception as e:  # the test reports it
        answers.append(e)


def test_replicas_ok_sigterm_drains_in_flight_and_hands_over(
        replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    _until(lambda: sorted(leading(a) + leading(b)) == SINGLETONS, TAKEOVER_SECONDS)
    leader, other = (a, b) if leading(a) else (b, a)
    assert leading(leader) == SINGLETONS
    device_ids = [f"drain-{i}" for i in range(50)]
    sent = threading.Event()
    answers: list[httpx.Response | Exception] = []
    request = threading.Thread(target=_slow_import, args=(leader, device_ids, sent, answers))
    request.start()
    assert sent.wait(10)
    time.sleep(0.2)
    assert leader.process is not None
    process = leader.process
    process.terminate()  # SIGTERM to serve alone (not its group)
    # leadership is handed over while the request still uploads
    took = _until(lambda: leading(other) == SINGLETONS, TAKEOVER_SECONDS)
    request.join(30)
    (answer,) = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 200, answer.text
    assert process.wait(30) == 0
    leader.process = None
    assert took < TAKEOVER_SECONDS
    landed = leader.sql("SELECT count(*) FROM devices WHERE id LIKE 'drain-%'")
    assert landed[0][0] == len(device_ids)
    # stopped: it accepts nothing more
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{leader.http_url}/healthz", timeout=2)
    leader.start()  # the module's fixture stops both
    assert ready(leader)[0] == 200

