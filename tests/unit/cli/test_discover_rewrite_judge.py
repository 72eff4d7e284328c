"""Defects an outside review found in ``iotiam discover`` (main at 5c7eea5), each
stating what a user must get (fixed since)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import Installation
from iotiam.api.app import create_api_app
from iotiam.cli import client as cli_client

from .commands import CLIS, invoke

#: what a device on the network chooses: an MQTT client id, a vendor string. ESC [ ... m
#: recolours, ESC ] 0 ; ... retitles the admin's terminal
HOSTILE = "\x1b[31mred\x1b]0;owned\x1b\\"


@pytest.fixture
def cli(memory_installation: Installation, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> list[str]:
    """The global options of a CLI talking to the memory installation's API."""
    app = create_api_app(memory_installation.services)

    def client(**kwargs: Any) -> TestClient:
        return TestClient(app, base_url=kwargs["base_url"], headers=kwargs["headers"],
                          raise_server_exceptions=False)

    monkeypatch.setattr(cli_client.httpx, "Client", client)
    return ["--data-dir", str(tmp_path), "--url", "https://127.0.0.1:18443", "--token",
            memory_installation.admin_token]


def test_fail_show_and_list_print_no_terminal_escapes(
        cli: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hostile input: whatever a scanned device calls itself, what the admin's terminal
    receives from `iotiam discover list/show` holds no ESC (0x1b) byte."""
    seen = tmp_path / "seen.jsonl"
    seen.write_text(json.dumps({"seen_at": 1772359200, "mac": "02:00:00:15:00:01",
                                "client_id": HOSTILE, "vendor": HOSTILE}) + "\n")
    imported = invoke(CLIS[0], [*cli, "discover", "import", "--source", "jsonl", "--site",
                                "hq", str(seen)], capsys)
    assert imported.rc == 0, imported
    listed = invoke(CLIS[0], [*cli, "discover", "list", "--json"], capsys)
    (asset,) = json.loads(listed.out)
    shown = invoke(CLIS[0], [*cli, "discover", "show", asset["id"]], capsys)
    assert shown.rc == 0 and "red" in shown.out, shown
    table = invoke(CLIS[0], [*cli, "discover", "list"], capsys)
    assert table.rc == 0, table
    assert "\x1b" not in shown.out + shown.err + table.out + table.err
