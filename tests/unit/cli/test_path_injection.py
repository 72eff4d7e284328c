"""Every command that talks to the API keeps typed ids inside their URL path segment.

Issue 12 item 3: ``psk create --device 'x/../c-victim/revoke-certificates?'`` revoked
another device's certificates. Each command runs in-process against a recording API.
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from iotiam.cli import client as cli_client

from .commands import (
    Command,
    annotation,
    assert_one_line_error,
    command_line,
    commands,
    invoke,
    is_flag,
    words_for,
)

#: would reach another device's revoke-certificates route if it left its segment
HOSTILE = "x/../../v1/devices/victim/revoke-certificates?#"

# -- every command that talks to the API ------------------------------------------------

#: commands that act locally first (files, a server of their own) rather than on the API
LOCAL = {"iotiam init", "iotiam serve", "iotiam simulate", "iotiam firmware sign"}
API_COMMANDS = [c for c in commands() if c.cli.name == "iotiam" and c.id not in LOCAL]


CONTROL = "dev\x00ice"
ID_COMMANDS = [c for c in API_COMMANDS
               if any(p.required and annotation(p) is str and not p.opts[0].startswith("-")
                      for p in c.params)]


#: commands that need one of several optional parameters to do anything
TARGETS = {"iotiam policy attach": ["--org", "root"], "iotiam policy detach": ["--org", "root"]}


class Recorder:
    """An API that answers every request 404 and remembers its raw path."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode("ascii").partition("?")[0])
        return httpx.Response(404, json={"title": "Not found", "detail": "no such thing"},
                              headers={"Content-Type": "application/problem+json"})


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Route the CLI's API client to a :class:`Recorder`."""
    seen = Recorder()

    client = functools.partial(httpx.Client, transport=httpx.MockTransport(seen))
    monkeypatch.setattr(cli_client.httpx, "Client", client)
    return seen


def _hostile_line(command: Command, work: Path, value: str, *, options: bool = True
                  ) -> list[str]:
    """Every text parameter of ``command`` set to ``value``, the rest left usable."""
    texts = [p for p in command.params if annotation(p) is str and not is_flag(p)]
    line = command_line(command, work, leave_out=None)
    for param in texts:
        if param.required and param.opts[0].startswith("-"):
            at = line.index(param.opts[0])
            line[at + 1] = value
        elif options and param.opts[0].startswith("-"):
            line += words_for(param, value)
    arguments = [p for p in command.params if not p.opts[0].startswith("-") and p.required]
    if arguments and all(annotation(p) is str for p in arguments):
        line[len(line) - len(arguments):] = [value] * len(arguments)
    return line


@pytest.mark.parametrize("command", API_COMMANDS,
                         ids=[f"ok/{c.id.replace(' ', '-')}" for c in API_COMMANDS])
def test_ids_stay_in_their_segment(command: Command, tmp_path: Path, recorder: Recorder,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = _hostile_line(command, tmp_path, HOSTILE, options=False)
    argv[-1:-1] = TARGETS.get(command.id, [])
    result = invoke(command.cli, argv, capsys)
    if command in ID_COMMANDS:
        assert recorder.paths, (argv, result)  # it got as far as the API
    for path in recorder.paths:
        segments = [unquote(s) for s in path.split("/")]
        # the hostile id is either absent from the path or one whole segment of it
        assert all("victim" not in s or s == HOSTILE for s in segments), (argv, path)
    if result.rc != 0:
        assert_one_line_error(result, argv)


@pytest.mark.parametrize("command", ID_COMMANDS,
                         ids=[f"fail/{c.id.replace(' ', '-')}" for c in ID_COMMANDS])
def test_control_character_in_an_id(command: Command, tmp_path: Path, recorder: Recorder,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = _hostile_line(command, tmp_path, CONTROL, options=False)
    argv[-1:-1] = TARGETS.get(command.id, [])
    result = invoke(command.cli, argv, capsys)
    line = assert_one_line_error(result, argv)
    assert "control character" in line or "HTTP 404" in line, line
    assert all("%00" not in path for path in recorder.paths), recorder.paths

