"""``iotiam discover``: imports stream a file to the API and report per line; misuse is
one error line and a non-zero exit. The API is the real app, in process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Installation

from .commands import CLIS, assert_one_line_error, cli_against, invoke

LINES = [{"seen_at": 1772359200, "mac": "02:00:00:00:00:01", "hostname": "cam-1"},
         {"mac": "not a mac"},
         {"seen_at": 1772359260, "hostname": "cam-1", "ip": "10.0.0.4"}]


@pytest.fixture
def cli(memory_installation: Installation, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> list[str]:
    """The global options of a CLI talking to the memory installation's API."""
    options = cli_against(memory_installation, monkeypatch, tmp_path)
    return options


def scan(tmp_path: Path, lines: list[dict[str, Any]] = LINES) -> str:
    path = tmp_path / "seen.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_import_list_show_ok(cli: list[str], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(CLIS[0], [*cli, "discover", "import", "--source", "jsonl", "--site", "hq",
                              scan(tmp_path)], capsys)
    assert result.rc == 0, result
    report, refused = result.out.strip().splitlines()
    assert report == ("jsonl: read 3, added 2, duplicates 0, matched 0, new assets 1, "
                      "refused 1")
    assert refused.startswith("  line 2: ") and "MAC" in refused
    listed = invoke(CLIS[0], [*cli, "discover", "list", "--json"], capsys)
    (asset,) = json.loads(listed.out)
    assert (asset["site"], asset["hostname"], asset["sightings"]) == ("hq", "cam-1", 2)
    shown = invoke(CLIS[0], [*cli, "discover", "show", asset["id"]], capsys)
    assert shown.rc == 0 and "10.0.0.4" in shown.out
    again = invoke(CLIS[0], [*cli, "discover", "import", "--source", "jsonl", "--site", "hq",
                             "--json", scan(tmp_path)], capsys)
    assert json.loads(again.out)["duplicates"] == 2


@pytest.mark.parametrize(("args", "rc", "words"), [
    (["--source", "nosuch"], 1, "known sources: arp, cmdb, dhcpd"),
    (["--source", "jsonl", "--option", "novalue"], 2, "key=value"),
    (["--source", "jsonl", "--site", "x" * 300], 1, "site"),
    (["--source", "jsonl", "MISSING"], 1, "cannot read"),
    (["--source", "cmdb", "--option", "map.mac=MAC", "--option", " map.mac=Mac2"], 2,
     "--option 'map.mac' is given twice"),
], ids=["fail/unknown-source", "fail/bad-option", "fail/long-site", "fail/missing-file",
        "fail/option-twice"])
def test_import_fail_one_line(cli: list[str], tmp_path: Path, args: list[str], rc: int,
                              words: str, capsys: pytest.CaptureFixture[str]) -> None:
    file = [] if "MISSING" in args else [scan(tmp_path)]
    argv = [*cli, "discover", "import",
            *[str(tmp_path / "nope.xml") if a == "MISSING" else a for a in args], *file]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert result.rc == rc and words in line, result


def test_import_fail_garbage_file(cli: list[str], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "scan.xml"
    path.write_text("<nmaprun>\n</nmaprun>\n")
    argv = [*cli, "discover", "import", "--source", "jsonl", str(path)]
    line = assert_one_line_error(invoke(CLIS[0], argv, capsys), argv)
    assert "no jsonl record" in line and "(HTTP 400)" in line


def test_show_fail_unknown(cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*cli, "discover", "show", "as-nope"]
    assert "(HTTP 404)" in assert_one_line_error(invoke(CLIS[0], argv, capsys), argv)


def test_adopt_ok_selected_by_site(cli: list[str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(CLIS[0], [*cli, "discover", "import", "--source", "jsonl", "--site", "hq",
                            scan(tmp_path)], capsys).rc == 0
    adopted = invoke(CLIS[0], [*cli, "discover", "adopt", "--type", "sensor", "--seen-at",
                               "hq", "--claim-ttl", "1h", "--yes", "--json"], capsys)
    assert adopted.rc == 0, adopted
    (item,) = json.loads(adopted.out)
    assert (item["device"], item["ok"]) == ("cam-1", True) and item["claim"]["token"]
    device = invoke(CLIS[0], [*cli, "device", "show", "cam-1", "--json"], capsys)
    assert json.loads(device.out)["state"] == "pending"


@pytest.mark.parametrize("args, rc, message", [
    pytest.param(["--seen-at", "hq"], 2, "--type is required", id="fail/no-type"),
    pytest.param(["--type", "sensor"], 2, "name the assets", id="fail/nothing-selected"),
    pytest.param(["--type", "sensor", "--seen-at", "hq", "as-1"], 2, "not both",
                 id="fail/ids-and-filter"),
    pytest.param(["--type", "sensor", "--seen-at", "hq"], 2, "confirm with --yes",
                 id="fail/no-terminal-to-confirm"),
    pytest.param(["--type", "sensor", "--seen-at", "nowhere", "--yes"], 1,
                 "no unmanaged asset", id="fail/none-match"),
    pytest.param(["--type", "sensor", "--claim-ttl", "soon", "--seen-at", "hq"], 1,
                 "bad duration",
                 id="fail/bad-duration"),
])
def test_adopt_fail_one_line(cli: list[str], tmp_path: Path, args: list[str], rc: int,
                             message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(CLIS[0], [*cli, "discover", "import", "--source", "jsonl", "--site", "hq",
                            scan(tmp_path)], capsys).rc == 0
    argv = [*cli, "discover", "adopt", *args]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert result.rc == rc and message in line, result
    listed = invoke(CLIS[0], [*cli, "discover", "list", "--status", "unmanaged", "--json"],
                    capsys)
    assert len(json.loads(listed.out)) == 1
