"""``iotiam``: the command line, a client of the REST API (``init`` and ``serve`` are local)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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


@functools.cache  # once per process: ``run`` may be called again (tests, embedding)
def register_commands() -> None:
    """Attach every command group (imported here to keep start-up cheap and explicit)."""
    from iotiam.cli import (
        admin,
        certs,
        compliance,
        credentials,
        database,
        detection,
        devices,
        discover,
        enrollment,
        firmware,
        oauth,
        policies,
        revocation,
        risk,
        setup,
        simulate,
    )

    setup.register(app)
    devices.register(app)
    certs.register(app)
    admin.register(app)
    simulate.register(app)
    credentials.register(app)
    enrollment.register(app)
    oauth.register(app)
    policies.register(app)
    firmware.register(app)
    detection.register(app)
    discover.register(app)
    risk.register(app)
    compliance.register(app)
    revocation.register(app)
    database.register(app)


def run(argv: Sequence[str] | None = None) -> None:
    """Console entry point: every failure is one line on stderr and a non-zero exit."""
    register_commands()
    run_app(app, argv)


if __name__ == "__main__":
    run()
