"""The compliance report: the caller's subtree against ETSI EN 303 645, NIST IR 8259A and
the EU CRA's Annex I (``ComplianceReports.report``, what ``GET /v1/compliance/report``
answers), filtered and sorted, and exported as one self-contained HTML file for an
auditor (inline CSS, no link, script or image from anywhere)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from iotiam.compliance.models import Framework, Judgement, Status, View
from iotiam.errors import InvalidInput
from iotiam.web.console import Signed, Wired, environment, link, render

router = APIRouter(include_in_schema=False)

#: where an evidence view's rows are listed in the console (firmware has no page yet)
VIEW_PAGES = {View.DEVICES: "/devices", View.RISK: "/risk", View.FINDINGS: "/findings",
              View.POLICIES: "/policies", View.AUDIT: "/audit"}
#: the orders offered: the documents' own, or worst status first
SORTS = ("document", "status")
_WORST_FIRST = {Status.NOT_MET: 0, Status.PARTLY: 1, Status.NO_EVIDENCE: 2, Status.MET: 3}


def evidence_link(view: View | None, query: dict[str, str]) -> str | None:
    """The console page that lists an evidence's rows, if there is one."""
    page = VIEW_PAGES.get(view) if view is not None else None
    return None if page is None else link(page, **query)


environment.globals["evidence_link"] = evidence_link


@router.get("/compliance")
def compliance(
    request: Request, session: Signed, svc: Wired,
    framework: str | None = Query(default=None, max_length=32),
    status: str | None = Query(default=None, max_length=16),
    sort: str | None = Query(default=None, max_length=16),
) -> Response:
    """Each requirement with its status and evidence, for the caller's subtree."""
    report = svc.compliance.report(session.principal)
    shown = _sorted(_filtered(list(report.judgements), framework, status), sort)
    return render(request, session, "compliance.html", report=report, items=shown,
                  total=len(shown), frameworks=[str(f) for f in Framework],
                  statuses=[str(s) for s in Status], sorts=SORTS,
                  filters={"framework": framework or "", "status": status or "",
                           "sort": sort or ""})


def _filtered(items: list[Judgement], framework: str | None, status: str | None
              ) -> list[Judgement]:
    if framework and framework not in set(Framework):
        raise InvalidInput(f"framework is one of {', '.join(Framework)}")
    if status and status not in set(Status):
        raise InvalidInput(f"status is one of {', '.join(Status)}")
    return [j for j in items if (not framework or j.requirement.framework == framework)
            and (not status or j.status == status)]


def _sorted(items: list[Judgement], sort: str | None) -> list[Judgement]:
    if sort not in (None, "", *SORTS):
        raise InvalidInput(f"sort is one of {', '.join(SORTS)}")
    if sort == "status":
        return sorted(items, key=lambda j: _WORST_FIRST[j.status])
    return items


@router.get("/compliance/export")
def export(request: Request, session: Signed, svc: Wired) -> Response:
    """The whole report as one HTML file to download: inline CSS, nothing external."""
    report = svc.compliance.report(session.principal)
    body = environment.get_template("compliance_export.html").render(
        report=report, frameworks=list(Framework))
    stamp = report.generated_at.strftime("%Y%m%dT%H%MZ")
    return HTMLResponse(body, headers={
        "Content-Disposition": f'attachment; filename="iotiam-compliance-{stamp}.html"'})
