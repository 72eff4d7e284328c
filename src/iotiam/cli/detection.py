"""``iotiam findings``, ``iotiam detect`` and ``iotiam trust``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from iotiam.cli.client import api_path
from iotiam.cli.entry import UsageError
from iotiam.cli.inputs import LimitOption
from iotiam.cli.main import Context, console
from iotiam.cli.output import print_fields, print_json, print_table
from iotiam.detection.models import UNKNOWN_TYPE
from iotiam.errors import InvalidInput

findings_app = typer.Typer(help="Findings of the detectors and attestation.",
                           no_args_is_help=True)
detect_app = typer.Typer(help="Detection modes, playbook, event replay.", no_args_is_help=True)
trust_app = typer.Typer(help="Device trust scores.", no_args_is_help=True)

#: events per upload when replaying (well under the API's 1 MiB body limit)
REPLAY_BATCH = 2000


def register(app: typer.Typer) -> None:
    """Add ``findings``, ``detect`` and ``trust``."""
    app.add_typer(findings_app, name="findings")
    app.add_typer(detect_app, name="detect")
    app.add_typer(trust_app, name="trust")


def _finding_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [[f["id"], f["state"], f["severity"], f["type"], f["device_id"] or "(fleet)",
             f["at"], f["summary"][:70]] for f in items]


@findings_app.command("list")
def findings_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="open, acknowledged, resolved, "
                                                   "false_positive")] = None,
    device: Annotated[str | None, typer.Option()] = None,
    kind: Annotated[str | None, typer.Option("--type", help="e.g. rate_change")] = None,
    limit: LimitOption = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Findings, newest first."""
    obj: Context = ctx.obj
    page = obj.client().get("/v1/findings", state=state, device=device, type=kind,
                            limit=limit)
    if as_json:
        print_json(page["items"])
        return
    print_table("Findings", ["id", "state", "severity", "type", "device", "at", "summary"],
                _finding_rows(page["items"]))


@findings_app.command("show")
def findings_show(ctx: typer.Context, finding_id: str) -> None:
    """One finding with its evidence."""
    obj: Context = ctx.obj
    finding = obj.client().get(api_path("/v1/findings", finding_id))
    print_fields(finding, skip=("evidence",))
    console.print("evidence:")
    print_json(finding["evidence"])


@findings_app.command("ack")
def findings_ack(ctx: typer.Context, finding_id: str,
                 note: Annotated[str, typer.Option()] = "") -> None:
    """Acknowledge a finding (someone is on it)."""
    obj: Context = ctx.obj
    finding = obj.client().post(api_path("/v1/findings", finding_id, "ack"), {"note": note})
    console.print(f"{finding['id']}: {finding['state']}")


@findings_app.command("resolve")
def findings_resolve(
    ctx: typer.Context, finding_id: str,
    note: Annotated[str, typer.Option()] = "",
    false_positive: Annotated[bool, typer.Option(
        "--false-positive", help="normal behaviour: lift its quarantine and teach the "
                                 "baseline")] = False,
) -> None:
    """Resolve a finding, or mark it a false positive."""
    obj: Context = ctx.obj
    finding = obj.client().post(api_path("/v1/findings", finding_id, "resolve"),
                                {"note": note, "false_positive": false_positive})
    console.print(f"{finding['id']}: {finding['state']}")


@detect_app.command("mode")
def detect_mode(
    ctx: typer.Context,
    device_type: Annotated[str | None, typer.Argument(help="device type")] = None,
    mode: Annotated[str | None, typer.Argument(help="learn | monitor | enforce")] = None,
    unknown: Annotated[str | None, typer.Option(
        "--unknown", help="Set the mode of events with no device type (unknown clients' "
                          "auth failures): learn | monitor | enforce.")] = None,
) -> None:
    """Show every type's mode, or set one: ``iotiam detect mode sensor enforce``,
    ``iotiam detect mode --unknown monitor``."""
    obj: Context = ctx.obj
    client = obj.client()
    if unknown is not None:
        if device_type is not None or mode is not None:
            raise UsageError("--unknown takes the mode: give no device type with it")
        device_type, mode = UNKNOWN_TYPE, unknown
    if device_type is not None and mode is not None:
        result = client.request("PUT", api_path("/v1/detection/modes", device_type),
                                json={"mode": mode}).json()
        console.print(f"{result['device_type']}: {result['mode']}")
        return
    if device_type is not None:
        raise UsageError("give both a device type and a mode (learn, monitor, enforce)")
    modes = client.get("/v1/detection/modes")
    print_table("Detection modes", ["device type", "mode"],
                [[m["device_type"], m["mode"]] for m in modes["items"]]
                + [[f"(no type: {UNKNOWN_TYPE})", modes.get("unknown", "learn")],
                   ["(types never set)", modes["default"]]])


