"""``iotiam risk``: the identity risk register (list, show, summary, trend, rebuild,
accept, export)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.cli.client import api_path
from iotiam.cli.entry import UsageError
from iotiam.cli.inputs import LimitOption
from iotiam.cli.main import Context
from iotiam.cli.output import print_fields, print_json, print_line, print_table
from iotiam.errors import InvalidInput

risk_app = typer.Typer(help="The identity risk register: what to fix first.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``risk``."""
    app.add_typer(risk_app, name="risk")


def _rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [[e["id"], e["score"], e["subject"], e["subject_id"][:40], e["org_path"],
             e["site"] or "", " ".join(f["factor"] for f in e["factors"])] for e in items]


@risk_app.command("list")
def risk_list(
    ctx: typer.Context,
    factor: Annotated[str | None, typer.Option(help="e.g. unmanaged, weak-key")] = None,
    site: Annotated[str | None, typer.Option()] = None,
    kind: Annotated[str | None, typer.Option("--type", help="device type")] = None,
    org: Annotated[str | None, typer.Option(help="org path, e.g. /root/acme/")] = None,
    subject: Annotated[str | None, typer.Option(
        help="device, asset, certificate, psk, ca or fleet")] = None,
    min_score: Annotated[int | None, typer.Option("--min-score", min=0)] = None,
    after: Annotated[str | None, typer.Option(help="the 'next' of a previous page")] = None,
    limit: LimitOption = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Entries, worst first."""
    obj: Context = ctx.obj
    page = obj.client().get("/v1/risk/entries", factor=factor, site=site, type=kind, org=org,
                            subject=subject, min_score=min_score, after=after, limit=limit)
    if as_json:
        print_json(page)
        return
    print_table(f"Risk register ({page['total']} entries)",
                ["id", "score", "subject", "subject id", "org", "site", "factors"],
                _rows(page["items"]))
    if page["next"]:
        print_line(f"next page: --after {page['next']}")


@risk_app.command("show")
def risk_show(ctx: typer.Context, entry_id: str) -> None:
    """One entry with every factor's evidence."""
    obj: Context = ctx.obj
    entry = obj.client().get(api_path("/v1/risk/entries", entry_id))
    print_fields(entry, skip=("factors", "accepted"))
    for factor in entry["factors"]:
        print_line(f"- {factor['factor']} ({factor['severity']}): {factor['summary']}")
        print_json(factor["evidence"])
    for accepted in entry["accepted"]:
        print_line(f"accepted {accepted['factor']} until {accepted['expires_at']} by "
                   f"{accepted['by']}: {accepted['reason']}")


@risk_app.command("summary")
def risk_summary(ctx: typer.Context,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts per factor and severity; managed, unmanaged, dormant, zombie."""
    obj: Context = ctx.obj
    summary = obj.client().get("/v1/risk/summary")
    if as_json:
        print_json(summary)
        return
    print_fields({k: v for k, v in summary.items() if not isinstance(v, dict)})
    print_table("By factor", ["factor", "count"], sorted(summary["by_factor"].items()))
    print_table("By severity", ["severity", "count"], sorted(summary["by_severity"].items()))


@risk_app.command("trend")
def risk_trend(ctx: typer.Context, limit: LimitOption = 30,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts per factor over the last rebuilds."""
    obj: Context = ctx.obj
    points = obj.client().get("/v1/risk/trend", limit=limit)["items"]
    if as_json:
        print_json(points)
        return
    keys = sorted({k for p in points for k in p["counts"]})
    print_table("Trend", ["rebuild", "at", *keys],
                [[p["rebuild"], p["at"], *(p["counts"].get(k, 0) for k in keys)]
                 for p in points])


@risk_app.command("rebuild")
def risk_rebuild(ctx: typer.Context) -> None:
    """Judge every identity again now."""
    obj: Context = ctx.obj
    report = obj.client().post("/v1/risk/rebuild", {})
    print_line(f"rebuild {report['rebuild']}: {report['entries']} entries, "
                  f"{report['removed']} removed")


@risk_app.command("accept")
def risk_accept(
    ctx: typer.Context, entry_id: str,
    factor: Annotated[str, typer.Option(help="the factor to accept, e.g. never-rotated")],
    reason: Annotated[str, typer.Option(help="why the risk is accepted")],
    days: Annotated[int, typer.Option(min=1, max=365, help="for how many days")] = 30,
) -> None:
    """Accept one factor of an entry for a while, with a reason (audited)."""
    if not reason.strip():
        raise UsageError("--reason must say why the risk is accepted")
    obj: Context = ctx.obj
    entry = obj.client().post(api_path("/v1/risk/entries", entry_id, "accept"),
                              {"factor": factor, "reason": reason, "expires_in_days": days})
    print_line(f"{entry['id']}: {factor} accepted for {days} days; score {entry['score']}")


@risk_app.command("export")
def risk_export(
    ctx: typer.Context,
    export_format: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    output: Annotated[Path | None, typer.Option(
        "--output", dir_okay=False, help="write here instead of standard output")] = None,
    factor: Annotated[str | None, typer.Option()] = None,
    org: Annotated[str | None, typer.Option()] = None,
) -> None:
    """The register as CSV or JSON, streamed."""
    if export_format not in ("csv", "json"):
        raise UsageError("--format must be csv or json")
    obj: Context = ctx.obj
    client = obj.client()
    if output is None:
        client.download("/v1/risk/export", sys.stdout.buffer.write, format=export_format,
                        factor=factor, org=org)
        sys.stdout.buffer.flush()
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("wb") as sink:
            size = client.download("/v1/risk/export", sink.write, format=export_format,
                                   factor=factor, org=org)
        partial.replace(output)
    except OSError as e:
        raise InvalidInput(f"cannot write {output}: {e.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    print_line(f"wrote {size} bytes to {output}")
