"""``iotiam manufacturer`` and ``iotiam enrollment``: zero-touch trust and the approval queue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.cli.client import api_path
from iotiam.cli.inputs import LimitOption
from iotiam.cli.main import Context, console
from iotiam.cli.output import print_fields, print_json, print_table
from iotiam.errors import InvalidInput
from iotiam.inventory.bulk_import import read_rows

manufacturer_app = typer.Typer(help="Manufacturer CAs whose IDevIDs enroll devices on "
                               "first contact, and their manifests.", no_args_is_help=True)
enrollment_app = typer.Typer(help="Enrollment requests held for approval.",
                             no_args_is_help=True)

MANIFEST_CHUNK = 500
MAX_CA_FILE_BYTES = 64 * 1024


def register(app: typer.Typer) -> None:
    """Add ``manufacturer`` and ``enrollment``."""
    app.add_typer(manufacturer_app, name="manufacturer")
    app.add_typer(enrollment_app, name="enrollment")


def _read_text(path: Path, limit: int) -> str:
    try:
        if path.stat().st_size > limit:
            raise InvalidInput(f"{path} is larger than {limit} bytes")
        return path.read_text()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path} is not a PEM text file") from e


@manufacturer_app.command("add")
def manufacturer_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    ca: Annotated[Path, typer.Option("--ca", help="PEM certificate of the CA that signs the "
                                     "manufacturer's IDevIDs.")],
    org: Annotated[str | None, typer.Option(help="Org unit its devices land in "
                                            "(default: the token's).")] = None,
    type_name: Annotated[str, typer.Option("--type", help="Device type of its devices.")
                         ] = "sensor",
) -> None:
    """Trust a manufacturer CA: devices with its IDevID enroll on first contact."""
    obj: Context = ctx.obj
    body: dict[str, Any] = {"name": name, "certificate": _read_text(ca, MAX_CA_FILE_BYTES),
                            "type": type_name}
    if org:
        body["org"] = org
    maker = obj.client().post("/v1/manufacturers", body)
    console.print(f"registered manufacturer {maker['name']}: devices land in {maker['org']} as "
                  f"{maker['type']}; CA {maker['subject']} (sha256 {maker['sha256'][:16]}…)",
                  markup=False, highlight=False)


@manufacturer_app.command("list")
def manufacturer_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """List manufacturers and the size of their manifests."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/manufacturers")["items"]
    if as_json:
        print_json([{k: v for k, v in m.items() if k != "certificate"} for m in items])
        return
    print_table("manufacturers", ["name", "org", "type", "manifest", "CA subject", "CA expires"],
                [[m["name"], m["org"], m["type"], m["manifest_size"], m["subject"],
                  m["not_after"]] for m in items])


@manufacturer_app.command("manifest")
def manufacturer_manifest(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    file: Annotated[Path, typer.Argument(help="CSV (header: serial[,public_key_sha256|"
                                         "public_key]), JSON or JSONL.")],
    fmt: Annotated[str | None, typer.Option("--format", help="csv, json or jsonl.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the per-row report (CSV) here.")
                      ] = None,
) -> None:
    """Import a manufacturing manifest: bad rows are reported (exit 3), good rows land."""
    from iotiam.enrollment.manifest import SERIAL_COLUMNS

    obj: Context = ctx.obj
    rows = read_rows(file, fmt, csv_key_columns=SERIAL_COLUMNS)
    if not rows:
        raise InvalidInput(f"{file} has no rows")
    client = obj.client()
    failures: list[dict[str, Any]] = []
    imported = 0
    for start in range(0, len(rows), MANIFEST_CHUNK):
        chunk = rows[start : start + MANIFEST_CHUNK]
        answer = client.post(api_path("/v1/manufacturers", name, "manifest"),
                             {"rows": [{"row": n, "data": d} for n, d in chunk]})
        imported += answer["imported"]
        failures.extend(r for r in answer["results"] if not r["ok"])
    console.print(f"imported {imported}, failed {len(failures)} of {len(rows)} rows")
    for failure in failures[:50]:
        console.print(f"  row {failure['row']}: {failure['serial'] or '-'}: {failure['error']}",
                      markup=False, highlight=False)
    if len(failures) > 50:
        console.print(f"  ... and {len(failures) - 50} more" +
                      ("" if report else " (use --report FILE for all)"))
    if report:
        lines = ["row,serial,error"] + [
            f"{f['row']},{f['serial'] or ''},\"{(f['error'] or '').replace(chr(34), chr(39))}\""
            for f in failures
        ]
        report.write_text("\n".join(lines) + "\n")
    if failures:
        raise typer.Exit(code=3)


@enrollment_app.command("pending")
def enrollment_pending(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="pending, approved, rejected, enrolled or all.")
                      ] = "pending",
    limit: LimitOption = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List enrollment requests waiting for a decision (oldest first)."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/enrollment-requests", status=status, limit=limit)["items"]
    if as_json:
        print_json(items)
        return
    print_table(f"{len(items)} enrollment requests ({status})",
                ["id", "device", "reason", "org", "source", "since", "polls", "status"],
                [[r["id"], r["device"], r["reason"], r["org"] or "-", r["source"],
                  r["created_at"], r["polls"], r["status"]] for r in items])


@enrollment_app.command("show")
def enrollment_show(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one enrollment request with what the device presented."""
    obj: Context = ctx.obj
    request = obj.client().get(api_path("/v1/enrollment-requests", request_id))
    if as_json:
        print_json(request)
    else:
        print_fields(request, skip=("csr",))


@enrollment_app.command("approve")
def enrollment_approve(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(metavar="ID")],
    type_name: Annotated[str | None, typer.Option(
        "--type", help="Device type, for a new device (default: its manufacturer's).")] = None,
    org: Annotated[str | None, typer.Option(
        help="Org unit, for a new device (default: its manufacturer's, else the token's).")
    ] = None,
) -> None:
    """Approve: register the device if new and certify its key; its next poll gets it."""
    obj: Context = ctx.obj
    body: dict[str, Any] = {}
    if type_name:
        body["type"] = type_name
    if org:
        body["org"] = org
    answer = obj.client().post(api_path("/v1/enrollment-requests", request_id, "approve"), body)
    cert = answer["certificate"]
    console.print(f"approved {answer['id']}: {cert['device']} (org {cert['org']}) certified, "
                  f"serial {cert['serial']}; the device receives it on its next poll",
                  markup=False, highlight=False)


@enrollment_app.command("reject")
def enrollment_reject(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why (kept with the request and audited).")] = "",
) -> None:
    """Reject: the device's further polls with this request get a 403."""
    obj: Context = ctx.obj
    answer = obj.client().post(api_path("/v1/enrollment-requests", request_id, "reject"),
                               {"reason": reason})
    console.print(f"rejected {answer['id']} ({answer['device']})", markup=False,
                  highlight=False)
