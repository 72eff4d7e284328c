"""``iotiam audit``, ``iotiam token`` and ``iotiam whoami``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.cli.client import api_path
from iotiam.cli.inputs import parse_duration
from iotiam.cli.main import Context, console
from iotiam.cli.output import print_fields, print_table
from iotiam.errors import InvalidInput

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
token_app = typer.Typer(help="Admin API tokens, and OAuth2 access tokens and signing keys.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``audit``, ``token`` and ``whoami``."""
    app.add_typer(audit_app, name="audit")
    app.add_typer(token_app, name="token")
    app.command("whoami")(whoami)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Verify the whole chain; exits 1 and names the first bad record if it is broken."""
    obj: Context = ctx.obj
    report = obj.client().get("/v1/audit/verify")
    if report["ok"]:
        console.print(f"audit chain OK: {report['records']} records, head at "
                      f"{report['head_seq']}")
        return
    console.print(f"audit chain BROKEN: {report['problem']}", markup=False)
    raise typer.Exit(code=1)


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or syslog (RFC 5424).")
                   ] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Export the audit records your token can see."""
    obj: Context = ctx.obj
    if fmt not in ("jsonl", "syslog"):
        raise InvalidInput("--format must be jsonl or syslog")
    response = obj.client().request("GET", "/v1/audit/export", params={"format": fmt})
    if out:
        out.write_text(response.text)
        console.print(f"wrote {response.text.count(chr(10))} records to {out}")
    else:
        sys.stdout.write(response.text)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What the token is for.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    org: Annotated[str | None, typer.Option(help="Org unit it is scoped to (default: yours).")
                   ] = None,
    ttl: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d (default: no expiry).")
                   ] = None,
) -> None:
    """Create an admin token; the secret is printed once, on the last line."""
    obj: Context = ctx.obj
    body: dict[str, Any] = {"name": name, "role": role}
    if org:
        body["org"] = org
    if ttl:
        body["ttl_seconds"] = int(parse_duration(ttl).total_seconds())
    created = obj.client().post("/v1/tokens", body)
    console.print(f"token {created['id']} ({created['role']} on {created['org']}); "
                  "store it now, it is not shown again:")
    print(created["token"])


@token_app.command("list")
def token_list(ctx: typer.Context) -> None:
    """List admin tokens."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/tokens")["items"]
    print_table("tokens", ["id", "name", "role", "org", "expires", "revoked"],
                [[t["id"], t["name"], t["role"], t["org"], t["expires_at"], t["revoked_at"]]
                 for t in items])


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: Annotated[str, typer.Argument(metavar="ID")]
                 ) -> None:
    """Revoke an admin token."""
    obj: Context = ctx.obj
    obj.client().delete(api_path("/v1/tokens", token_id))
    console.print(f"revoked token {token_id}")


def whoami(ctx: typer.Context) -> None:
    """Show who the current token is."""
    obj: Context = ctx.obj
    print_fields(obj.client().get("/v1/whoami"))
