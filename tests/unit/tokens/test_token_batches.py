"""Token requests answered together (group commit) keep every rule of one-by-one issuance.

One transaction per batch: each request is refused on its own, an assertion's jti is
still used once (also twice in one batch), every token and refusal has its audit
record and the chain verifies; a revocation is seen by the very next batch (G3).
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from conftest import writer_held
from iotiam.api.oauth_token_path import OAuthTokenFastPath
from iotiam.kernel import SYSTEM
from iotiam.tokens.models import (
    CLIENT_ASSERTION_TYPE,
    ClientCredentials,
    InvalidClient,
    InvalidScope,
    IssuedToken,
    TokenRequest,
)
from iotiam.tokens.reads import read_when_asked
from tokens.oauthkit import TOKEN, DeviceIdentity, OAuthKit, issued_count, token_fast_path


def by_assertion(assertion: str, scope: str | None = None) -> TokenRequest:
    """A client-credentials request authenticated with private_key_jwt."""
    return TokenRequest(grant_type="client_credentials", scope=scope, credentials=ClientCredentials(
        assertion_type=CLIENT_ASSERTION_TYPE, assertion=assertion, source="192.0.2.1"))


def by_certificate(device: DeviceIdentity) -> TokenRequest:
    """A client-credentials request authenticated with the device's TLS certificate."""
    return TokenRequest(grant_type="client_credentials", credentials=ClientCredentials(
        client_id=device.device_id, certificate_der=device.der, source="192.0.2.1"))


def audit_ok(kit: OAuthKit) -> bool:
    """Whether the whole audit chain verifies (G7)."""
    return bool(kit.inst.services.audit.verify(SYSTEM).ok)


def refusals(kit: OAuthKit) -> int:
    """How many token refusals the audit log holds."""
    from sqlalchemy import func, select

    from iotiam.storage.tables.audit import audit_records

    with kit.inst.services.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_records).where(
            audit_records.c.tag == "device:access-token:refused")).scalar_one())


def test_ok_a_batch_issues_and_refuses_each_request_on_its_own(kit: OAuthKit,
                                                                d1: DeviceIdentity) -> None:
    oauth = kit.inst.services.oauth
    replayed = kit.assertion("d1", d1.key)
    before, refused_before = issued_count(kit), refusals(kit)
    outcomes = oauth.issue_tokens([
        by_certificate(d1),
        by_assertion(replayed),
        by_assertion(replayed),  # the same jti in the same transaction: used once only
        by_assertion(kit.assertion("d1", d1.key), scope="mqtt:publish:devices/d9/#"),
        by_assertion(kit.assertion("d1", d1.key)),
    ])
    assert [type(o) for o in outcomes] == [IssuedToken, IssuedToken, InvalidClient,
                                           InvalidScope, IssuedToken]
    assert "replayed" in str(outcomes[2])
    assert issued_count(kit) == before + 3 and refusals(kit) == refused_before + 2
    assert audit_ok(kit)
    bound = outcomes[0]
    assert isinstance(bound, IssuedToken) and bound.bound
    assert len({o.jti for o in outcomes if isinstance(o, IssuedToken)}) == 3


def test_ok_a_refused_request_writes_nothing_but_its_refusal(kit: OAuthKit,
                                                            d1: DeviceIdentity) -> None:
    oauth = kit.inst.services.oauth
    assertion = kit.assertion("d1", d1.key)
    (refused,) = oauth.issue_tokens([by_assertion(assertion, scope="mqtt:publish:other/#")])
    assert isinstance(refused, InvalidScope)
    # its jti was not consumed: the refused request changed nothing but the audit log
    (issued,) = oauth.issue_tokens([by_assertion(assertion)])
    assert isinstance(issued, IssuedToken)
    (replay,) = oauth.issue_tokens([by_assertion(assertion)])
    assert isinstance(replay, InvalidClient)


def test_ok_revocations_show_in_the_next_batch(kit: OAuthKit, d1: DeviceIdentity) -> None:
    services = kit.inst.services
    d2 = kit.device("d2")
    first = services.oauth.issue_tokens([by_certificate(d1), by_certificate(d2)])
    assert all(isinstance(o, IssuedToken) for o in first)
    # G3: a revoked client and a revoked certificate are refused at once
    services.oauth.clients.revoke(SYSTEM, "d1")
    services.pki.revoke_certificate(SYSTEM, d2.serial)
    second = services.oauth.issue_tokens([by_certificate(d1), by_certificate(d2)])
    assert isinstance(second[0], InvalidClient) and "revoked" in str(second[0])
    assert isinstance(second[1], InvalidClient) and "revoked" in str(second[1])
    assert audit_ok(kit)


def test_ok_concurrent_requests_share_transactions(kit: OAuthKit, d1: DeviceIdentity) -> None:
    app = token_fast_path(kit)
    batches: list[int] = []
    issue = app.batcher._run
    app.batcher._run = lambda requests: batches.append(len(requests)) or issue(requests)
    data = {"grant_type": "client_credentials", "client_id": "d1"}

    async def many() -> list[httpx.Response]:
        async with _http(app) as http:
            return list(await asyncio.gather(*(
                http.post(TOKEN, data=data, headers=kit.cert_header(d1)) for _ in range(40))))

    before = issued_count(kit)
    answers = asyncio.run(many())
    assert [a.status_code for a in answers] == [200] * 40
    assert sum(batches) == 40 and len(batches) < 40  # group commit
    assert issued_count(kit) == before + 40
    assert len({a.json()["access_token"] for a in answers}) == 40
    assert audit_ok(kit)


