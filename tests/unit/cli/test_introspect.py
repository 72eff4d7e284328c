"""``token introspect`` answers with JSON and its exit code, as docs/cli.md says.

Issue 12 (tester): ``iotiam token introspect <junk>`` prints multi-line JSON and exits
1. That is the answer for an inactive token (RFC 7662 §2.2), not a failure: kept, and
documented in the command's help and in docs/cli.md.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import httpx
import pytest

from iotiam.cli import client as cli_client

from .commands import CLIS, invoke

DOCS = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


@pytest.fixture
def introspection(monkeypatch: pytest.MonkeyPatch) -> None:
    """An authorization server that knows one token, ``good``."""

    def answer(request: httpx.Request) -> httpx.Response:
        token = dict(httpx.QueryParams(request.content.decode()))["token"]
        if token == "good":
            return httpx.Response(200, json={"active": True, "scope": "telemetry:write"})
        return httpx.Response(200, json={"active": False})

    monkeypatch.setattr(cli_client.httpx, "Client", functools.partial(
        httpx.Client, transport=httpx.MockTransport(answer)))


@pytest.mark.parametrize(("token", "rc"), [("good", 0), ("junk", 1)],
                         ids=["ok/active", "ok/inactive-exits-1"])
def test_introspect_answers(token: str, rc: int, introspection: None, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path), "--url", "https://127.0.0.1:18443", "--token", "t",
            "token", "introspect", token]
    result = invoke(CLIS[0], argv, capsys)
    assert result.rc == rc and result.err == ""
    assert json.loads(result.out)["active"] is (rc == 0)


def test_ok_the_exit_code_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(CLIS[0], ["token", "introspect", "--help"], capsys)
    assert result.rc == 0 and "exit 1 if inactive" in " ".join(result.out.split())
    docs = " ".join(DOCS.read_text().split())
    assert "`token introspect`: 1 for an inactive token" in docs
    assert '`{"active": false}` for a token that is unknown, malformed' in docs
