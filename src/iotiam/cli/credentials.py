"""``iotiam psk`` and ``iotiam credentials``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.cli.client import api_path
from iotiam.cli.inputs import parse_duration
from iotiam.cli.main import Context, console
from iotiam.cli.output import print_table

psk_app = typer.Typer(help="Pre-shared keys for constrained devices.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``psk`` and ``credentials``."""
    app.add_typer(psk_app, name="psk")
    app.command("credentials")(credentials)


def _lifetime(value: str | None) -> dict[str, Any]:

    return {"lifetime_seconds": int(parse_duration(value).total_seconds())} if value else {}


@psk_app.command("create")
def psk_create(
    ctx: typer.Context,
    device: Annotated[str, typer.Option()],
    lifetime: Annotated[str | None, typer.Option(help="e.g. 90d (default: no expiry)")] = None,
) -> None:
    """Issue a PSK; identity and hex key on the last line, shown once."""
    obj: Context = ctx.obj
    psk = obj.client().post(api_path("/v1/devices", device, "psk"), _lifetime(lifetime))
    console.print(f"PSK {psk['id']} for {psk['device']}; store the key now:")
    print(f"{psk['identity']}:{psk['key_hex']}")


@psk_app.command("rotate")
def psk_rotate(
    ctx: typer.Context,
    device: Annotated[str, typer.Option()],
    lifetime: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Replace a device's PSK; the new identity:key is the last line."""
    obj: Context = ctx.obj
    psk = obj.client().post(api_path("/v1/devices", device, "psk", "rotate"), _lifetime(lifetime))
    console.print(f"PSK {psk['id']} replaces the previous one of {psk['device']}:")
    print(f"{psk['identity']}:{psk['key_hex']}")


@psk_app.command("revoke")
def psk_revoke(
    ctx: typer.Context,
    device: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()] = "unspecified",
) -> None:
    """Revoke a device's PSK (final)."""
    obj: Context = ctx.obj
    psk = obj.client().post(api_path("/v1/devices", device, "psk", "revoke"), {"reason": reason})
    console.print(f"revoked PSK {psk['id']} of {psk['device']}")


@psk_app.command("export")
def psk_export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Write the Mosquitto psk_file here (mode 0600).")],
) -> None:
    """Export active PSKs in Mosquitto ``psk_file`` format."""
    from iotiam.config import write_private_file

    obj: Context = ctx.obj
    text = obj.client().request("GET", "/v1/psk-file").text
    write_private_file(out, text)
    console.print(f"wrote {text.count(chr(10))} PSK identities to {out}")


def credentials(
    ctx: typer.Context,
    device: Annotated[str, typer.Option()],
) -> None:
    """Every credential of a device: certificates and PSKs."""
    obj: Context = ctx.obj
    items = obj.client().get(api_path("/v1/devices", device, "credentials"))["items"]
    print_table(f"credentials of {device}", ["kind", "id", "status", "created", "expires"],
                [[c["kind"], c["id"], c["status"], c["created_at"], c["expires_at"]]
                 for c in items])