def _http(app: OAuthTokenFastPath) -> httpx.AsyncClient:
    """An in-process client of the app, from a trusted-proxy address."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://iotiam")


def _recording_threads(kit: OAuthKit) -> tuple[OAuthTokenFastPath, list[str]]:
    """The fast path, and the names of the threads its batches run on, in order."""
    app = token_fast_path(kit)
    threads: list[str] = []
    issue = app.batcher._run

    def recorded(requests: object) -> object:
        threads.append(threading.current_thread().name)
        return issue(requests)  # type: ignore[arg-type]

    app.batcher._run = recorded  # type: ignore[assignment]
    return app, threads


def test_ok_a_free_sqlite_writer_answers_on_the_event_loop(kit: OAuthKit,
                                                           d1: DeviceIdentity) -> None:
    app, threads = _recording_threads(kit)
    data = {"grant_type": "client_credentials", "client_id": "d1"}

    async def many() -> tuple[str, list[httpx.Response]]:
        async with _http(app) as http:
            answers = await asyncio.gather(*(
                http.post(TOKEN, data=data, headers=kit.cert_header(d1)) for _ in range(10)))
        return threading.current_thread().name, list(answers)

    loop_thread, answers = asyncio.run(many())
    assert [a.status_code for a in answers] == [200] * 10
    # SQLite: no hand-off to a thread; PostgreSQL waits on the network, so on the thread
    expected = loop_thread if kit.inst.services.database.is_sqlite else "oauth-tokens_0"
    assert threads and set(threads) == {expected}
    assert audit_ok(kit)


@pytest.mark.parametrize("installation", ["sqlite"], indirect=True)  # PostgreSQL: no writer lock
def test_ok_a_busy_writer_sends_the_batch_to_the_thread(kit: OAuthKit,
                                                       d1: DeviceIdentity) -> None:
    app, threads = _recording_threads(kit)
    data = {"grant_type": "client_credentials", "client_id": "d1"}

    async def while_held(leave: threading.Event) -> httpx.Response:
        async with _http(app) as http:
            answer = asyncio.ensure_future(http.post(TOKEN, data=data,
                                                     headers=kit.cert_header(d1)))
            # the loop is not blocked by the held writer: time passes, the request waits
            await asyncio.sleep(0.3)
            waited = not answer.done()
            leave.set()
            response = await answer
            assert waited
            return response

    with writer_held(kit.inst.services.database) as leave:
        response = asyncio.run(while_held(leave))
    assert response.status_code == 200 and response.json()["access_token"]
    assert threads == ["oauth-tokens_0"]
    assert audit_ok(kit)


def test_fail_a_hostile_client_id_spoils_no_one_elses_request(kit: OAuthKit,
                                                             d1: DeviceIdentity) -> None:
    # PostgreSQL refuses a NUL byte in text, and an error aborts the whole transaction:
    # an id no client could have is unknown without asking the database
    before = issued_count(kit)
    outcomes = kit.inst.services.oauth.issue_tokens([
        by_certificate(d1),
        by_assertion(kit.assertion("d1\x00x", d1.key)),
        by_assertion(kit.assertion("d1 ' OR 1=1 --", d1.key)),
        by_certificate(d1),
    ])
    assert [type(o) for o in outcomes] == [IssuedToken, InvalidClient, InvalidClient,
                                           IssuedToken]
    assert "unknown client" in str(outcomes[1])
    assert issued_count(kit) == before + 2
    assert audit_ok(kit)


@pytest.mark.parametrize("installation", ["sqlite"], indirect=True)  # SQLite's statement trace
def test_ok_a_batch_reads_its_rows_in_one_query_per_kind(kit: OAuthKit) -> None:
    from sqlalchemy import event

    devices = [kit.device(f"r{i}") for i in range(6)]
    oauth = kit.inst.services.oauth
    statements: list[str] = []

    def trace(dbapi_connection: object, *_: object) -> None:
        dbapi_connection.set_trace_callback(statements.append)  # type: ignore[attr-defined]

    engine = kit.inst.services.database.engine
    event.listen(engine, "checkout", trace)
    try:
        def count(batch: list[TokenRequest]) -> int:
            statements.clear()
            outcomes = oauth.issue_tokens(batch)
            assert all(isinstance(o, IssuedToken) for o in outcomes)
            return sum(s.startswith("SELECT") for s in statements)

        count([by_certificate(devices[0])])  # the first batch also loads the key ring
        one = count([by_certificate(devices[0])])
        six = count([by_certificate(d) for d in devices])
        mixed = count([by_certificate(d) for d in devices[:3]] +
                      [by_assertion(kit.assertion(d.device_id, d.key)) for d in devices[3:]])
    finally:
        event.remove(engine, "checkout", trace)
    # clients, certificates, devices and their standing: one query each for the batch
    assert six == one == 5  # and the audit head
    assert mixed > one  # assertion keys come from the device's live certificates


def test_ok_without_read_ahead_each_request_reads_its_own_rows(
        kit: OAuthKit, d1: DeviceIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain ``ReadsAhead`` (no rows read ahead) judges a batch exactly the same."""
    oauth = kit.inst.services.oauth
    monkeypatch.setattr(oauth._auth, "_reads_ahead", read_when_asked)
    replayed = kit.assertion("d1", d1.key)
    outcomes = oauth.issue_tokens([
        by_certificate(d1),
        by_assertion(replayed),
        by_assertion(replayed),
        by_assertion(kit.assertion("d1", d1.key), scope="mqtt:publish:devices/d9/#"),
    ])
    assert [type(o) for o in outcomes] == [IssuedToken, IssuedToken, InvalidClient,
                                           InvalidScope]
    assert audit_ok(kit)
