"""``iotiam audit``, ``iotiam token``, ``iotiam whoami`` and ``iotiam profile``."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.audit.checkpoint import Verifier
from iotiam.audit.proofs import check_bundle
from iotiam.cli.client import api_path, load_profile
from iotiam.cli.entry import UsageError
from iotiam.cli.inputs import parse_duration
from iotiam.cli.main import Context, console
from iotiam.cli.output import print_fields, print_table
from iotiam.errors import InvalidInput
from iotiam.untrusted import load_json

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
token_app = typer.Typer(help="Admin API tokens, and OAuth2 access tokens and signing keys.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``audit``, ``token`` and ``whoami``."""
    app.add_typer(audit_app, name="audit")
    app.add_typer(token_app, name="token")
    app.command("whoami")(whoami)
    app.command("profile")(show_profile)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Verify the whole chain; exits 1 and names the first bad record if it is broken."""
    obj: Context = ctx.obj
    report = obj.client().get("/v1/audit/verify")
    if report["ok"]:
        anchored = report.get("checkpoint") or {}
        console.print(f"audit chain OK: {report['records']} records, head at "
                      f"{report['head_seq']}; signed checkpoint of "
                      f"{anchored.get('size', 0)} records at {anchored.get('at')}",
                      markup=False)
        return
    console.print(f"audit chain BROKEN: {report['problem']}", markup=False)
    raise typer.Exit(code=1)


@audit_app.command("checkpoint")
def audit_checkpoint(ctx: typer.Context) -> None:
    """Print the latest signed checkpoint (a C2SP tlog-checkpoint signed note)."""
    obj: Context = ctx.obj
    sys.stdout.write(obj.client().get("/v1/audit/checkpoint")["note"])


@audit_app.command("prove")
def audit_prove(
    ctx: typer.Context,
    record: Annotated[int | None, typer.Option(
        help="Prove this record is in the checkpoint (inclusion proof).", min=1)] = None,
    since: Annotated[int | None, typer.Option(
        "--from", help="Prove the checkpoint of this many records is a prefix of the newer "
        "one (consistency proof).", min=1)] = None,
    size: Annotated[int | None, typer.Option(
        "--size", help="The checkpoint to prove against, by its size (default: the latest).",
        min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="Write the proof here instead of stdout.")
                   ] = None,
) -> None:
    """Fetch an inclusion or consistency proof that `iotiam audit check-proof` verifies."""
    obj: Context = ctx.obj
    if (record is None) == (since is None):
        raise UsageError("give --record N (inclusion) or --from SIZE (consistency)")
    params: dict[str, Any] = {"size": size} if record is not None else {"new": size}
    if record is not None:
        params["seq"] = record
        path = "/v1/audit/proofs/inclusion"
    else:
        params["old"] = since
        path = "/v1/audit/proofs/consistency"
    proof = obj.client().get(path, **params)
    text = json.dumps(proof, indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text)
        console.print(f"wrote the {proof['type']} proof to {out}", markup=False)
    else:
        sys.stdout.write(text)


@audit_app.command("check-proof")
def audit_check_proof(
    key: Annotated[Path, typer.Option(
        help="The log's verifier key (audit/checkpoint.vkey from the data directory).")],
    proof: Annotated[Path, typer.Argument(help="A proof from `iotiam audit prove`.")],
) -> None:
    """Check a proof offline, with only the log's public key: no server is asked."""
    try:
        verifier = Verifier.parse(key.read_text())
        bundle = load_json(proof.read_bytes(), what=str(proof))
    except OSError as e:
        raise InvalidInput(f"cannot read {e.filename}: {e.strerror}") from e
    console.print(check_bundle(bundle, verifier), markup=False)


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
        raise UsageError("--format must be jsonl or syslog")
    response = obj.client().request("GET", "/v1/audit/export", params={"format": fmt})
    if out:
        out.write_text(response.text)
        console.print(f"wrote {response.text.count(chr(10))} lines to {out}")
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


class ProfileField(enum.StrEnum):
    """One value of the CLI profile, for scripts."""

    URL = "url"
    CA_FILE = "ca-file"


def show_profile(ctx: typer.Context, field: Annotated[ProfileField | None, typer.Argument(
        help="Print only this value (for scripts: --server \"$(iotiam profile url)\").")
        ] = None) -> None:
    """Where this CLI talks to: the API URL and the CA file its TLS certificate chains to."""
    obj: Context = ctx.obj
    profile = load_profile(obj.data_dir, obj.url, obj.token)
    values = {ProfileField.URL: profile.url, ProfileField.CA_FILE: profile.ca_file or ""}
    if field is not None:
        typer.echo(values[field])
        return
    print_fields({str(k): v for k, v in values.items()})
