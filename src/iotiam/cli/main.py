"""``iotiam``: the command line, a client of the REST API (``init`` and ``serve`` are local)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from iotiam.cli.client import ApiClient, load_profile
from iotiam.cli.entry import run_app
from iotiam.cli.terminal_text import TerminalConsole
from iotiam.config import resolve_data_dir

#: what is printed may come from the network: no markup, controls escaped
console = TerminalConsole(soft_wrap=True)
errors = TerminalConsole(stderr=True, soft_wrap=True)

app = typer.Typer(
    name="iotiam",
    help="Identity and access control plane for IoT fleets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dataclass
class Context:
    """Global options shared by every command."""

    data_dir: Path
    url: str | None
    token: str | None
    _client: ApiClient | None = None

    def client(self) -> ApiClient:
        """The API client for this invocation (built on first use)."""
        if self._client is None:
            self._client = ApiClient(load_profile(self.data_dir, self.url, self.token))
        return self._client


@app.callback()
def main(
    ctx: typer.Context,
    data_dir: Annotated[
        str | None,
        typer.Option("--data-dir", envvar="IOTIAM_DATA_DIR",
                     help="Where iotiam keeps its data (default ~/.local/share/iotiam)."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="API URL (default: from the profile).")] = None,
    token: Annotated[str | None, typer.Option(help="Admin token (default: the profile's).")
                     ] = None,
) -> None:
    """Identity and access control plane for IoT fleets."""
    ctx.obj = Context(data_dir=resolve_data_dir(data_dir), url=url, token=token)


#: the modules of ``iotiam.cli`` that hold the command groups, in the order ``--help``
#: lists them
MODULES = ("setup", "devices", "certs", "admin", "simulate", "credentials", "enrollment",
           "oauth", "policies", "firmware", "detection", "discover", "risk", "compliance",
           "revocation", "database")

#: the modules that register each top-level command and its subcommands (``oauth`` adds
#: to ``token``): a command line builds only its own command's tree (building all of
#: them costs more CPU than the command usually does); tests/unit/cli/test_startup.py
#: checks this against what the modules register
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "init": ("setup",), "serve": ("setup",),
    "device": ("devices",), "org": ("devices",), "group": ("devices",), "device-type": ("devices",),
    "claim": ("devices",), "inventory": ("devices",),
    "cert": ("certs",), "ca": ("certs",),
    "audit": ("admin",), "token": ("admin", "oauth"), "whoami": ("admin",), "profile": ("admin",),
    "simulate": ("simulate",),
    "psk": ("credentials",), "credentials": ("credentials",),
    "manufacturer": ("enrollment",), "enrollment": ("enrollment",),
    "client": ("oauth",), "device-code": ("oauth",),
    "policy": ("policies",), "site": ("policies",),
    "firmware": ("firmware",),
    "findings": ("detection",), "detect": ("detection",), "trust": ("detection",),
    "discover": ("discover",),
    "risk": ("risk",),
    "compliance": ("compliance",),
    "revoke": ("revocation",), "drill": ("revocation",),
    "db": ("database",),
}

#: the global options (of ``main``) that take a value: the word after one is not a command
GLOBAL_VALUE_OPTIONS = frozenset({"--data-dir", "--url", "--token"})

_registered: set[str] = set()


def register_commands(*modules: str) -> None:
    """Attach the command groups of ``modules`` (all of them when none is named), each
    once per process: ``run`` may be called again (tests, embedding)."""
    for name in modules or MODULES:
        if name not in _registered:
            _module(name).register(app)
            _registered.add(name)


def _module(name: str) -> ModuleType:
    """The module of ``iotiam.cli`` called ``name`` (each import spelled out: the layering
    test follows imports, and none by a computed name)."""
    match name:
        case "setup":
            from iotiam.cli import setup
            return setup
        case "devices":
            from iotiam.cli import devices
            return devices
        case "certs":
            from iotiam.cli import certs
            return certs
        case "admin":
            from iotiam.cli import admin
            return admin
        case "simulate":
            from iotiam.cli import simulate
            return simulate
        case "credentials":
            from iotiam.cli import credentials
            return credentials
        case "enrollment":
            from iotiam.cli import enrollment
            return enrollment
        case "oauth":
            from iotiam.cli import oauth
            return oauth
        case "policies":
            from iotiam.cli import policies
            return policies
        case "firmware":
            from iotiam.cli import firmware
            return firmware
        case "detection":
            from iotiam.cli import detection
            return detection
        case "discover":
            from iotiam.cli import discover
            return discover
        case "risk":
            from iotiam.cli import risk
            return risk
        case "compliance":
            from iotiam.cli import compliance
            return compliance
        case "revocation":
            from iotiam.cli import revocation
            return revocation
        case "database":
            from iotiam.cli import database
            return database
    raise ValueError(f"no command module {name!r}")


def command_word(argv: Sequence[str]) -> str | None:
    """The top-level command ``argv`` names, if any (global options skipped)."""
    words = iter(argv)
    for word in words:
        if word in GLOBAL_VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def run(argv: Sequence[str] | None = None) -> None:
    """Console entry point: every failure is one line on stderr and a non-zero exit."""
    modules = COMMAND_MODULES.get(command_word(sys.argv[1:] if argv is None else argv) or "")
    # no command, or an unknown one: all of them, for the help text or a suggestion
    register_commands(*(modules or ()))
    run_app(app, argv)


if __name__ == "__main__":
    run()
