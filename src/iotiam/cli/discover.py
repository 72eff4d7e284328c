"""``iotiam discover import|list|show|adopt``: what sources saw, the assets nobody
manages, and bringing them under management."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from iotiam.cli.client import api_path
from iotiam.cli.entry import UsageError
from iotiam.cli.inputs import MAX_PAGE, LimitOption, parse_duration
from iotiam.cli.main import Context, errors
from iotiam.cli.output import print_fields, print_json, print_line, print_table
from iotiam.errors import InvalidInput

discover_app = typer.Typer(help="Import what network sources saw; list discovered assets.",
                           no_args_is_help=True)

#: bytes per piece of the upload (the progress bar moves once per piece)
UPLOAD_CHUNK = 256 * 1024
#: an import answers when the whole file is read: wait as long as it takes
IMPORT_TIMEOUT = httpx.Timeout(30.0, read=None)
#: refused lines printed (all are counted)
SHOWN_REFUSALS = 50


def register(app: typer.Typer) -> None:
    """Add the discovery commands."""
    app.add_typer(discover_app, name="discover")


def _options(pairs: list[str] | None) -> list[str]:
    seen: set[str] = set()
    for pair in pairs or []:
        key, sep, _ = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option wants key=value, got {pair[:60]!r}")
        if key.strip() in seen:  # the API refuses it too: neither value is kept silently
            raise UsageError(f"--option {key.strip()[:60]!r} is given twice: give each "
                             "option once")
        seen.add(key.strip())
    return list(pairs or [])


def _pieces(path: Path, progress: Progress, task: Any) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while piece := stream.read(UPLOAD_CHUNK):
            progress.advance(task, len(piece))
            yield piece


@discover_app.command("import")
def discover_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The file the source reads.")],
    source: Annotated[str, typer.Option(help="What FILE is: jsonl, nmap, dhcpd, ...")],
    site: Annotated[str | None, typer.Option(help="The site FILE was collected at.")] = None,
    network: Annotated[str | None, typer.Option(help="The network (VLAN, subnet) it saw.")
                       ] = None,
    option: Annotated[list[str] | None, typer.Option(
        help="A source setting k=v (repeatable), e.g. map.mac='MAC Address'.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import FILE: sightings are matched to registered devices or become assets."""
    obj: Context = ctx.obj
    params: dict[str, Any] = {"source": source, "option": _options(option)}
    for key, value in (("site", site), ("network", network)):
        if value is not None:
            params[key] = value
    try:
        stat = file.stat()
        if not file.is_file():
            raise InvalidInput(f"{file} is not a file")
    except OSError as e:
        raise InvalidInput(f"cannot read {file}: {e.strerror or e}") from e
    size = stat.st_size
    # records with no time of their own (an ARP table, a CMDB export) take the file's:
    # importing the same file again then adds nothing
    params["observed_at"] = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True) as progress:
        task = progress.add_task(f"importing {file.name}", total=size)
        response = obj.client().request(
            "POST", "/v1/discovery/imports", params=params,
            content=_pieces(file, progress, task), timeout=IMPORT_TIMEOUT,
            headers={"Content-Type": "application/octet-stream"})
    report = response.json()
    if as_json:
        print_json(report)
        return
    print_line(f"{report['source']}: read {report['read']}, added {report['added']}, "
               f"duplicates {report['duplicates']}, matched {report['matched']}, "
               f"new assets {report['new_assets']}, refused {report['refused']}")
    for refusal in report["refusals"][:SHOWN_REFUSALS]:
        print_line(f"  line {refusal['line']}: {refusal['reason']}")
    if report["refused"] > SHOWN_REFUSALS:
        print_line(f"  ... {report['refused'] - SHOWN_REFUSALS} more refused "
                   "(--json lists up to 1000)")


