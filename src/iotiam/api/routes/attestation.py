"""Device attestation over mTLS: get a nonce, post signed evidence, get the verdict.

The device is authenticated by its iotiam certificate on the TLS connection (or the
certificate a trusted proxy forwards), not by a bearer token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from iotiam.api.auth import Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.routes.firmware import render_status
from iotiam.api.schemas import Body
from iotiam.api.tls import client_certificate

router = APIRouter(prefix="/v1/attestation", tags=["attestation"], route_class=UntrustedJsonRoute)


class EvidenceIn(Body):
    """``evidence``: the EAT (``typ`` ``eat+jwt``) signed with the certificate's key."""

    #: any JSON value: the attestation service explains what is wrong with it
    evidence: Any = None


@router.post("/challenge")
def challenge(request: Request, svc: Wired) -> dict[str, Any]:
    """A single-use nonce (base64url, 32 random bytes) for the calling device."""
    certificate = client_certificate(request, svc.settings.trusted_proxies)
    issued = svc.attestation.challenge(certificate)
    return {"nonce": issued.nonce, "expires_at": issued.expires_at.isoformat()}


@router.post("/evidence")
def evidence(body: EvidenceIn, request: Request, svc: Wired) -> dict[str, Any]:
    """Verify the evidence and answer the verdict (``compliant`` and ``reason``)."""
    certificate = client_certificate(request, svc.settings.trusted_proxies)
    status = svc.attestation.submit_evidence(certificate, body.evidence)
    return render_status(status.device_id, status)
