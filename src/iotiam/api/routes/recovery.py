"""Recovery after a long outage: the device proves it holds its previous key (no admin token)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from iotiam.api.auth import Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body, render_certificate
from iotiam.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["enrollment"], route_class=UntrustedJsonRoute)


class RecoveryIn(Body):
    """The expired certificate, a new CSR and the old key's signature over both."""

    certificate: str = Field(max_length=16 * 1024)
    csr: str = Field(max_length=16 * 1024, description="base64 DER PKCS#10")
    signed_at: datetime
    signature: str = Field(max_length=2048, description="base64 signature by the old key")


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput(f"'{what}' is not base64") from e


@router.post("/recovery")
async def recover(body: RecoveryIn, svc: Wired) -> dict[str, Any]:
    """Re-issue a certificate for a device whose certificate expired inside the grace window."""
    if body.signed_at.tzinfo is None:
        raise InvalidInput("'signed_at' needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    record = await run_in_threadpool(
        svc.enrollment.recover, body.certificate, _b64(body.csr, "csr"), body.signed_at,
        _b64(body.signature, "signature"),
    )
    out = render_certificate(record)
    out["chain_pem"] = svc.pki.cas.chain_pem()
    return out
