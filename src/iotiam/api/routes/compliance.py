"""The compliance report: the caller's subtree against ETSI EN 303 645, NIST IR 8259A and
the EU CRA's Annex I, each requirement with its status and evidence (docs/compliance.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from iotiam.api.auth import Caller, Wired
from iotiam.compliance.models import View

router = APIRouter(prefix="/v1/compliance", tags=["compliance"])

#: where each evidence view's rows are listed over this API
VIEW_ROUTES = {View.DEVICES: "/v1/devices", View.RISK: "/v1/risk/entries",
               View.FINDINGS: "/v1/findings", View.POLICIES: "/v1/policies",
               View.AUDIT: "/v1/audit/records", View.FIRMWARE: "/v1/firmware/images"}


@router.get("/report")
def compliance_report(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Every mapped requirement with its status (met, partly, not-met, no-evidence), a
    summary and the evidence behind it; ``route`` lists an evidence's rows."""
    body = svc.compliance.report(caller).to_json()
    for requirement in body["requirements"]:
        for evidence in requirement["evidence"]:
            view = evidence["view"]
            evidence["route"] = None if view is None else VIEW_ROUTES[View(view)]
    return body
