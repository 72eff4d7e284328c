"""Plain-HTTP endpoints relying parties fetch without credentials: OCSP, CRLs, CA certs."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request, Response

from iotiam.api.auth import Wired
from iotiam.errors import NotFound
from iotiam.pki.ocsp import parse_ocsp_get_path

router = APIRouter(tags=["public"])

OCSP_RESPONSE = "application/ocsp-response"
MAX_OCSP_REQUEST = 8 * 1024


@router.get("/healthz")
def healthz(svc: Wired) -> dict[str, str]:
    """Liveness plus a database round trip."""
    with svc.database.reading() as uow:
        uow.counters.current("healthz")
    return {"status": "ok"}


@router.get("/crl/{ca_id}.crl")
def crl(ca_id: str, svc: Wired) -> Response:
    """The current CRL of a CA, DER (RFC 5280 §4.2.1.13 CDP target)."""
    if ca_id not in svc.pki.cas.issuer_ids:
        raise NotFound(f"no CRL for {ca_id!r}")
    current = svc.pki.current_crl(ca_id)
    # caches may keep it until nextUpdate at the latest (RFC 5019 §6 spirit)
    max_age = max(0, int((current.next_update - svc.clock.now()).total_seconds()) // 4)
    return Response(current.der, media_type="application/pkix-crl",
                    headers={"Cache-Control": f"public, max-age={min(max_age, 300)}"})


@router.get("/ca/chain.pem")
def chain(svc: Wired) -> Response:
    """Issuing CA followed by the root, PEM."""
    return Response(svc.pki.cas.chain_pem(), media_type="application/pem-certificate-chain")


@router.get("/ca/{ca_id}.crt")
def ca_certificate(ca_id: str, svc: Wired) -> Response:
    """A CA certificate, DER (AIA caIssuers target, RFC 5280 §4.2.2.1)."""
    if ca_id not in svc.pki.cas.issuer_ids:
        raise NotFound(f"no CA {ca_id!r}")
    cert = svc.pki.cas.material(ca_id).certificate
    return Response(cert.public_bytes(serialization.Encoding.DER),
                    media_type="application/pkix-cert")


@router.post("/ocsp")
async def ocsp_post(request: Request, svc: Wired) -> Response:
    """OCSP over POST (RFC 6960 Appendix A.1)."""
    body = await request.body()
    if len(body) > MAX_OCSP_REQUEST:
        body = b""  # answered as malformedRequest, in OCSP's own vocabulary
    answer = svc.pki.ocsp_response(body)
    return Response(answer, media_type=OCSP_RESPONSE)


@router.get("/ocsp/{encoded:path}")
def ocsp_get(encoded: str, svc: Wired) -> Response:
    """OCSP over GET: base64 DER in the path (RFC 6960 Appendix A.1, RFC 5019 §5)."""
    try:
        request_der = parse_ocsp_get_path(encoded)
    except Exception:
        request_der = b""
    answer = svc.pki.ocsp_response(request_der)
    return Response(answer, media_type=OCSP_RESPONSE,
                    headers={"Cache-Control": "no-cache"})
