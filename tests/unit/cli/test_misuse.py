"""G10 on the command line: every command of both CLIs, misused, fails on one line.

Missing arguments, an unknown option and a badly typed value are tried on every
command found in the Typer trees (in-process, to stay fast); a sample runs through the
real console scripts as subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .commands import (
    CLIS,
    Command,
    annotation,
    assert_one_line_error,
    command_line,
    commands,
    invoke,
    is_flag,
)

ALL = commands()
WITH_REQUIRED = [(c, p) for c in ALL for p in c.params if p.required]
TYPED = [(c, p) for c in ALL for p in c.params
         if not is_flag(p) and (p.type_descriptor.is_choice or p.type_descriptor.is_path
                                or annotation(p) in (int, float))]
DURATIONS = [(c, p) for c in ALL for p in c.params if p.name in ("ttl", "lifetime", "grace",
                                                                 "max_age")]

LIMITS = [(c, p) for c in ALL for p in c.params if p.name == "limit"]


def _id(case: tuple[Command, Any]) -> str:
    command, param = case
    return f"fail/{command.id.replace(' ', '-')}/{param.name}"


def test_ok_the_tree_is_walked() -> None:
    names = {c.id for c in ALL}
    assert {"iotiam device add", "iotiam psk create", "iotiam firmware signer add",
            "iotiam-agent enroll", "iotiam-agent run"} <= names
    assert len(TYPED) > 20 and len(WITH_REQUIRED) > 50 and len(DURATIONS) >= 5


@pytest.mark.parametrize("case", WITH_REQUIRED, ids=[_id(c) for c in WITH_REQUIRED])
def test_missing_parameter(case: tuple[Command, Any], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    command, param = case
    argv = command_line(command, tmp_path, leave_out=param)
    result = invoke(command.cli, argv, capsys)
    line = assert_one_line_error(result, argv)
    assert result.rc == 2, (argv, result)
    assert line.startswith("error: Missing "), line
    assert f"`{command.id} --help`" in line


@pytest.mark.parametrize("command", ALL, ids=[f"fail/{c.id.replace(' ', '-')}" for c in ALL])
def test_unknown_option(command: Command, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = command_line(command, tmp_path, extra=["--no-such-option"])
    result = invoke(command.cli, argv, capsys)
    line = assert_one_line_error(result, argv)
    assert result.rc == 2, (argv, result)
    assert "--no-such-option" in line


def _bad_value(param: Any) -> str:
    if param.type_descriptor.is_path:
        return "/nonexistent/iotiam/input"
    if param.type_descriptor.is_choice:
        return "no-such-choice"
    return "eleven"


@pytest.mark.parametrize("case", TYPED, ids=[_id(c) for c in TYPED])
def test_badly_typed_value(case: tuple[Command, Any], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    command, param = case
    bad = _bad_value(param)
    argv = command_line(command, tmp_path, replace=(param, bad))
    result = invoke(command.cli, argv, capsys)
    line = assert_one_line_error(result, argv)
    if not param.type_descriptor.is_path:
        assert result.rc == 2, (argv, result)
        names = {param.opts[0].upper(), str(param.metavar).upper()}
        assert "Invalid value for" in line and any(n in line.upper() for n in names), line


@pytest.mark.parametrize("case", DURATIONS, ids=[_id(c) for c in DURATIONS])
def test_huge_duration(case: tuple[Command, Any], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    command, param = case
    argv = command_line(command, tmp_path, replace=(param, "99999999999999999999d"))
    line = assert_one_line_error(invoke(command.cli, argv, capsys), argv)
    assert "duration" in line and "longer than" in line, line


def _deep(path: Path, suffix: str = "json") -> Path:
    target = path / f"deep.{suffix}"
    target.write_text("[" * 100_000 + "]" * 100_000)
    return target


LIMIT_CASES = [(c, p, v) for c, p in LIMITS for v in ("0", "-5", "1001")]


@pytest.mark.parametrize("case", LIMIT_CASES,
                         ids=[f"{_id((c, p))}/{v}" for c, p, v in LIMIT_CASES])
def test_limit_out_of_range(case: tuple[Command, Any, str], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """``device list --limit -5`` printed "0 of 0 devices" and exited 0; the API wants 1..1000."""
    command, param, value = case
    argv = command_line(command, tmp_path, replace=(param, value))
    result = invoke(command.cli, argv, capsys)
    line = assert_one_line_error(result, argv)
    assert result.rc == 2, (argv, result)
    assert "Invalid value for '--limit'" in line, line


def test_ok_every_list_command_has_a_bounded_limit() -> None:
    assert {c.id for c, _ in LIMITS} >= {"iotiam device list", "iotiam cert list",
                                         "iotiam enrollment pending", "iotiam findings list"}


DEEP_FILES = {
    "fail/device-import-json": (lambda d: ["device", "import", str(_deep(d))],
                                "nested more than"),
    # JSON lines: a bad line is a row that fails on import, reported with the others
    "fail/device-import-jsonl": (lambda d: ["device", "import", str(_deep(d, "jsonl"))],
                                 "cannot reach iotiam"),
    "fail/manufacturer-manifest": (lambda d: ["manufacturer", "manifest", "acme",
                                              str(_deep(d))], "nested more than"),
    "fail/client-create-jwks": (lambda d: ["client", "create", "--device", "x",
                                           "--jwks", str(_deep(d))], "nested more than"),
}


@pytest.mark.parametrize("case", list(DEEP_FILES), ids=list(DEEP_FILES))
def test_deep_json_file(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = DEEP_FILES[case]
    argv = ["--data-dir", str(tmp_path), "--url", "http://127.0.0.1:9", "--token", "t",
            *make(tmp_path)]
    line = assert_one_line_error(invoke(CLIS[0], argv, capsys), argv)
    assert expected in line, line


PROFILES = {
    "fail/profile-deep": "[" * 100_000 + "]" * 100_000,
    "fail/profile-not-json": "{url: x",
    "fail/profile-a-list": '["https://127.0.0.1:1"]',
    "fail/profile-url-not-text": '{"url": 5, "token": "t"}',
}


@pytest.mark.parametrize("case", list(PROFILES), ids=list(PROFILES))
def test_bad_profile(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profile.json").write_text(PROFILES[case])
    argv = ["--data-dir", str(tmp_path), "whoami"]
    line = assert_one_line_error(invoke(CLIS[0], argv, capsys), argv)
    assert "profile" in line, line


def test_server_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profile.json").write_text(json.dumps(
        {"url": "http://127.0.0.1:9", "token": "t"}))
    argv = ["--data-dir", str(tmp_path), "device", "list"]
    line = assert_one_line_error(invoke(CLIS[0], argv, capsys), argv)
    assert "cannot reach iotiam at http://127.0.0.1:9" in line


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/\x00", "ftp://127.0.0.1:9", "nowhere"],
                         ids=["fail/control-character", "fail/scheme", "fail/no-scheme"])
def test_bad_url(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(tmp_path), "--url", url, "--token", "t", "whoami"]
    assert_one_line_error(invoke(CLIS[0], argv, capsys), argv)


def test_ok_help_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(CLIS[0], ["device", "add", "--help"], capsys)
    assert result.rc == 0
    assert "--type" in result.out


# -- the real console scripts --------------------------------------------------------

SCRIPTS = {
    "fail/iotiam-missing-argument": (["iotiam", "device", "add"], "Missing argument"),
    "fail/iotiam-unknown-option": (["iotiam", "device", "list", "--bogus"], "No such option"),
    "fail/iotiam-bad-choice": (["iotiam", "device", "list", "--state", "nope"],
                               "Invalid value for '--state'"),
    "fail/iotiam-bad-int": (["iotiam", "device", "list", "--limit", "x"],
                            "Invalid value for '--limit'"),
    "fail/iotiam-agent-missing-option": (["iotiam-agent", "renew"], "Missing option '--dir'"),
    "fail/iotiam-agent-bad-float": (["iotiam-agent", "enroll", "--dir", "d", "--server", "s",
                                     "--ca", "c", "--wait", "soon"],
                                    "Invalid value for '--wait'"),
}


@pytest.mark.parametrize("case", list(SCRIPTS), ids=list(SCRIPTS))
def test_console_script(case: str, tmp_path: Path) -> None:
    argv, expected = SCRIPTS[case]
    tool = Path(sys.executable).with_name(argv[0])
    env = {**os.environ, "IOTIAM_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([str(tool), *argv[1:]], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stdout + proc.stderr, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc
