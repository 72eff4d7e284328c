"""``iotiam device|inventory|org|group|device-type``."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from iotiam.cli.client import api_path
from iotiam.cli.inputs import MAX_PAGE, LimitOption, parse_duration
from iotiam.cli.main import Context, console, errors
from iotiam.cli.output import print_fields, print_json, print_table
from iotiam.errors import InvalidInput
from iotiam.inventory.bulk_import import read_rows
from iotiam.inventory.models import DeviceState, OrgUnitKind

device_app = typer.Typer(help="Register and manage devices.", no_args_is_help=True)
org_app = typer.Typer(help="Org units (tenant → business unit → site).", no_args_is_help=True)
group_app = typer.Typer(help="Device groups.", no_args_is_help=True)
type_app = typer.Typer(help="Device types.", no_args_is_help=True)
claim_app = typer.Typer(help="One-time claim tokens for first enrollment.",
                        no_args_is_help=True)

#: rows per ``POST /v1/devices/import``: the API's limit, one batch on the server
IMPORT_CHUNK = 5000
#: the JSON of one request stays under this: half the server's default body limit
#: (``Settings.max_body_bytes``, 1 MiB), so long rows make shorter requests, not a 413
IMPORT_BYTES = 512 * 1024

#: import requests in flight at once: the server reads and checks one batch while the
#: database writes the other (one at a time, each waited for the other's round trips)
IMPORT_IN_FLIGHT = 2

#: sites listed in the report's table, the most populous first
_SITES_SHOWN = 20


def import_requests(rows: list[tuple[int, dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    """The import's rows as request bodies' ``rows``: at most ``IMPORT_CHUNK`` rows and
    about ``IMPORT_BYTES`` of JSON each (a row longer than that goes alone)."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for number, data in rows:
        item = {"row": number, "data": data}
        length = len(json.dumps(item)) + 2
        if chunk and (len(chunk) == IMPORT_CHUNK or size + length > IMPORT_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield chunk


Chunk = list[dict[str, Any]]


def import_in_flight(post: Callable[[Chunk], Any], chunks: Iterable[Chunk], *,
                     in_flight: int = IMPORT_IN_FLIGHT) -> Iterator[tuple[Chunk, Any]]:
    """Each chunk with its answer (``post(chunk)``), in the chunks' order, with up to
    ``in_flight`` requests sent at once.

    A chunk naming a device id that an unanswered chunk names waits for that answer: the
    server judges each batch against what is stored, so a repeated id stays taken by its
    first row in the file, as when the chunks go one after another. A failed request
    raises here, in order, after the chunks before it were answered.
    """
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        sent: deque[tuple[Chunk, set[str], Future[Any]]] = deque()
        for chunk in chunks:
            ids = _device_ids(chunk)
            while sent and (len(sent) >= in_flight or any(ids & named for _, named, _ in sent)):
                done, _, answer = sent.popleft()
                yield done, answer.result()
            sent.append((chunk, ids, pool.submit(post, chunk)))
        while sent:
            done, _, answer = sent.popleft()
            yield done, answer.result()


def _device_ids(chunk: Chunk) -> set[str]:
    """The ids the rows name, as the server reads them (stripped)."""
    named = (item["data"].get("id") for item in chunk if isinstance(item["data"], dict))
    return {value.strip() for value in named if isinstance(value, str)}


def register(app: typer.Typer) -> None:
    """Add the inventory commands."""
    app.add_typer(device_app, name="device")
    app.add_typer(org_app, name="org")
    app.add_typer(group_app, name="group")
    app.add_typer(type_app, name="device-type")
    app.add_typer(claim_app, name="claim")
    app.command("inventory")(inventory)


def _attrs(pairs: list[str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--attr wants key=value, got {pair!r}")
        result[key] = value
    return result


@device_app.command("add")
def device_add(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(metavar="ID")],
    type_name: Annotated[str, typer.Option("--type", help="Device type (sensor, gateway, ...).")],
    org: Annotated[str | None, typer.Option(help="Org unit (default: the token's).")] = None,
    site: Annotated[str | None, typer.Option(help="Site label.")] = None,
    location: Annotated[str | None, typer.Option(help="Location label.")] = None,
    attr: Annotated[list[str] | None, typer.Option(help="Free attribute k=v (repeatable).")
                    ] = None,
    via: Annotated[str | None, typer.Option(
        metavar="GATEWAY", help="Register under this gateway, which receives its PSK.")
                   ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a device (with --via: a gateway's child, keyed for that gateway)."""
    obj: Context = ctx.obj
    body: dict[str, Any] = {"id": device_id, "type": type_name, "attributes": _attrs(attr)}
    for key, value in (("org", org), ("site", site), ("location", location), ("via", via)):
        if value is not None:
            body[key] = value
    device = obj.client().post("/v1/devices", body)
    if as_json:
        print_json(device)
    else:
        under = f", via {device['via']}" if device.get("via") else ""
        console.print(f"registered {device['id']} ({device['type']}, org {device['org']}, "
                      f"{device['state']}{under})")


@device_app.command("move")
def device_move(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(metavar="ID")],
    via: Annotated[str, typer.Option(metavar="GATEWAY", help="The new gateway.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move a gateway's child to another gateway; its PSK is replaced (re-keyed)."""
    obj: Context = ctx.obj
    moved = obj.client().post(api_path("/v1/devices", device_id, "gateway"),
                              {"via": via})
    if as_json:
        print_json(moved)
    else:
        console.print(f"moved {moved['device']} under {moved['via']} (new PSK issued)")


@device_app.command("list")
def device_list(
    ctx: typer.Context,
    type_name: Annotated[str | None, typer.Option("--type")] = None,
    state: Annotated[DeviceState | None, typer.Option()] = None,
    limit: LimitOption = 100,
    after: Annotated[str | None, typer.Option(
        metavar="ID", help="Start after this device id (the next page).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List devices, in id order; says how many match and how to see the rest."""
    obj: Context = ctx.obj
    items: list[dict[str, Any]] = []
    total = 0
    more: str | None = after
    while len(items) < limit:
        page = obj.client().get("/v1/devices", type=type_name,
                                state=str(state) if state else None, after=more,
                                limit=limit - len(items))
        items.extend(page["items"])
        total = page["total"]
        more = page["next"]
        if not more:
            break
    if as_json:
        print_json(items)
        return
    print_table(f"{len(items)} of {total} devices", ["id", "type", "org", "state", "site"],
                [[d["id"], d["type"], d["org"], d["state"], d["site"]] for d in items])
    if more:
        # a bigger --limit is offered only where the API's page bound allows it
        bigger = f" (or --limit {total})" if total <= MAX_PAGE else ""
        console.print(f"more: iotiam device list --after {more}{bigger}")


@device_app.command("show")
def device_show(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one device and its certificates."""
    obj: Context = ctx.obj
    device = obj.client().get(api_path("/v1/devices", device_id))
    if as_json:
        print_json(device)
    else:
        print_fields(device)


@device_app.command("set-state")
def device_set_state(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(metavar="ID")],
    state: Annotated[DeviceState, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
) -> None:
    """Move a device along its lifecycle (decommissioned revokes its certificates)."""
    obj: Context = ctx.obj
    device = obj.client().post(api_path("/v1/devices", device_id, "state"),
                               {"state": str(state), "reason": reason})
    console.print(f"{device['id']} is now {device['state']}")


@device_app.command("transfer")
def device_transfer(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(metavar="ID")],
    to: Annotated[str, typer.Option("--to", help="The new owner's org unit.")],
    ttl: Annotated[str, typer.Option(help="Lifetime of the new claim token, e.g. 12h, 7d.")
                   ] = "1d",
) -> None:
    """Hand a device to another org unit: old credentials revoked, a new claim token
    (the last line of output)."""

    obj: Context = ctx.obj
    seconds = int(parse_duration(ttl).total_seconds())
    moved = obj.client().post(api_path("/v1/devices", device_id, "transfer"),
                              {"to": to, "claim_ttl_seconds": seconds})
    left = ", ".join(moved["groups_left"]) or "none"
    console.print(f"transferred {moved['device']} from {moved['from']} to {moved['to']}: "
                  f"{moved['credentials_revoked']} credential(s) revoked, left groups: {left}; "
                  f"it is {moved['state']} again. Claim {moved['claim']['id']} expires "
                  f"{moved['claim']['expires_at']}; use it once as the HTTP Basic password "
                  "(user = device id) on EST simpleenroll:", markup=False, highlight=False)
    print(moved["claim"]["token"])


@device_app.command("import")
def device_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV (header: id,type,org,site,...), JSON or JSONL.")
                    ],
    fmt: Annotated[str | None, typer.Option("--format", help="csv, json or jsonl.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the per-row report (CSV) here.")
                      ] = None,
) -> None:
    """Bulk-register devices: bad rows are reported, good rows land."""
    obj: Context = ctx.obj
    rows = read_rows(file, fmt)
    if not rows:
        raise InvalidInput(f"{file} has no rows")
    client = obj.client()
    failures: list[dict[str, Any]] = []
    imported = 0
    with Progress(TextColumn("importing"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=errors, transient=True) as progress:
        task = progress.add_task("import", total=len(rows))
        for chunk, answer in import_in_flight(
                lambda chunk: client.post("/v1/devices/import", {"rows": chunk}),
                import_requests(rows)):
            imported += answer["imported"]
            failures.extend(r for r in answer["results"] if not r["ok"])
            progress.advance(task, len(chunk))
    console.print(f"imported {imported}, failed {len(failures)} of {len(rows)} rows")
    for failure in failures[:50]:
        console.print(f"  row {failure['row']}: {failure['device'] or '-'}: {failure['error']}",
                      markup=False, highlight=False)
    if len(failures) > 50:
        console.print(f"  ... and {len(failures) - 50} more" +
                      ("" if report else " (use --report FILE for all)"))
    if report:
        lines = ["row,device,error"] + [
            f"{f['row']},{f['device'] or ''},\"{(f['error'] or '').replace(chr(34), chr(39))}\""
            for f in failures
        ]
        report.write_text("\n".join(lines) + "\n")
    if failures:
        raise typer.Exit(code=3)


def inventory(
    ctx: typer.Context,
    expiring_days: Annotated[int | None, typer.Option(
        help="Also count as expiring what ends within this many days (default: only what "
             "is past its renewal point, 2/3 of its lifetime, and not renewed).")] = None,
    rotation_age_days: Annotated[int | None, typer.Option(
        help="Credentials older than this are overdue for rotation (default 30).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts by device type, lifecycle state, org unit, site and credential status."""
    obj: Context = ctx.obj
    report = obj.client().get("/v1/inventory", expiring_days=expiring_days,
                              rotation_age_days=rotation_age_days)
    if as_json:
        print_json(report)
        return
    console.print(f"{report['total']} devices")
    print_table("by type", ["type", "devices"], sorted(report["by_type"].items()))
    print_table("by state", ["state", "devices"], sorted(report["by_state"].items()))
    print_table("by org unit", ["org unit", "devices"], sorted(report["by_org"].items()))
    sites = sorted(report["by_site"].items(), key=lambda item: (-item[1], item[0]))
    shown = [[site or "(none)", n] for site, n in sites[:_SITES_SHOWN]]
    if len(sites) > _SITES_SHOWN:
        shown.append([f"… {len(sites) - _SITES_SHOWN} more sites (--json lists all)",
                      sum(n for _, n in sites[_SITES_SHOWN:])])
    print_table("by site", ["site", "devices"], shown)
    days = report["expiring_within_days"]
    labels = {"expiring": "expiring (past renewal point, not renewed"
                          + (f"; or within {days} days)" if days is not None else ")"),
              "older-than-rotation-age":
                  f"older than rotation age ({report['rotation_age_days']} days)"}
    print_table("by credential status", ["status", "devices"],
                [[labels.get(k, k), v] for k, v in report["by_credential_status"].items()])
    console.print(f"{report['never_rotated']} device(s) still use a key older than their "
                  "type's maximum credential age (never rotated)")
    seen = report["presence"]
    when = f"as of {seen['as_of']}" if seen["as_of"] else "no risk register built yet"
    print_table(f"against the network ({when})", ["identities", "count"], [
        ["managed (registered, not decommissioned)", seen["managed"]],
        ["unmanaged (discovered, nobody manages them)", seen["unmanaged"]],
        ["dormant (not seen for long, credentials still valid)", seen["dormant"]],
        ["zombie (decommissioned, still seen)", seen["zombie"]]])


@org_app.command("create")
def org_create(
    ctx: typer.Context,
    unit_id: Annotated[str, typer.Argument(metavar="ID")],
    kind: Annotated[OrgUnitKind, typer.Option()],
    parent: Annotated[str, typer.Option(help="Parent org unit id.")] = "root",
    name: Annotated[str, typer.Option()] = "",
) -> None:
    """Create an org unit."""
    obj: Context = ctx.obj
    unit = obj.client().post("/v1/org-units", {"id": unit_id, "kind": str(kind),
                                               "parent": parent, "name": name})
    console.print(f"created {unit['kind']} {unit['id']} at {unit['path']}")


@org_app.command("list")
def org_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
             ) -> None:
    """List org units."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/org-units")["items"]
    if as_json:
        print_json(items)
        return
    print_table("org units", ["id", "kind", "name", "path"],
                [[u["id"], u["kind"], u["name"], u["path"]] for u in items])


@group_app.command("create")
def group_create(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument(metavar="ID")],
    org: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a group."""
    obj: Context = ctx.obj
    body: dict[str, Any] = {"id": group_id, "name": name}
    if org:
        body["org"] = org
    group = obj.client().post("/v1/groups", body)
    console.print(f"created group {group['id']} in {group['org']}")


@group_app.command("add")
def group_add(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument(metavar="GROUP")],
    device_id: Annotated[str, typer.Argument(metavar="DEVICE")],
) -> None:
    """Add a device to a group."""
    obj: Context = ctx.obj
    obj.client().post(api_path("/v1/groups", group_id, "members"), {"device": device_id})
    console.print(f"added {device_id} to {group_id}")


@group_app.command("list")
def group_list(ctx: typer.Context) -> None:
    """List groups and their members."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/groups")["items"]
    print_table("groups", ["id", "org", "members"],
                [[g["id"], g["org"], ", ".join(g["members"])] for g in items])


@type_app.command("list")
def type_list(ctx: typer.Context) -> None:
    """List device types."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/device-types")["items"]
    print_table("device types", ["name", "class", "criticality", "profile"],
                [[t["name"], t["device_class"], t["criticality"], t["certificate_profile"]]
                 for t in items])


@type_app.command("add")
def type_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    device_class: Annotated[str, typer.Option("--class", help="constrained-sensor, sensor, "
                                              "gateway, controller, actuator, camera, other")],
    criticality: Annotated[str, typer.Option()] = "medium",
) -> None:
    """Add a device type."""
    obj: Context = ctx.obj
    created = obj.client().post("/v1/device-types", {"name": name, "device_class": device_class,
                                                     "criticality": criticality})
    console.print(f"created device type {created['name']}")


@claim_app.command("create")
def claim_create(
    ctx: typer.Context,
    device: Annotated[str, typer.Option(help="The device that will enroll with it.")],
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 10m, 12h, 7d.")] = "10m",
) -> None:
    """Create a one-time claim token; the token is the last line of output."""

    obj: Context = ctx.obj
    seconds = int(parse_duration(ttl).total_seconds())
    claim = obj.client().post(api_path("/v1/devices", device, "claims"), {"ttl_seconds": seconds})
    console.print(f"claim {claim['id']} for {claim['device']}, expires {claim['expires_at']}; "
                  "use it once as the HTTP Basic password (user = device id) on EST "
                  "simpleenroll:")
    print(claim["token"])


@type_app.command("set-rotation")
def type_set_rotation(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    lifetime: Annotated[str | None, typer.Option(
        help="Certificate lifetime, e.g. 1m, 24h, 30d (default: the profile's).")] = None,
    grace: Annotated[str, typer.Option(
        help="How long after expiry an offline device may still recover.")] = "3d",
    max_age: Annotated[str, typer.Option(
        help="Keys kept longer than this are flagged never-rotated.")] = "30d",
) -> None:
    """Set a device type's rotation policy."""

    obj: Context = ctx.obj
    body: dict[str, Any] = {
        "certificate_lifetime_seconds": int(parse_duration(lifetime).total_seconds())
        if lifetime else None,
        "grace_seconds": int(parse_duration(grace).total_seconds()),
        "max_credential_age_seconds": int(parse_duration(max_age).total_seconds()),
    }
    updated = obj.client().request("PUT", api_path("/v1/device-types", name, "rotation"),
                                   json=body).json()
    console.print(f"{updated['name']}: rotation {updated['rotation']}", markup=False)
