"""Admin API tokens: kept only as hashes, refused once revoked or expired, and every
authentication failure is a 401 problem with a ``WWW-Authenticate`` challenge."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import httpx
import pytest
from expect import assert_problem, audit_records, row_counts
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import Installation
from iotiam.admin.service import AdminTokens
from iotiam.changes import AdminTokenRevoked, Published
from iotiam.errors import Unauthenticated
from iotiam.storage.tables.admin import admin_tokens

CHALLENGE = 'Bearer realm="iotiam"'


def create(installation: Installation, **body: Any) -> dict[str, Any]:
    answer = installation.api().post("/v1/tokens", json={"name": "ci", "role": "operator",
                                                         **body})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def assert_unauthenticated(answer: httpx.Response, detail: str) -> None:
    assert_problem(answer, 401, detail)
    assert answer.headers["www-authenticate"] == CHALLENGE


def bare_client(installation: Installation) -> TestClient:
    """A client of the admin API that sends no Authorization header of its own."""
    client = installation.api()
    del client.headers["Authorization"]
    return client


def test_token_ok_shape(installation: Installation) -> None:
    created = create(installation, org="root", ttl_seconds=3600)
    token_id = created["id"]
    assert created["token"].startswith(f"iotiam_{token_id}_")
    assert (created["role"], created["org"], created["created_by"], created["expires_at"]) == (
        "operator", "root", "token:bootstrap-admin", "2026-03-01T13:00:00+00:00")
    whoami = installation.api(created["token"]).get("/v1/whoami").json()
    assert whoami == {"name": "token:ci", "role": "operator", "org": "root",
                      "org_path": "/root/"}


def test_token_stored_hashed(installation: Installation) -> None:
    created = create(installation)
    plaintext = created["token"]
    secret = plaintext.removeprefix(f"iotiam_{created['id']}_")
    with installation.services.database.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(admin_tokens))]
    stored = "\n".join(str(value) for r in rows for value in r.values())
    assert plaintext not in stored
    assert secret not in stored
    assert installation.admin_token.split("_")[-1] not in stored
    mine = next(r for r in rows if r["id"] == created["id"])
    assert mine["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    # nor is it anywhere in the API's answers after creation, or in the audit log
    api = installation.api()
    assert secret not in api.get("/v1/tokens").text
    assert secret not in api.get("/v1/audit/export").text


def test_token_fail_revoked(installation: Installation) -> None:
    created = create(installation)
    user = installation.api(created["token"])
    assert user.get("/v1/whoami").status_code == 200
    installation.clock.advance(timedelta(minutes=1))
    assert installation.api().delete(f"/v1/tokens/{created['id']}").status_code == 204
    assert_unauthenticated(user.get("/v1/whoami"), "this token was revoked")
    assert_unauthenticated(user.post("/v1/devices", json={"id": "d", "type": "sensor"}),
                           "this token was revoked")
    listed = {t["id"]: t for t in installation.api().get("/v1/tokens").json()["items"]}
    assert listed[created["id"]]["revoked_at"] == "2026-03-01T12:01:00+00:00"
    records = audit_records(installation.api())
    assert any((r["tag"], r["subject"]) == ("admin:token:revoked", f"token:{created['id']}")
               for r in records)
    # the two refused requests with the revoked token are audited as denied access
    denied = [r for r in records if r["tag"] == "admin:access:denied"]
    assert [r["outcome"] for r in denied[-2:]] == ["denied", "denied"]
    assert denied[-1]["reason"] == "this token was revoked"


def test_token_revoke_is_final(installation: Installation) -> None:
    created = create(installation)
    api = installation.api()
    api.delete(f"/v1/tokens/{created['id']}")
    installation.clock.advance(timedelta(hours=1))
    assert api.delete(f"/v1/tokens/{created['id']}").status_code == 204
    listed = {t["id"]: t for t in api.get("/v1/tokens").json()["items"]}
    assert listed[created["id"]]["revoked_at"] == "2026-03-01T12:00:00+00:00"
    assert_unauthenticated(installation.api(created["token"]).get("/v1/whoami"),
                           "this token was revoked")


def test_token_fail_expired(installation: Installation) -> None:
    created = create(installation, ttl_seconds=3600)
    user = installation.api(created["token"])
    installation.clock.advance(timedelta(seconds=3599))
    assert user.get("/v1/whoami").status_code == 200
    installation.clock.advance(timedelta(seconds=1))
    assert_unauthenticated(user.get("/v1/whoami"), "this token has expired")
    assert_unauthenticated(user.get("/v1/devices"), "this token has expired")


def test_token_ok_without_ttl_never_expires(installation: Installation) -> None:
    created = create(installation)
    installation.clock.advance(timedelta(days=3650))
    assert installation.api(created["token"]).get("/v1/whoami").status_code == 200


def test_token_fail_revoke_unknown(installation: Installation) -> None:
    answer = installation.api().delete("/v1/tokens/0123456789abcdef")
    assert_problem(answer, 404, "token '0123456789abcdef' not found")


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_token_fail_list_or_revoke_below_admin(installation: Installation, role: str) -> None:
    victim = create(installation)
    api = installation.api(installation.token(role))
    assert_problem(api.get("/v1/tokens"), 403, "listing tokens needs the admin role")
    assert_problem(api.delete(f"/v1/tokens/{victim['id']}"), 403,
                   "revoking tokens needs the admin role")
    assert installation.api(victim["token"]).get("/v1/whoami").status_code == 200


def test_token_fail_blank_name(installation: Installation) -> None:
    before = row_counts(installation)
    answer = installation.api().post("/v1/tokens", json={"name": "   ", "role": "viewer"})
    assert_problem(answer, 400, "token name must be 1-200 characters")
    assert row_counts(installation) == before


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token iotiam_0123456789abcdef_" + "a" * 43,
    ],
    ids=["missing", "empty", "scheme-only", "scheme-and-space", "basic", "other-scheme"],
)
def test_auth_fail_malformed_header(installation: Installation, header: str | None) -> None:
    client = bare_client(installation)
    headers = {} if header is None else {"Authorization": header}
    answer = client.get("/v1/whoami", headers=headers)
    assert_unauthenticated(answer, "send an admin token as 'Authorization: Bearer <token>'")


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("not-a-token", "malformed bearer token"),
        ("iotiam_0123456789abcdef_short", "malformed bearer token"),
        ("iotiam_XYZ_" + "a" * 43, "malformed bearer token"),
        ("iotiam_0123456789abcdef_" + "a" * 43, "unknown bearer token"),
    ],
    ids=["garbage", "short-secret", "bad-id", "unknown-id"],
)
def test_auth_fail_bad_token(installation: Installation, token: str, detail: str) -> None:
    answer = bare_client(installation).get("/v1/whoami",
                                           headers={"Authorization": f"Bearer {token}"})
    assert_unauthenticated(answer, detail)


def test_auth_fail_right_id_wrong_secret(installation: Installation) -> None:
    created = create(installation)
    forged = f"iotiam_{created['id']}_" + "A" * 43
    assert_unauthenticated(installation.api(forged).get("/v1/whoami"), "unknown bearer token")


def test_auth_ok_scheme_case_insensitive(installation: Installation) -> None:
    answer = bare_client(installation).get(
        "/v1/whoami", headers={"Authorization": f"bearer {installation.admin_token}"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/v1/devices"), ("post", "/v1/devices"), ("get", "/v1/audit/verify"),
     ("get", "/v1/audit/export"), ("post", "/v1/tokens"), ("get", "/v1/inventory"),
     ("post", "/v1/certificates/ab/revoke"), ("get", "/v1/ca")],
)
def test_auth_fail_every_endpoint_needs_a_token(installation: Installation, method: str,
                                                path: str) -> None:
    before = row_counts(installation)
    answer = getattr(bare_client(installation), method)(path)
    assert_unauthenticated(answer, "Authorization: Bearer")
    assert row_counts(installation) == before


def test_token_fail_kept_token_revoked_through_the_feed(installation: Installation) -> None:
    """A process keeps the tokens it authenticated and drops one when the change feed
    delivers its ``AdminTokenRevoked``, whoever revoked it."""
    created = create(installation)
    services = installation.services
    kept = services.admin_tokens
    assert kept.authenticate(created["token"]).name == "token:ci"
    assert kept.known(created["token"]) is not None
    # not through ``kept``: only the feed can tell it (as it tells the other processes)
    other = AdminTokens(services.database, installation.clock, services.audit)
    other.revoke(other.authenticate(installation.admin_token), created["id"])
    assert kept.known(created["token"]) is None
    with pytest.raises(Unauthenticated, match="this token was revoked"):
        kept.authenticate(created["token"])
    # delivered again (at least once): still refused, nothing kept
    kept.forget(Published(position=1, change=AdminTokenRevoked(created["id"])))
    assert kept.known(created["token"]) is None


def test_token_fail_kept_token_expires(installation: Installation) -> None:
    created = create(installation, ttl_seconds=60)
    tokens = installation.services.admin_tokens
    assert tokens.authenticate(created["token"]).name == "token:ci"
    installation.clock.advance(timedelta(seconds=60))
    assert tokens.known(created["token"]) is None
    with pytest.raises(Unauthenticated, match="this token has expired"):
        tokens.authenticate(created["token"])


def test_auth_fail_kept_token_wrong_secret(installation: Installation) -> None:
    created = create(installation)
    tokens = installation.services.admin_tokens
    tokens.authenticate(created["token"])
    forged = f"iotiam_{created['id']}_{'x' * 43}"
    assert tokens.known(forged) is None
    with pytest.raises(Unauthenticated, match="unknown bearer token"):
        tokens.authenticate(forged)