@discover_app.command("list")
def discover_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="unmanaged, adopted or matched.")] = None,
    site: Annotated[str | None, typer.Option()] = None,
    source: Annotated[str | None, typer.Option(help="Seen by this source.")] = None,
    limit: LimitOption = 100,
    after: Annotated[str | None, typer.Option(metavar="ID",
                                              help="Start after this asset (next page).")
                     ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List discovered assets, in id order; says how many match and how to see more."""
    obj: Context = ctx.obj
    page = obj.client().get("/v1/discovery/assets", status=status, site=site, source=source,
                            after=after, limit=limit)
    items, total, more = page["items"], page["total"], page["next"]
    if as_json:
        print_json(items)
        return
    print_table(f"{len(items)} of {total} assets",
                ["id", "status", "site", "ip", "mac", "hostname", "sources", "last seen"],
                [[a["id"], a["status"], a["site"], a["ip"], a["mac"], a["hostname"],
                  ",".join(a["sources"]), a["last_seen"]] for a in items])
    if more:
        bigger = f" (or --limit {total})" if total <= MAX_PAGE else ""
        print_line(f"more: iotiam discover list --after {more}{bigger}")


@discover_app.command("show")
def discover_show(
    ctx: typer.Context,
    asset_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one discovered asset with every identifier it was seen with."""
    obj: Context = ctx.obj
    asset = obj.client().get(api_path("/v1/discovery/assets", asset_id))
    if as_json:
        print_json(asset)
    else:
        print_fields(asset)


#: assets per adoption request (the API's maximum)
ADOPT_CHUNK = 1000


def _selected(ctx: typer.Context, ids: list[str], site: str | None,
              source: str | None) -> list[str]:
    """The assets named, or every unmanaged one the filters select."""
    if ids:
        if site or source:
            raise UsageError("name assets or select them with --seen-at/--seen-by, not both")
        return ids
    if not (site or source):
        raise UsageError("name the assets to adopt, or select them with --seen-at/--seen-by")
    client, found, after = ctx.obj.client(), [], None
    while True:
        page = client.get("/v1/discovery/assets", status="unmanaged", site=site,
                          source=source, after=after, limit=MAX_PAGE)
        found += [a["id"] for a in page["items"]]
        after = page["next"]
        if not after:
            return found


@discover_app.command("adopt")
def discover_adopt(
    ctx: typer.Context,
    asset_ids: Annotated[list[str] | None, typer.Argument(metavar="[ID]...")] = None,
    device_type: Annotated[str, typer.Option("--type", help="The device type they get.")
                           ] = "",
    org: Annotated[str | None, typer.Option(help="The org unit they join.")] = None,
    site: Annotated[str | None, typer.Option(help="Their site (default: where each was "
                                                  "seen).")] = None,
    seen_at: Annotated[str | None, typer.Option(help="Select the unmanaged assets seen at "
                                                     "this site.")] = None,
    seen_by: Annotated[str | None, typer.Option(help="Select the unmanaged assets this "
                                                     "source saw.")] = None,
    claim_ttl: Annotated[str | None, typer.Option(help="Give each a one-time claim token "
                                                       "valid this long (e.g. 7d).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to confirm.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register discovered assets as pending devices, after showing what each becomes."""
    if not device_type:
        raise UsageError("--type is required: the device type the assets become")
    body: dict[str, Any] = {"type": device_type, "org": org, "site": site}
    if claim_ttl is not None:
        body["claim_ttl_seconds"] = int(parse_duration(claim_ttl).total_seconds())
    ids = _selected(ctx, asset_ids or [], seen_at, seen_by)
    if not ids:
        raise InvalidInput("no unmanaged asset matches")
    client = ctx.obj.client()
    chunks = [ids[i:i + ADOPT_CHUNK] for i in range(0, len(ids), ADOPT_CHUNK)]
    if not yes:
        proposals = [p for chunk in chunks for p in client.post(
            "/v1/discovery/adoptions", {**body, "assets": chunk, "dry_run": True})["items"]]
        print_table(f"{len(proposals)} asset(s) would become devices of type {device_type}",
                    ["asset", "device", "site", "mac", "hostname", "ip"],
                    [[p["asset"], p["device"], p["site"], p["attributes"].get("mac"),
                      p["attributes"].get("hostname"), p["attributes"].get("ip")]
                     for p in proposals])
        if not sys.stdin.isatty():
            raise UsageError("confirm with --yes (no terminal to ask on)")
        typer.confirm("register them?", abort=True, err=True)
    results = [item for chunk in chunks for item in client.post(
        "/v1/discovery/adoptions", {**body, "assets": chunk})["items"]]
    if as_json:
        print_json(results)
    else:
        print_table(f"{sum(r['ok'] for r in results)} of {len(results)} adopted",
                    ["asset", "device", "ok", "claim token (shown once)", "error"],
                    [[r["asset"], r["device"], r["ok"], (r["claim"] or {}).get("token"),
                      r["error"]] for r in results])
    failed = [r for r in results if not r["ok"]]
    if failed:
        message = (f"{len(failed)} of {len(results)} asset(s) were not adopted; "
                   f"{failed[0]['asset']}: {failed[0]['error']}")
        if len(failed) == len(results):
            raise InvalidInput(message)
        print_line(f"error: {message}", to=errors)
        raise typer.Exit(3)  # partly done, as for imports