@detect_app.command("would-act")
def detect_would_act(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=90, help="Look back this many days.")] = 7,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """How often enforce's playbook would have acted on the findings raised in monitor
    mode, by finding type and device type: switch a type to enforce once these are
    actions you want."""
    obj: Context = ctx.obj
    report = obj.client().get("/v1/detection/would-act", days=days)
    if as_json:
        print_json(report)
        return
    columns = ["findings", "repeats", "would_alert", "would_quarantine", "would_revoke"]
    headers = ["findings", "repeats", "alert", "quarantine", "revoke"]
    print_table(f"Monitor mode, last {days} days, by finding type", ["finding type", *headers],
                [[r["finding_type"], *(r[c] for c in columns)]
                 for r in report["by_finding_type"]])
    print_table(f"Monitor mode, last {days} days, by device type", ["device type", *headers],
                [[r["device_type"], *(r[c] for c in columns)]
                 for r in report["by_device_type"]])
    total = report["monitor"]
    console.print(f"in all: {total['findings']} findings; enforce would have quarantined "
                  f"{total['would_quarantine']} and revoked {total['would_revoke']}")


@detect_app.command("batch")
def detect_batch(ctx: typer.Context, batch_id: str,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The findings an upload of events raised (its id is in `POST /v1/events`'s answer)."""
    obj: Context = ctx.obj
    result = obj.client().get(api_path("/v1/events/batches", batch_id, "findings"))
    if as_json:
        print_json(result)
        return
    print_table(f"Findings of {result['batch']} ({result['events']} events)",
                ["id", "state", "severity", "type", "device", "at", "summary"],
                _finding_rows(result["items"]))


@detect_app.command("playbook")
def detect_playbook(
    ctx: typer.Context,
    set_file: Annotated[Path | None, typer.Option(
        "--set", help="JSON file {\"rules\": [...]} to install")] = None,
) -> None:
    """Show the playbook, or replace it."""
    obj: Context = ctx.obj
    client = obj.client()
    if set_file is not None:
        try:
            body = set_file.read_bytes()
        except OSError as e:
            raise InvalidInput(f"cannot read {set_file}: {e.strerror}") from None
        playbook = client.request("PUT", "/v1/detection/playbook", content=body,
                                  headers={"Content-Type": "application/json"}).json()
    else:
        playbook = client.get("/v1/detection/playbook")
    print_table("Playbook", ["finding type", "min severity", "actions"],
                [[r["finding_type"], r["min_severity"], ", ".join(r["actions"])]
                 for r in playbook["rules"]])


@detect_app.command("replay")
def detect_replay(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSON-lines events (docs/events.md)")],
) -> None:
    """Send recorded events through the server's pipeline, in batches, in time order."""
    obj: Context = ctx.obj
    client = obj.client()
    try:
        lines = file.read_bytes().splitlines()
    except OSError as e:
        raise InvalidInput(f"cannot read {file}: {e.strerror}") from None
    totals = {"accepted": 0, "rejected": 0, "findings": 0}
    errors: list[str] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=len(lines))
        for start in range(0, len(lines), REPLAY_BATCH):
            chunk = lines[start:start + REPLAY_BATCH]
            # keep line numbers of the file: blank lines stand in for the ones before
            body = b"\n" * start + b"\n".join(chunk)
            report = client.request("POST", "/v1/events", content=body,
                                    headers={"Content-Type": "application/x-ndjson"}).json()
            for key in totals:
                totals[key] += report[key]
            errors += [f"line {e['item']}: {e['error']}" for e in report["errors"]]
            progress.advance(task, len(chunk))
    console.print(f"{totals['accepted']} events ingested, {totals['rejected']} rejected, "
                  f"{totals['findings']} findings raised")
    for line in errors[:20]:
        console.print(f"  {line}")
    if totals["rejected"]:
        raise typer.Exit(3)  # partly done, as for imports


@detect_app.command("lift")
def detect_lift(ctx: typer.Context, device: str) -> None:
    """Lift the quarantine a playbook put on a device (its previous state returns)."""
    obj: Context = ctx.obj
    result = obj.client().post(api_path("/v1/devices", device, "quarantine", "lift"), {})
    for m in result["lifted"]:
        console.print(f"{m['id']}: lifted ({m['action']} from finding {m['finding_id']}, "
                      f"back to {m['previous_state'] or 'active'})")


@trust_app.command("show")
def trust_show(ctx: typer.Context, device: str,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A device's trust score and the factors that moved it."""
    obj: Context = ctx.obj
    score = obj.client().get(api_path("/v1/devices", device, "trust"))
    if as_json:
        print(json.dumps(score))
        return
    compliant = {True: "yes", False: "no", None: "unknown"}[score["firmware_compliant"]]
    console.print(f"{score['device_id']}: trust {score['score']}/100 "
                  f"(firmware compliant: {compliant})")
    print_table("Factors", ["factor", "delta", "detail"],
                [[f["factor"], f["delta"], f["detail"]] for f in score["factors"]])
