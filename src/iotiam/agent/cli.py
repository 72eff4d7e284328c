"""``iotiam-agent``: the device side, from the command line."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from iotiam.agent.agent import Agent
from iotiam.errors import IamError

app = typer.Typer(name="iotiam-agent", help="The iotiam device agent.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)

DirOption = Annotated[Path, typer.Option("--dir", help="Agent state directory.")]


@app.command()
def enroll(
    directory: DirOption,
    server: Annotated[str, typer.Option(help="iotiam HTTPS URL, e.g. https://127.0.0.1:8443")],
    device: Annotated[str, typer.Option(help="This device's id in the inventory.")],
    claim: Annotated[str, typer.Option(help="One-time claim token from `iotiam claim create`.")],
    ca: Annotated[Path, typer.Option(help="CA file to trust for the server's TLS certificate.")],
    label: Annotated[str | None, typer.Option(help="EST label (certificate profile).")] = None,
) -> None:
    """Generate a key here and enroll with a claim token."""
    agent = Agent(directory, server_url=server, device_id=device, server_ca=ca, label=label)
    cert = agent.enroll(claim)
    print(f"enrolled {device}: serial {cert.serial_number:x}, valid until "
          f"{cert.not_valid_after_utc.isoformat()}")


@app.command()
def renew(directory: DirOption) -> None:
    """Renew now (recovers instead when the certificate already expired)."""
    cert = Agent(directory).renew()
    print(f"renewed: serial {cert.serial_number:x}, valid until "
          f"{cert.not_valid_after_utc.isoformat()}")


@app.command("run")
def run_loop(directory: DirOption) -> None:
    """Keep the certificate renewed until stopped (SIGINT/SIGTERM)."""
    agent = Agent(directory)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    agent.run(stop)


@app.command()
def status(directory: DirOption) -> None:
    """Show what the agent holds and when it renews next."""
    print(json.dumps(Agent(directory).status(), indent=2))


def run() -> None:
    """Console entry point: one line on stderr and exit 1 for any refusal."""
    try:
        app(standalone_mode=False)
    except IamError as e:
        sys.stderr.write(f"error: {' '.join(e.diagnostics().split())}\n")
        sys.exit(1)
    except Exception as e:
        import click

        if isinstance(e, click.ClickException):
            sys.stderr.write(f"error: {e.format_message()}\n")
            sys.exit(e.exit_code)
        raise
