"""``iotiam cert`` and ``iotiam ca``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.cli.client import api_path
from iotiam.cli.entry import UsageError
from iotiam.cli.inputs import LimitOption
from iotiam.cli.main import Context, console, errors
from iotiam.cli.output import print_fields, print_json, print_table
from iotiam.cli.revocation import compromise_summary
from iotiam.errors import InvalidInput

cert_app = typer.Typer(help="Issue, inspect and revoke certificates.", no_args_is_help=True)
ca_app = typer.Typer(help="The built-in CA.", no_args_is_help=True)

MAX_CSR_FILE = 64 * 1024


def register(app: typer.Typer) -> None:
    """Add ``cert`` and ``ca``."""
    app.add_typer(cert_app, name="cert")
    app.add_typer(ca_app, name="ca")


def _read_small(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > MAX_CSR_FILE:
            raise InvalidInput(f"{path} is too large for a {what} ({MAX_CSR_FILE} bytes max)")
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e
    if data.lstrip().startswith(b"-----BEGIN"):
        return data.decode("ascii", errors="replace")
    return base64.b64encode(data).decode()  # DER: the API takes base64 too


@cert_app.command("issue")
def cert_issue(
    ctx: typer.Context,
    device: Annotated[str, typer.Option(help="Device id the certificate is for.")],
    csr: Annotated[Path, typer.Option(help="PKCS#10 CSR file (PEM or DER).")],
    out: Annotated[Path | None, typer.Option(help="Write the certificate here (PEM).")] = None,
    chain_out: Annotated[Path | None, typer.Option(help="Write the CA chain here (PEM).")
                         ] = None,
    profile: Annotated[str | None, typer.Option(help="device, gateway or broker-server.")
                       ] = None,
) -> None:
    """Issue a certificate for a registered device from its CSR."""
    obj: Context = ctx.obj
    body: dict[str, Any] = {"device": device, "csr": _read_small(csr, "CSR")}
    if profile:
        body["profile"] = profile
    issued = obj.client().post("/v1/certificates", body)
    if chain_out:
        chain_out.write_text(issued["chain_pem"])
    if out:
        out.write_text(issued["pem"])
        console.print(f"issued serial {issued['serial']} for {issued['device']}, valid until "
                      f"{issued['not_after']} -> {out}")
    else:
        errors.print(f"issued serial {issued['serial']}")
        console.print(issued["pem"], end="", markup=False, highlight=False)


@cert_app.command("list")
def cert_list(
    ctx: typer.Context,
    device: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option(help="issued, revoked or reserved.")] = None,
    limit: LimitOption = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List certificates, newest first."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/certificates", device=device, status=status, limit=limit)[
        "items"]
    if as_json:
        print_json(items)
        return
    print_table(f"{len(items)} certificates", ["serial", "device", "status", "not_after"],
                [[c["serial"], c["device"], c["status"], c["not_after"]] for c in items])


@cert_app.command("show")
def cert_show(
    ctx: typer.Context,
    serial: Annotated[str, typer.Argument(help="Serial in hex, colons allowed.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one certificate."""
    obj: Context = ctx.obj
    cert = obj.client().get(api_path("/v1/certificates", serial))
    if as_json:
        print_json(cert)
    else:
        print_fields(cert, skip=("pem",))


@cert_app.command("revoke")
def cert_revoke(
    ctx: typer.Context,
    serial: Annotated[str | None, typer.Argument(help="Serial in hex, colons allowed.")] = None,
    device: Annotated[str | None, typer.Option(help="Revoke every certificate of a device.")
                      ] = None,
    reason: Annotated[str, typer.Option(help="RFC 5280 reason, e.g. keyCompromise.")
                      ] = "unspecified",
) -> None:
    """Revoke a certificate by serial, or all of a device's (final)."""
    obj: Context = ctx.obj
    if serial and not device:
        revoked = obj.client().post(api_path("/v1/certificates", serial, "revoke"),
                                    {"reason": reason})
        console.print(f"revoked {revoked['serial']} ({revoked['revocation_reason']})")
        return
    if serial and device:
        raise UsageError("give a SERIAL or --device, not both")
    if not device:
        raise UsageError("give a SERIAL or --device")
    answer = obj.client().post(api_path("/v1/devices", device, "revoke-certificates"),
                               {"reason": reason})
    for cert in answer["revoked"]:
        console.print(f"revoked {cert['serial']} ({cert['revocation_reason']})")
    console.print(f"{len(answer['revoked'])} certificate(s) of {device} revoked")


