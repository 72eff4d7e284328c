"""Walk the command trees of ``iotiam`` and ``iotiam-agent`` and run them in-process.

The tree is enumerated from the Typer apps themselves, so a command added later is
driven by the misuse tests without anyone listing it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import typer
import typer.main
from fastapi.testclient import TestClient

from conftest import Installation
from iotiam.agent import cli as agent_cli
from iotiam.api.app import create_api_app
from iotiam.cli import client as cli_client
from iotiam.cli import main as iotiam_cli

iotiam_cli.register_commands()


@dataclass(frozen=True)
class Cli:
    """One console script: its app and its entry point."""

    name: str
    app: typer.Typer
    run: Callable[[], None]


CLIS = (Cli("iotiam", iotiam_cli.app, iotiam_cli.run),
        Cli("iotiam-agent", agent_cli.app, agent_cli.run))


@dataclass(frozen=True)
class Command:
    """A leaf command: ``cli`` then ``words`` names it."""

    cli: Cli
    words: tuple[str, ...]
    params: tuple[Any, ...]

    @property
    def id(self) -> str:
        """``iotiam device add``."""
        return " ".join((self.cli.name, *self.words))


class Result(NamedTuple):
    """What one in-process invocation did."""

    rc: int
    out: str
    err: str


def commands() -> list[Command]:
    """Every leaf command of both CLIs."""
    found: list[Command] = []
    for cli in CLIS:
        found.extend(_leaves(cli, typer.main.get_command(cli.app), ()))
    return found


def _leaves(cli: Cli, command: Any, words: tuple[str, ...]) -> Iterator[Command]:
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in subcommands.items():
            yield from _leaves(cli, sub, (*words, name))
    else:
        yield Command(cli, words, tuple(command.params))


def annotation(param: Any) -> Any:
    """The parameter's Python type (``str`` for ``str | None`` and ``list[str]``)."""
    return param.type_descriptor.annotation


def is_flag(param: Any) -> bool:
    """A boolean ``--x`` that takes no value."""
    return bool(getattr(param, "is_flag", False)) or annotation(param) is bool


def is_argument(param: Any) -> bool:
    """Positional, not an ``--option``."""
    return not param.opts[0].startswith("-")


def words_for(param: Any, value: str) -> list[str]:
    """How ``value`` for ``param`` appears on a command line."""
    return [value] if is_argument(param) else [param.opts[0], value]


def usable_value(param: Any, work: Path) -> str:
    """A value of the right type, so that only what a test breaks is wrong."""
    kind = annotation(param)
    descriptor = param.type_descriptor
    if descriptor.is_choice or (isinstance(kind, type) and issubclass(kind, Enum)):
        choices = descriptor.choices
        first = choices[0]
        return str(first.value if isinstance(first, Enum) else first)
    if kind in (int, float):
        return "1"
    if kind is Path:
        target = work / "input.json"
        target.write_text('[{"id": "x", "type": "x", "serial": "x"}]')
        return str(target)
    return "x"


def command_line(command: Command, work: Path, *, leave_out: Any = None,
                 extra: Sequence[str] = (), replace: tuple[Any, str] | None = None
                 ) -> list[str]:
    """Global options, the command, every required parameter but ``leave_out``, ``extra``.

    ``replace`` gives one parameter (required or not) the value a test wants, in its
    place among the positional arguments.
    """
    line: list[str] = []
    if command.cli.name == "iotiam":
        # an API that is not there: a command that gets past parsing fails on one line
        line += ["--data-dir", str(work / "data"), "--url", "http://127.0.0.1:9",
                 "--token", "t"]
    line += command.words

    def value_of(param: Any) -> str:
        return replace[1] if replace and param is replace[0] else usable_value(param, work)

    for param in command.params:
        wanted = param.required or (replace is not None and param is replace[0])
        if param is leave_out or not wanted or is_argument(param):
            continue
        line += words_for(param, value_of(param))
    line += list(extra)
    for param in command.params:
        if not is_argument(param):
            continue
        if param is leave_out:
            break  # later arguments would shift into its place
        if param.required or (replace is not None and param is replace[0]):
            line.append(value_of(param))
    return line


def invoke(cli: Cli, argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> Result:
    """Run the console entry point in-process, as the script would; it ends in ``sys.exit``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended, _argv([cli.name, *argv]):
        cli.run()
    code = ended.value.code
    captured = capsys.readouterr()
    return Result(code if isinstance(code, int) else 1, captured.out, captured.err)


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def assert_one_line_error(result: Result, argv: Sequence[str]) -> str:
    """Non-zero exit, no traceback, one ``error:`` line on stderr that is not a bug report."""
    assert result.rc != 0, (argv, result)
    assert "Traceback" not in result.out + result.err, (argv, result)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, (argv, result)
    assert lines[0].startswith("error: "), (argv, result)
    assert "this is a bug in iotiam" not in lines[0], (argv, result)
    return lines[0]


def cli_against(installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                ) -> list[str]:
    """The global options of a CLI whose HTTP client talks to ``installation``'s real API
    app in process (any backend)."""
    app = create_api_app(installation.services)

    def client(**kwargs: Any) -> TestClient:
        return TestClient(app, base_url=kwargs["base_url"], headers=kwargs["headers"],
                          raise_server_exceptions=False)

    monkeypatch.setattr(cli_client.httpx, "Client", client)
    return ["--data-dir", str(tmp_path), "--url", "https://127.0.0.1:18443", "--token",
            installation.admin_token]
