"""``iotiam compliance``: the fleet against ETSI EN 303 645, NIST IR 8259A and the EU
CRA's Annex I, where iotiam has evidence (``GET /v1/compliance/report``)."""

from __future__ import annotations

from typing import Annotated

import typer

from iotiam.cli.entry import UsageError
from iotiam.cli.main import Context
from iotiam.cli.output import print_fields, print_json, print_table

STATUSES = ("met", "partly", "not-met", "no-evidence")


def register(app: typer.Typer) -> None:
    """Add ``compliance``."""
    app.command("compliance")(compliance)


def compliance(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(
        help="only requirements with this status: met, partly, not-met, no-evidence")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Each requirement iotiam has evidence for, its status and why (docs/compliance.md)."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status must be one of {', '.join(STATUSES)}")
    obj: Context = ctx.obj
    report = obj.client().get("/v1/compliance/report")
    if status is not None:
        report["requirements"] = [r for r in report["requirements"] if r["status"] == status]
    if as_json:
        print_json(report)
        return
    print_fields({"org_path": report["org_path"], "devices": report["devices"],
                  "generated_at": report["generated_at"], **report["counts"]})
    print_table("Requirements", ["framework", "clause", "status", "why"],
                [[r["framework"], r["clause"], r["status"], r["summary"]]
                 for r in report["requirements"]])