@ca_app.command("show")
def ca_show(
    ctx: typer.Context,
    chain: Annotated[bool, typer.Option("--chain", help="Follow with the root certificate.")
                     ] = False,
) -> None:
    """Print the issuing CA certificate (PEM)."""
    obj: Context = ctx.obj
    info = obj.client().get("/v1/ca")
    text = info["issuing"]["pem"] + (info["root"]["pem"] if chain else "")
    console.print(text, end="", markup=False, highlight=False)


@ca_app.command("crl")
def ca_crl(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Write the CRL here (DER).")] = None,
    pem: Annotated[bool, typer.Option("--pem", help="Print the CRL as PEM.")] = False,
) -> None:
    """Show the current CRL of the issuing CA."""
    obj: Context = ctx.obj
    info = obj.client().get("/v1/ca/crl")
    der = base64.b64decode(info["der_base64"])
    if out:
        out.write_bytes(der)
    if pem:
        crl = x509.load_der_x509_crl(der)
        console.print(crl.public_bytes(serialization.Encoding.PEM).decode(), end="",
                      markup=False, highlight=False)
        return
    print_fields({k: v for k, v in info.items() if k != "der_base64"})


@ca_app.command("list")
def ca_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The root and every issuing CA: state, validity, live certificates."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/cas")["items"]
    if as_json:
        print_json(items)
        return
    print_table("CAs", ["id", "role", "state", "not after", "live certs", "subject"], [
        (c["id"], c["role"], c["state"], c["not_after"][:10],
         "" if c["live_certificates"] is None else c["live_certificates"], c["subject"])
        for c in items])


@ca_app.command("rotate")
def ca_rotate(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would happen.")
                       ] = False,
    reissue: Annotated[bool, typer.Option(
        "--reissue", help="Agents renew onto the new CA now (as `ca migrate`).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Put a new issuing CA under the root: new certificates come from it at once, devices
    move at their next renewal, the old CA stays trusted for what it signed."""
    obj: Context = ctx.obj
    report = obj.client().post("/v1/cas/rotate", {"dry_run": dry_run, "reissue": reissue})
    if as_json:
        print_json(report)
    elif report["dry_run"]:
        console.print(f"would rotate {report['previous']} to a new CA {report['subject']}; "
                      f"{report['moving']} live certificate(s) move at their next renewal",
                      markup=False, highlight=False)
    else:
        console.print(f"issuing CA {report['new']} ({report['subject']}) is active; "
                      f"{report['previous']} retires: {report['moving']} live "
                      "certificate(s) move at their next renewal",
                      markup=False, highlight=False)


@ca_app.command("migrate")
def ca_migrate(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask agents holding a certificate of a retiring CA to renew now (they learn within
    their issuer check, 15 min, and spread their renewals over 10 min)."""
    obj: Context = ctx.obj
    report = obj.client().post("/v1/cas/migrate", {})
    if as_json:
        print_json(report)
        return
    console.print(f"agents asked to move to {report['new']}: {report['moving']} live "
                  "certificate(s) of retiring CAs", markup=False, highlight=False)


@ca_app.command("revoke")
def ca_revoke(
    ctx: typer.Context,
    ca_id: Annotated[str, typer.Argument(help="The issuing CA (see `iotiam ca list`).")],
    reason: Annotated[str, typer.Option(help="RFC 5280 reason, e.g. keyCompromise.")
                      ] = "keyCompromise",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")
                       ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Revoke a compromised issuing CA and every certificate it signed (final); a new one
    takes over if it was the active one."""
    obj: Context = ctx.obj
    report = obj.client().post(api_path("/v1/cas", ca_id, "revoke"),
                               {"reason": reason, "dry_run": dry_run})
    if as_json:
        print_json(report)
        return
    console.print(compromise_summary(report), markup=False, highlight=False)

