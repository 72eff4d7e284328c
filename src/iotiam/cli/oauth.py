"""``iotiam client``, ``iotiam token`` and ``iotiam device-code``: OAuth2 from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.cli.admin import token_app
from iotiam.cli.client import api_path
from iotiam.cli.inputs import load_json_file
from iotiam.cli.main import Context, console
from iotiam.cli.output import print_table

#: a JWK set holds a few public keys; anything this big is not one
MAX_JWKS_FILE_BYTES = 256 * 1024

client_app = typer.Typer(help="OAuth2 clients of devices and services.", no_args_is_help=True)
code_app = typer.Typer(help="RFC 8628 device codes waiting for approval.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``client`` and ``device-code``; the access-token commands join ``iotiam token``
    (``create``, ``list`` and ``revoke`` there are about admin tokens)."""
    app.add_typer(client_app, name="client")
    app.add_typer(code_app, name="device-code")


def _client_rows(clients: list[dict[str, Any]]) -> list[list[str]]:
    return [[c["client_id"], c["kind"], c["device"] or "-", c["org_unit"], c["status"],
             ",".join(c["token_endpoint_auth_methods"]), c["scope"]] for c in clients]


_CLIENT_COLUMNS = ["CLIENT", "KIND", "DEVICE", "ORG", "STATUS", "AUTH", "SCOPE"]


@client_app.command("create")
def client_create(
    ctx: typer.Context,
    device: Annotated[str | None, typer.Option(help="Bind the client to this device.")] = None,
    client_id: Annotated[str | None, typer.Option(
        "--id", help="Client id (default: the device id; required for a service).")] = None,
    org: Annotated[str | None, typer.Option(help="Org unit of a service client.")] = None,
    scope: Annotated[list[str] | None, typer.Option(
        help="Allowed scope, repeatable (default: derived from the device's policies).")
    ] = None,
    audience: Annotated[list[str] | None, typer.Option(help="Allowed audience, repeatable.")
                        ] = None,
    auth: Annotated[list[str] | None, typer.Option(
        help="private_key_jwt or tls_client_auth, repeatable.")] = None,
    grant: Annotated[list[str] | None, typer.Option(
        help="client_credentials or device_code, repeatable.")] = None,
    jwks: Annotated[Path | None, typer.Option(
        help="JSON file with the client's public JWK set (services).")] = None,
) -> None:
    """Register an OAuth2 client for a device or a service."""
    obj: Context = ctx.obj
    body: dict[str, Any] = {}
    if device:
        body["device"] = device
    if client_id:
        body["client_id"] = client_id
    if org:
        body["org"] = org
    if scope:
        body["scopes"] = scope
    if audience:
        body["audiences"] = audience
    if auth:
        body["auth_methods"] = auth
    if grant:
        body["grant_types"] = grant
    if jwks is not None:
        body["jwks"] = load_json_file(jwks, "the JWK set", max_bytes=MAX_JWKS_FILE_BYTES)
    created = obj.client().post("/v1/oauth/clients", body)
    console.print(f"OAuth client {created['client_id']} ({created['kind']}) allowed: "
                  f"{created['scope']}")


@client_app.command("list")
def client_list(ctx: typer.Context) -> None:
    """Clients in your subtree."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/oauth/clients")["items"]
    print_table("OAuth clients", _CLIENT_COLUMNS, _client_rows(items))


@client_app.command("show")
def client_show(ctx: typer.Context, client_id: str) -> None:
    """One client, as JSON."""
    obj: Context = ctx.obj
    print(json.dumps(obj.client().get(api_path("/v1/oauth/clients", client_id)), indent=2))


@client_app.command("revoke")
def client_revoke(ctx: typer.Context, client_id: str) -> None:
    """Revoke a client (final): its tokens are inactive at once."""
    obj: Context = ctx.obj
    revoked = obj.client().post(api_path("/v1/oauth/clients", client_id, "revoke"), {})
    console.print(f"revoked OAuth client {revoked['client_id']}")


def _form(ctx: typer.Context, path: str, form: dict[str, str]) -> Any:
    obj: Context = ctx.obj
    client = obj.client()
    response = client.request("POST", path, data=form)
    return response.json() if response.content else None


@token_app.command("introspect")
def token_introspect(ctx: typer.Context, token: str) -> None:
    """RFC 7662: is TOKEN active, and what does it grant? JSON answer; exit 1 if inactive."""
    answer = _form(ctx, "/oauth2/introspect", {"token": token})
    print(json.dumps(answer, indent=2))
    if not answer.get("active"):
        raise typer.Exit(1)


@token_app.command("revoke-access")
def token_revoke(ctx: typer.Context, token: str) -> None:
    """RFC 7009: revoke TOKEN (inactive at once)."""
    _form(ctx, "/oauth2/revoke", {"token": token})
    console.print("revoked (if it was a token of your subtree)")


@token_app.command("keys")
def token_keys(ctx: typer.Context) -> None:
    """Access-token signing keys (root admins)."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/oauth/signing-keys")["items"]
    print_table("Signing keys", ["KID", "ALG", "CREATED", "RETIRED", "PUBLISHED UNTIL"],
                [[k["kid"], k["algorithm"], k["created_at"], k["retired_at"] or "-",
                  k["publish_until"] or "-"] for k in items])


@token_app.command("rotate-key")
def token_rotate_key(ctx: typer.Context) -> None:
    """Sign with a new key; the old one stays published until its last token expires."""
    obj: Context = ctx.obj
    key = obj.client().post("/v1/oauth/signing-keys/rotate", {})
    console.print(f"now signing with {key['kid']}")


@code_app.command("list")
def code_list(ctx: typer.Context) -> None:
    """Device codes waiting for approval in your subtree."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/oauth/device-codes")["items"]
    print_table("Device codes", ["USER CODE", "CLIENT", "SCOPE", "EXPIRES"],
                [[c["user_code"], c["client_id"], c["scope"], c["expires_at"]] for c in items])


@code_app.command("approve")
def code_approve(ctx: typer.Context, user_code: str) -> None:
    """Consent to a device's request: its next poll gets a token."""
    obj: Context = ctx.obj
    code = obj.client().post(api_path("/v1/oauth/device-codes", user_code, "approve"), {})
    console.print(f"approved {code['user_code']} for {code['client_id']} ({code['scope']})")


@code_app.command("deny")
def code_deny(ctx: typer.Context, user_code: str) -> None:
    """Refuse a device's request."""
    obj: Context = ctx.obj
    code = obj.client().post(api_path("/v1/oauth/device-codes", user_code, "deny"), {})
    console.print(f"denied {code['user_code']} for {code['client_id']}")

