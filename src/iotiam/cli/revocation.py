"""``iotiam revoke``: revocation by set (``docs/revocation.md``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from iotiam.cli.client import api_path
from iotiam.cli.main import Context, console
from iotiam.cli.output import print_json

drill_app = typer.Typer(help="Rehearse a playbook against the fleet's state, changing "
                        "nothing.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``revoke`` and ``drill``."""
    app.command("revoke")(revoke)
    app.add_typer(drill_app, name="drill")


def revoke(
    ctx: typer.Context,
    where: Annotated[str, typer.Option(
        "--where", help="Devices to revoke: field=value joined by 'and' (fields: "
        "manufacturer, batch, type, site, firmware, issuer).")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only count what would be revoked.")] = False,
    reason: Annotated[str, typer.Option(help="RFC 5280 reason, e.g. keyCompromise.")
                      ] = "unspecified",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Revoke every certificate, PSK and OAuth client of the selected devices (final)."""
    obj: Context = ctx.obj
    report = obj.client().post("/v1/revocations/sets",
                               {"where": where, "reason": reason, "dry_run": dry_run})
    if as_json:
        print_json(report)
        return
    console.print(summary(report))


@drill_app.command("revoke")
def drill_revoke(
    ctx: typer.Context,
    where: Annotated[str, typer.Option(
        "--where", help="Devices to revoke: field=value joined by 'and'.")],
    reason: Annotated[str, typer.Option(help="RFC 5280 reason, e.g. keyCompromise.")
                      ] = "unspecified",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run `revoke --where` in a transaction that is rolled back; report what it did."""
    obj: Context = ctx.obj
    report = obj.client().post("/v1/revocations/sets/drill",
                               {"where": where, "reason": reason})
    if as_json:
        print_json(report)
        return
    console.print(summary(report))


@drill_app.command("ca-compromise")
def drill_ca_compromise(
    ctx: typer.Context,
    ca_id: Annotated[str, typer.Argument(help="The issuing CA (see `iotiam ca list`).")],
    reason: Annotated[str, typer.Option(help="RFC 5280 reason, e.g. keyCompromise.")
                      ] = "keyCompromise",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run `ca revoke` in a transaction that is rolled back; report what it did."""
    obj: Context = ctx.obj
    report = obj.client().post(api_path("/v1/cas", ca_id, "revoke", "drill"),
                               {"reason": reason})
    if as_json:
        print_json(report)
        return
    console.print(compromise_summary(report), markup=False, highlight=False)


def summary(report: dict[str, Any]) -> str:
    """One line: what was (or would be) revoked."""
    sessions = report.get("sessions")
    live = "unknown" if sessions is None else str(sessions)
    counts = (f"{report['devices']} device(s): {report['certificates']} certificate(s), "
              f"{report['psks']} PSK(s), {report['oauth_clients']} OAuth client(s); "
              f"live sessions: {live}")
    if report.get("drill"):
        return (f"drill: would revoke {counts} in {report['batches']} batch(es); "
                f"credentials left afterwards: {report['left_live']}; rolled back "
                f"[{report['filter']}]")
    if report["dry_run"]:
        return f"would revoke {counts} [{report['filter']}]"
    return (f"revoked {counts} in {report['batches']} batch(es), set {report['set_id']} "
            f"({report['reason']}) [{report['filter']}]")


def compromise_summary(report: dict[str, Any]) -> str:
    """One line: what revoking an issuing CA did (or would do)."""
    sessions = "unknown" if report["sessions"] is None else str(report["sessions"])
    counts = (f"{report['certificates']} certificate(s) of {report['devices']} device(s); "
              f"live sessions: {sessions}")
    if report.get("drill"):
        return (f"drill: revoking {report['ca_id']} ({report['reason']}) would take "
                f"{counts}; left live afterwards: {report['left_live']}; rolled back")
    if report["dry_run"]:
        return f"would revoke {report['ca_id']} ({report['reason']}) and {counts}"
    successor = f"; {report['successor']} takes over" if report["successor"] else ""
    return f"revoked {report['ca_id']} ({report['reason']}) and {counts}{successor}"
