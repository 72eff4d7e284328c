"""Where the CLI's URL and token come from: empty and odd values are refused, not skipped.

Issue 12 (tester): ``iotiam --token "" whoami`` ran with the profile's bootstrap admin
token, so ``iotiam --token "$T" ...`` with ``T`` unset ran as admin; and a base URL with
a query (``.../v1/devices?x=``) turned ``whoami`` into a device listing.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import httpx
import pytest

from iotiam.cli import client as cli_client

from .commands import CLIS, assert_one_line_error, invoke

ADMIN = "bootstrap-admin-token"


class Api:
    """An API that says who the bearer is, and remembers every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        bearer = request.headers["Authorization"].removeprefix("Bearer ")
        return httpx.Response(200, json={"subject": f"token:{bearer}", "role": "viewer",
                                         "org": "root", "scopes": []})


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Api:
    """A profile holding the admin token, and the CLI's client routed to an :class:`Api`."""
    for name in ("IOTIAM_URL", "IOTIAM_TOKEN", "IOTIAM_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "profile.json").write_text(json.dumps(
        {"url": "https://127.0.0.1:18443", "token": ADMIN}))
    seen = Api()
    monkeypatch.setattr(cli_client.httpx, "Client",
                        functools.partial(httpx.Client, transport=httpx.MockTransport(seen)))
    return seen


def _whoami(tmp_path: Path, capsys: pytest.CaptureFixture[str], *options: str
            ) -> tuple[int, str]:
    argv = ["--data-dir", str(tmp_path), *options, "whoami"]
    result = invoke(CLIS[0], argv, capsys)
    if result.rc == 0:
        return 0, result.out
    return result.rc, assert_one_line_error(result, argv)


def test_ok_the_profile_token_when_nothing_is_given(api: Api, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _whoami(tmp_path, capsys)
    assert rc == 0 and ADMIN in out


def test_ok_the_flag_beats_the_variable(api: Api, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IOTIAM_TOKEN", "viewer-token")
    assert _whoami(tmp_path, capsys)[1].count("viewer-token") == 1
    rc, out = _whoami(tmp_path, capsys, "--token", "flag-token")
    assert rc == 0 and "flag-token" in out


EMPTY = {
    "fail/empty-token-flag": (["--token", ""], {}, "--token is empty"),
    "fail/blank-token-flag": (["--token", "  "], {}, "--token is empty"),
    "fail/empty-token-flag-over-variable": (["--token", ""], {"IOTIAM_TOKEN": "viewer"},
                                            "--token is empty"),
    "fail/empty-token-variable": ([], {"IOTIAM_TOKEN": ""}, "IOTIAM_TOKEN is empty"),
    "fail/empty-url-flag": (["--url", ""], {}, "--url is empty"),
    "fail/empty-url-variable": ([], {"IOTIAM_URL": ""}, "IOTIAM_URL is empty"),
}


@pytest.mark.parametrize("case", list(EMPTY), ids=list(EMPTY))
def test_empty_is_refused(case: str, api: Api, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    options, environment, expected = EMPTY[case]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    rc, line = _whoami(tmp_path, capsys, *options)
    assert (rc, line) == (2, f"error: {expected}")
    assert api.requests == []  # nothing was sent, with the admin token or any other


BAD_URLS = {
    "fail/query": "https://127.0.0.1:18443/v1/devices?x=",
    "fail/empty-query": "https://127.0.0.1:18443?",
    "fail/fragment": "https://127.0.0.1:18443/#x",
    "fail/path": "https://127.0.0.1:18443/v1/devices",
    "fail/no-host": "https:///v1",
    "fail/bad-port": "https://127.0.0.1:99999",
}


@pytest.mark.parametrize("case", list(BAD_URLS), ids=list(BAD_URLS))
def test_url_that_is_not_a_base(case: str, api: Api, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    rc, line = _whoami(tmp_path, capsys, "--url", BAD_URLS[case])
    assert rc == 2 and line.startswith("error: --url "), line
    assert api.requests == []


def test_profile_url_that_is_not_a_base(api: Api, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profile.json").write_text(json.dumps(
        {"url": "https://127.0.0.1:18443/v1/devices?x=", "token": ADMIN}))
    rc, line = _whoami(tmp_path, capsys)
    assert rc == 1 and "the profile's url" in line, line
    assert api.requests == []


@pytest.mark.parametrize("url", ["https://127.0.0.1:18443", "https://127.0.0.1:18443/",
                                 "http://[::1]:8443", "https://iam.example"],
                         ids=["ok/bare", "ok/slash", "ok/ipv6", "ok/no-port"])
def test_ok_base_url(url: str, api: Api, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = _whoami(tmp_path, capsys, "--url", url)
    assert rc == 0
    assert api.requests[0].url.path == "/v1/whoami"
