"""Plain-HTTP endpoints relying parties fetch without credentials: OCSP, CRLs, CA certs."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from iotiam.api.auth import Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.openapi import binary, text
from iotiam.api.problems import problem_response
from iotiam.api.responses import ReadinessOut
from iotiam.errors import NotFound

router = APIRouter(tags=["public"], route_class=UntrustedJsonRoute)


#: a probe's answer is about this instant: no cache between it and the replica keeps one
NOT_CACHED = {"Cache-Control": "no-store"}


@router.get("/healthz")
def healthz(svc: Wired, response: Response) -> dict[str, str]:
    """Liveness plus a database round trip."""
    with svc.database.reading() as uow:
        uow.counters.current("healthz")
    response.headers.update(NOT_CACHED)
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadinessOut)
def readyz(svc: Wired) -> JSONResponse:
    """Readiness: 200 when every check passes, else 503 naming what is not ready."""
    report = svc.readiness.report()
    checks: dict[str, Any] = {name: {"ready": s.ready, "detail": s.detail, **s.facts}
                              for name, s in report.checks.items()}
    if report.ready:
        return JSONResponse({"status": "ready", "checks": checks}, headers=NOT_CACHED)
    return problem_response(503, "not-ready", "Not ready", "; ".join(report.not_ready()),
                            headers=NOT_CACHED, checks=checks)


@router.get("/crl/{ca_id}.crl", response_class=Response,
            responses=binary("application/pkix-crl", "the CRL, DER"))
def crl(ca_id: str, svc: Wired) -> Response:
    """The current CRL of a CA, DER (RFC 5280 §4.2.1.13 CDP target)."""
    if ca_id not in svc.pki.cas.issuer_ids:
        raise NotFound(f"no CRL for {ca_id!r}")
    current = svc.pki.current_crl(ca_id)
    # caches may keep it until nextUpdate at the latest (RFC 5019 §6 spirit)
    max_age = max(0, int((current.next_update - svc.clock.now()).total_seconds()) // 4)
    return Response(current.der, media_type="application/pkix-crl",
                    headers={"Cache-Control": f"public, max-age={min(max_age, 300)}"})


@router.get("/ca/issuing.json")
def active_issuer(svc: Wired) -> dict[str, Any]:
    """The active issuing CA, and whether agents holding a certificate of another one
    should renew now (``iotiam ca migrate``): what the agent's renew loop asks."""
    if svc.ca_rotation is None:
        raise NotFound("no CA rotation here")
    active = svc.ca_rotation.active_issuer()
    return {"id": active.id, "subject": active.subject, "migrate": active.migrate}


@router.get("/ca/chain.pem", response_class=Response,
            responses=text("application/pem-certificate-chain", "issuing CA then root"))
def chain(svc: Wired) -> Response:
    """Issuing CA followed by the root, PEM."""
    return Response(svc.pki.cas.chain_pem(), media_type="application/pem-certificate-chain")


@router.get("/ca/{ca_id}.crt", response_class=Response,
            responses=binary("application/pkix-cert", "the CA certificate, DER"))
def ca_certificate(ca_id: str, svc: Wired) -> Response:
    """A CA certificate, DER (AIA caIssuers target, RFC 5280 §4.2.2.1)."""
    if ca_id not in svc.pki.cas.issuer_ids:
        raise NotFound(f"no CA {ca_id!r}")
    cert = svc.pki.cas.material(ca_id).certificate
    return Response(cert.public_bytes(serialization.Encoding.DER),
                    media_type="application/pkix-cert")

# OCSP (POST /ocsp, GET /ocsp/{base64}) is answered in front of the framework: see
# api/ocsp_fast_path.py.
