"""``iotiam firmware``: signers, signed images, minimum rules, device compliance; and
``firmware sign``, which makes signed metadata offline (the private key stays here)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.cli.client import api_path
from iotiam.cli.main import Context, console
from iotiam.cli.output import print_fields, print_json, print_table
from iotiam.config import FIRMWARE_KEY_PASSPHRASE_ENV, firmware_key_passphrase
from iotiam.errors import InvalidInput

firmware_app = typer.Typer(help="Firmware images, signers, minimum versions, compliance.",
                           no_args_is_help=True)
signer_app = typer.Typer(help="Keys trusted to sign firmware metadata.", no_args_is_help=True)
firmware_app.add_typer(signer_app, name="signer")

def register(app: typer.Typer) -> None:
    """Add ``firmware``."""
    app.add_typer(firmware_app, name="firmware")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read the {what} {path}: {e}") from e


def _org(org: str | None) -> dict[str, Any]:
    return {"org": org} if org else {}


@signer_app.command("add")
def signer_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Signer name, unique in its org unit.")],
    key: Annotated[Path, typer.Option(help="The signer's PUBLIC key (PEM).")],
    org: Annotated[str | None, typer.Option(help="Org unit (default: the token's).")] = None,
) -> None:
    """Trust a public key (P-256, Ed25519, RSA >= 3072) to sign firmware metadata."""
    obj: Context = ctx.obj
    signer = obj.client().post("/v1/firmware/signers", {
        "name": name, "public_key_pem": _read_text(key, "signer key"), **_org(org)})
    console.print(f"firmware signer {signer['name']} ({signer['algorithm']}) registered in "
                  f"{signer['org']}; key id {signer['key_id']}")


@signer_app.command("list")
def signer_list(ctx: typer.Context,
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Firmware signers in your subtree."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/firmware/signers")["items"]
    if as_json:
        print_json(items)
        return
    print_table("firmware signers",
                ["name", "org", "algorithm", "key id", "created", "revoked"],
                [[s["name"], s["org"], s["algorithm"], s["key_id"][:16], s["created_at"],
                  s["revoked_at"] or ""] for s in items])


@signer_app.command("revoke")
def signer_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Signer name.")],
    org: Annotated[str | None, typer.Option(help="Org unit (default: the token's).")] = None,
) -> None:
    """Stop trusting a signer at once (a leaked key): final; its images no longer count."""
    obj: Context = ctx.obj
    answer = obj.client().post(api_path("/v1/firmware/signers", name, "revoke"), _org(org))
    console.print(f"firmware signer {answer['name']} revoked in {answer['org']}: "
                  f"{answer['images_affected']} image(s) no longer count, "
                  f"{answer['devices_changed']} device(s) became non-compliant")


@firmware_app.command("add")
def add(
    ctx: typer.Context,
    metadata: Annotated[Path, typer.Option(help="Signed metadata (compact JWS) from "
                                                "`iotiam firmware sign`.")],
    org: Annotated[str | None, typer.Option(help="Org unit (default: the token's).")] = None,
) -> None:
    """Register a firmware image from its signed metadata."""
    obj: Context = ctx.obj
    image = obj.client().post("/v1/firmware/images", {
        "metadata": _read_text(metadata, "metadata file").strip(), **_org(org)})
    console.print(f"registered {image['device_type']} {image['version']} "
                  f"(sha256 {image['sha256']}) as image {image['id']} in {image['org']}; "
                  f"{image['devices_changed']} device(s) that ran it became compliant")


@firmware_app.command("list")
def list_images(
    ctx: typer.Context,
    device_type: Annotated[str | None, typer.Option("--type", help="Only this type.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Registered firmware images and the minimum versions in force."""
    obj: Context = ctx.obj
    client = obj.client()
    items = client.get("/v1/firmware/images", type=device_type)["items"]
    rules = client.get("/v1/firmware/rules")["items"]
    if as_json:
        print_json({"images": items, "rules": rules})
        return
    print_table("firmware images", ["id", "type", "version", "sha256", "org", "released"],
                [[i["id"], i["device_type"], i["version"], i["sha256"][:16] + "…", i["org"],
                  i["released_at"]] for i in items])
    if rules:
        print_table("minimum versions", ["type", "min version", "org"],
                    [[r["device_type"], r["min_version"], r["org"]] for r in rules
                     if device_type in (None, r["device_type"])])


