"""``iotiam`` builds only the command tree its command line names: the table that says
which module registers each top-level command must match what the modules register."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import typer
import typer.main

from iotiam.cli import main as iotiam_cli


def _registered_names(module: str) -> set[str]:
    app = typer.Typer()
    importlib.import_module(f"iotiam.cli.{module}").register(app)
    commands = {c.name for c in app.registered_commands}
    groups = {g.name for g in app.registered_groups}
    assert None not in commands | groups, f"iotiam.cli.{module} registers an unnamed command"
    return {str(name) for name in commands | groups}


def test_every_command_is_found_in_the_module_that_registers_it() -> None:
    table: dict[str, str] = {}
    for module in iotiam_cli.MODULES:
        for name in _registered_names(module):
            assert name not in table, f"{name} registered by {table.get(name)} and {module}"
            table[name] = module
    assert set(table) == set(iotiam_cli.COMMAND_MODULES)
    assert all(table[name] in iotiam_cli.COMMAND_MODULES[name] for name in table)


def _defined_in(command: Any) -> set[str]:
    """The modules of ``iotiam.cli`` defining the callbacks of ``command`` and below it."""
    found = {command.callback.__module__} if command.callback is not None else set()
    for sub in getattr(command, "commands", {}).values():
        found |= _defined_in(sub)
    return {name.removeprefix("iotiam.cli.") for name in found if name != "typer.main"}


def test_every_subcommand_is_found_with_its_command() -> None:
    """A module adding subcommands to another's group (``oauth`` to ``token``) is listed
    with that group: a fresh process imports only the listed modules."""
    iotiam_cli.register_commands()
    group = typer.main.get_command(iotiam_cli.app)
    assert hasattr(group, "commands")
    commands: dict[str, Any] = group.commands
    for name, command in commands.items():
        defined = _defined_in(command) - {"main"}
        assert defined <= set(iotiam_cli.COMMAND_MODULES[name]), (name, defined)
    assert _defined_in(commands["token"]) == {"admin", "oauth"}


def test_global_options_that_take_a_value_are_known() -> None:
    iotiam_cli.register_commands()
    group = typer.main.get_command(iotiam_cli.app)
    taking_value = {name for param in group.params if not getattr(param, "is_flag", False)
                    for name in param.opts if name.startswith("--")}
    assert taking_value == iotiam_cli.GLOBAL_VALUE_OPTIONS


@pytest.mark.parametrize(("argv", "word"), [
    ([], None),
    (["--help"], None),
    (["device", "list"], "device"),
    (["--url", "device", "--token", "t", "whoami"], "whoami"),
    (["--data-dir=/tmp/x", "policy", "lint", "f"], "policy"),
    (["--data-dir", "/tmp/x"], None),
])
def test_command_word_skips_global_options(argv: list[str], word: str | None) -> None:
    assert iotiam_cli.command_word(argv) == word
