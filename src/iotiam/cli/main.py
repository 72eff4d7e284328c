"""``iotiam``: the command line, a client of the REST API (``init`` and ``serve`` are local)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console

from iotiam.cli.client import ApiClient, load_profile
from iotiam.config import resolve_data_dir
from iotiam.errors import IamError

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

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


def register_commands() -> None:
    """Attach every command group (imported here to keep start-up cheap and explicit)."""
    from iotiam.cli import (
        admin,
        certs,
        credentials,
        detection,
        devices,
        enrollment,
        firmware,
        oauth,
        policies,
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


def run() -> None:
    """Console entry point: the one place errors become a line on stderr and an exit code."""
    register_commands()
    try:
        code = app(standalone_mode=False)
    except IamError as e:
        sys.stderr.write(f"error: {_one_line(e.diagnostics())}\n")
        sys.exit(1)
    except click.exceptions.Abort:
        errors.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        sys.stderr.write(f"error: {_one_line(e.format_message())}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    run()