@firmware_app.command("rule")
def rule(
    ctx: typer.Context,
    device_type: Annotated[str, typer.Argument(help="Device type.")],
    min_version: Annotated[str | None, typer.Option(
        help="Minimum approved version (omit to show the one in force).")] = None,
    org: Annotated[str | None, typer.Option(help="Org unit (default: the token's).")] = None,
) -> None:
    """Set (or show) the minimum approved firmware version of a device type."""
    obj: Context = ctx.obj
    client = obj.client()
    if min_version is None:
        view = client.get(api_path("/v1/firmware/rules", device_type))
        console.print(f"{device_type}: minimum {view['min_version'] or '(none)'}"
                      + (f" (set at {view['set_at']})" if view["set_at"] else ""))
        return
    answer = client.request("PUT", api_path("/v1/firmware/rules", device_type),
                            json={"min_version": min_version, **_org(org)}).json()
    console.print(f"{answer['device_type']}: minimum {answer['min_version']} in "
                  f"{answer['org']}")


@firmware_app.command("status")
def status(
    ctx: typer.Context,
    device: Annotated[str, typer.Argument(help="Device id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a device last attested and whether it is compliant."""
    obj: Context = ctx.obj
    answer = obj.client().get(api_path("/v1/devices", device, "firmware"))
    if as_json:
        print_json(answer)
        return
    print_fields(answer, skip=("measurements",))


@firmware_app.command("sign")
def sign(
    key: Annotated[Path, typer.Option(
        help="The signer's PRIVATE key (PEM); it stays here. Encrypted keys: passphrase in "
             f"${FIRMWARE_KEY_PASSPHRASE_ENV}.")],
    device_type: Annotated[str, typer.Option("--type", help="Device type of the image.")],
    version: Annotated[str, typer.Option(help="Firmware version, e.g. 1.4.2.")],
    image: Annotated[Path, typer.Option(help="The firmware image file (hashed here).")],
    notes: Annotated[str | None, typer.Option(help="Release notes (short).")] = None,
    released_at: Annotated[str | None, typer.Option(
        help="Release time, ISO 8601 with a zone (default: none).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Make signed firmware metadata offline (no server, no profile needed)."""
    from cryptography.hazmat.primitives import serialization

    from iotiam.attestation.metadata import sign_metadata

    passphrase = firmware_key_passphrase()
    try:
        private = serialization.load_pem_private_key(
            key.read_bytes(), password=passphrase.encode() if passphrase else None)
    except OSError as e:
        raise InvalidInput(f"cannot read the key {key}: {e.strerror or e}") from e
    except TypeError as e:
        raise InvalidInput(f"{key} is encrypted: put its passphrase in "
                           f"${FIRMWARE_KEY_PASSPHRASE_ENV}") from e
    except ValueError as e:
        raise InvalidInput(f"{key} is not a PEM private key (or the passphrase is wrong)"
                           ) from e
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                      | rsa.RSAPrivateKey):
        raise InvalidInput("the key must be P-256, Ed25519 or RSA (3072 bits or more)")
    digest = hashlib.sha256()
    try:
        with image.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as e:
        raise InvalidInput(f"cannot read the image {image}: {e.strerror or e}") from e
    when = None
    if released_at:
        try:
            when = datetime.fromisoformat(released_at.replace("Z", "+00:00"))
        except ValueError as e:
            raise InvalidInput("--released-at must be ISO 8601, e.g. 2026-03-01T12:00:00Z"
                               ) from e
        if when.tzinfo is None:
            raise InvalidInput("--released-at needs a time zone, e.g. Z or +01:00")
    token = sign_metadata(private, device_type=device_type, version=version,
                          sha256=digest.hexdigest(), released_at=when, notes=notes)
    if out is None:
        print(token)
    else:
        out.write_text(token + "\n")
        console.print(f"signed metadata for {device_type} {version} written to {out}")
