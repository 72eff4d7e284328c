"""Certificate issuance, lookup and revocation; CA and CRL information."""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from iotiam.api.auth import Caller, Wired
from iotiam.api.issuance import Batches, issue_one
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.responses import CertificateList, CertificateOut
from iotiam.api.schemas import MAX_JSON_INT, CertificateIn, RevokeIn, render_certificate
from iotiam.pki.models import CertificateStatus, IssueRequest
from iotiam.pki.service import public_urls

router = APIRouter(prefix="/v1", tags=["pki"], route_class=UntrustedJsonRoute)


@router.post("/certificates", status_code=201, response_model=CertificateOut)
async def issue_certificate(body: CertificateIn, caller: Caller, svc: Wired,
                            batches: Batches) -> Response:
    """Issue a certificate for a device from its CSR (PEM or base64 DER)."""
    record = await issue_one(batches, caller, IssueRequest(
        body.device, _csr_bytes(body.csr), body.profile))
    out = render_certificate(record)
    out["chain_pem"] = svc.pki.cas.chain_pem()
    # the dict is the documented shape already: no second pass through the model
    return JSONResponse(out, status_code=201)


@router.get("/certificates", response_model=CertificateList)
def list_certificates(
    caller: Caller,
    svc: Wired,
    device: str | None = None,
    status: CertificateStatus | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=MAX_JSON_INT),
) -> dict[str, Any]:
    """Certificates in the caller's subtree, newest first."""
    records = svc.pki.list_certificates(caller, device_id=device, status=status, limit=limit,
                                        offset=offset)
    return {"items": [render_certificate(r, with_pem=False) for r in records]}


@router.get("/certificates/{serial}", response_model=CertificateOut)
def show_certificate(serial: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """One certificate by serial (hex, colons allowed)."""
    return render_certificate(svc.pki.get_certificate(caller, serial))


@router.post("/certificates/{serial}/revoke", response_model=CertificateOut)
def revoke_certificate(serial: str, body: RevokeIn, caller: Caller, svc: Wired
                       ) -> dict[str, Any]:
    """Revoke one certificate (final)."""
    return render_certificate(svc.pki.revoke_certificate(caller, serial, body.reason),
                              with_pem=False)


@router.post("/devices/{device_id}/revoke-certificates")
def revoke_device_certificates(device_id: str, body: RevokeIn, caller: Caller, svc: Wired
                               ) -> dict[str, Any]:
    """Revoke every live certificate of a device."""
    revoked = svc.pki.revoke_device(caller, device_id, body.reason)
    return {"revoked": [render_certificate(r, with_pem=False) for r in revoked]}


@router.get("/ca")
def show_ca(caller: Caller, svc: Wired) -> dict[str, Any]:
    """The issuing CA and root, with the URLs relying parties use."""
    cas = svc.pki.cas
    base = svc.settings.pki.public_base_url
    issuing_pem, root_pem = (c.certificate.public_bytes(serialization.Encoding.PEM).decode()
                             for c in (cas.issuing, cas.root))
    return {
        "issuing": {"id": cas.issuing_id, "pem": issuing_pem,
                    "subject": cas.issuing.certificate.subject.rfc4514_string(),
                    "not_after": cas.issuing.certificate.not_valid_after_utc.isoformat()},
        "root": {"id": cas.root_id, "pem": root_pem,
                 "subject": cas.root.certificate.subject.rfc4514_string(),
                 "not_after": cas.root.certificate.not_valid_after_utc.isoformat()},
        "urls": public_urls(base, cas.issuing_id).__dict__,
        "chain_url": f"{base}/ca/chain.pem",
    }


@router.get("/ca/crl")
def show_crl(caller: Caller, svc: Wired) -> dict[str, Any]:
    """The issuing CA's current CRL: number, validity, entries and the DER (base64)."""
    crl = svc.pki.current_crl(svc.pki.cas.issuing_id)
    parsed = x509.load_der_x509_crl(crl.der)
    return {
        "issuer": crl.issuer_id,
        "number": crl.number,
        "this_update": crl.this_update.isoformat(),
        "next_update": crl.next_update.isoformat(),
        "entries": len(parsed),
        "url": public_urls(svc.settings.pki.public_base_url, crl.issuer_id).crl_url,
        "der_base64": base64.b64encode(crl.der).decode(),
    }


def _csr_bytes(text: str) -> bytes:
    """PEM as is; anything else is taken as base64 DER."""
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode()
    try:
        return base64.b64decode(text, validate=False)
    except ValueError:
        return text.encode()  # parse_csr reports it as not a CSR

