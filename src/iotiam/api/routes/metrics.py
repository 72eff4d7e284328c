"""``GET /metrics``: Prometheus's text exposition format, on the plain-HTTP listener.

Beside ``/healthz`` and ``/readyz`` rather than on the API port: a scraper needs neither
TLS client setup nor an admin token there, and the API port, which devices and admins
reach, does not show them request rates and queue depths. docs/observability.md says
how to keep the port itself from reaching further than the monitoring network.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from iotiam.api.auth import Wired
from iotiam.api.openapi import text

router = APIRouter(tags=["public"])


@router.get("/metrics", response_class=Response,
            responses=text("text/plain", "every metric, summed over the serving processes"))
def metrics(svc: Wired) -> Response:
    """Every metric of this replica (all its ``serve`` workers)."""
    body, media_type = svc.metrics.exposition()
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})
