"""EST, RFC 7030, under ``/.well-known/est/`` (optionally ``/.well-known/est/<label>/``).

The label selects a certificate profile (``device``, ``gateway``, ...). Answers are
base64 certs-only PKCS#7 wrapped at 64 characters.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.x509 import load_pem_x509_certificate
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from iotiam.api.auth import Wired
from iotiam.api.issuance import Batches, issue_one
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.openapi import binary
from iotiam.api.problems import problem_response, status_for
from iotiam.api.tls import client_address, client_certificate
from iotiam.enrollment.est import (
    CSRATTRS_MIME,
    PKCS7_MIME,
    certs_only,
    decode_csr_body,
    wants_one_line,
)
from iotiam.enrollment.models import Held, RequestStatus
from iotiam.errors import IamError, Unauthenticated
from iotiam.pki.models import CertificateRecord
from iotiam.pki.profiles import get_profile

router = APIRouter(prefix="/.well-known/est", tags=["est"], route_class=UntrustedJsonRoute)

_CERTS_ONLY = f"{PKCS7_MIME}; smime-type=certs-only"
_BASIC_CHALLENGE = 'Basic realm="iotiam EST", charset="UTF-8"'
_FULL_QUEUE_RETRY_SECONDS = 300
_CERTS_DOC = binary(PKCS7_MIME, "base64 PKCS#7 certs-only (RFC 7030 §4.1.3)")
#: RFC 7030 §4.2.1: the body is a base64 PKCS#10 (DER accepted too)
_CSR_BODY = {"requestBody": {"required": True, "content": {
    "application/pkcs10": {"schema": {"type": "string"}}}}}
_ENROLL_DOC = {**binary(PKCS7_MIME, "base64 PKCS#7 certs-only with the new certificate "
                                    "(RFC 7030 §4.2.3)"),
               202: {"description": "held for approval: send the same CSR again after "
                                    "Retry-After seconds (RFC 7030 §4.2.3)",
                     "content": {"application/json": {"schema": {
                         "type": "object", "required": ["status", "request", "detail"],
                         "properties": {"status": {"type": "string", "enum": ["pending"]},
                                        "request": {"type": "string"},
                                        "detail": {"type": "string"}}}}}}}


def _certs_response(body: bytes) -> Response:
    return Response(body, media_type=_CERTS_ONLY,
                    headers={"Content-Transfer-Encoding": "base64"})


def _problem(error: IamError) -> Response:
    status = status_for(error)
    response = problem_response(status, error.kind, error.title, error.detail)
    if status == 401:
        # RFC 7030 §3.2.3: the client falls back to HTTP Basic when challenged
        response.headers["WWW-Authenticate"] = _BASIC_CHALLENGE
    elif status == 429:
        response.headers["Retry-After"] = str(_FULL_QUEUE_RETRY_SECONDS)
    return response


def _held(held: Held) -> Response:
    """RFC 7030 §4.2.3: accepted but not processed; retry later with the same CSR."""
    waiting_for = ("its certificate to be signed" if held.request.status is RequestStatus.APPROVED
                   else "approval")
    body = {"status": "pending", "request": held.request.id,
            "detail": f"the enrollment request is waiting for {waiting_for}; send the same "
                      f"CSR again after {held.retry_after_seconds} seconds"}
    return Response(json.dumps(body), status_code=202, media_type="application/json",
                    headers={"Retry-After": str(held.retry_after_seconds)})


def _issued(request: Request, record: CertificateRecord) -> Response:
    assert record.pem is not None
    cert = load_pem_x509_certificate(record.pem.encode())
    return _certs_response(certs_only([cert], one_line=wants_one_line(request.headers)))


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(
            ":")
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise Unauthenticated("malformed HTTP Basic credentials") from e
    if not sep:
        raise Unauthenticated("malformed HTTP Basic credentials")
    return user, password


def _cacerts(request: Request, svc: Wired, label: str | None) -> Response:
    if label:
        get_profile(label)
    cas = svc.pki.cas
    # RFC 7030 §4.1.3: every CA certificate a client needs; after a rotation the
    # issuing CA before the active one too, until it is revoked
    return _certs_response(certs_only([*cas.trusted_certificates(), cas.root.certificate],
                                      one_line=wants_one_line(request.headers)))


async def _simpleenroll(request: Request, svc: Wired, batches: Batches, label: str | None
                        ) -> Response:
    try:
        csr_der = decode_csr_body(await request.body(), request.headers.get("content-type"))
        credentials = _basic_credentials(request)
        if credentials is not None:
            device_id, token = credentials
            # the claim is checked in the batch's reservation (no pool thread, no read
            # of its own here), with the requests that came meanwhile
            actor, wanted = svc.enrollment.claim_issuance(device_id, token, csr_der, label)
            return _issued(request, await issue_one(batches, actor, wanted))
        # no claim: a manufacturer IDevID over mTLS, or an unknown device to hold
        trusted = svc.settings.trusted_proxies
        outcome = await run_in_threadpool(
            svc.first_contact.enroll, client_certificate(request, trusted), csr_der, label,
            client_address(request, trusted))
    except IamError as e:
        return _problem(e)
    if isinstance(outcome, Held):
        return _held(outcome)
    return _issued(request, outcome)


async def _simplereenroll(request: Request, svc: Wired, batches: Batches,
                          label: str | None) -> Response:
    try:
        csr_der = decode_csr_body(await request.body(), request.headers.get("content-type"))
        trusted = svc.settings.trusted_proxies
        cert = client_certificate(request, trusted)
        if cert is not None and svc.pki.issuer_named(cert.issuer) is None:
            # strongSwan's `pki --est --cert --key` can only send a client certificate to
            # simplereenroll: one from another issuer is an IDevID's first contact
            outcome = await run_in_threadpool(svc.first_contact.enroll, cert, csr_der, label,
                                              client_address(request, trusted))
            return _held(outcome) if isinstance(outcome, Held) else _issued(request, outcome)
        actor, wanted = await run_in_threadpool(
            svc.enrollment.reenroll_issuance, cert, csr_der, label)
        record = await issue_one(batches, actor, wanted)
    except IamError as e:
        return _problem(e)
    return _issued(request, record)


def _csrattrs(label: str | None) -> Response:
    if label:
        get_profile(label)
    # RFC 7030 §4.5.2: no attributes required beyond what the profile fills in
    return Response(status_code=204, media_type=CSRATTRS_MIME)


# cacerts and csrattrs read nothing but memory: answered on the event loop, with no
# pool thread per device (every agent's enrollment starts with cacerts)
@router.get("/cacerts", responses=_CERTS_DOC, response_class=Response)
async def cacerts(request: Request, svc: Wired) -> Response:
    """RFC 7030 §4.1: the CA certificates."""
    return _cacerts(request, svc, None)


@router.get("/{label}/cacerts", responses=_CERTS_DOC, response_class=Response)
async def cacerts_labelled(label: str, request: Request, svc: Wired) -> Response:
    """RFC 7030 §4.1 with a label."""
    return _cacerts(request, svc, label)


@router.post("/simpleenroll", responses=_ENROLL_DOC, response_class=Response,
             openapi_extra=_CSR_BODY)
async def simpleenroll(request: Request, svc: Wired, batches: Batches) -> Response:
    """RFC 7030 §4.2.1: first enrollment with a claim token or a manufacturer IDevID."""
    return await _simpleenroll(request, svc, batches, None)


@router.post("/{label}/simpleenroll",
             responses=_ENROLL_DOC, response_class=Response,
             openapi_extra=_CSR_BODY)
async def simpleenroll_labelled(label: str, request: Request, svc: Wired, batches: Batches
                                ) -> Response:
    """RFC 7030 §4.2.1 with a label selecting the profile."""
    return await _simpleenroll(request, svc, batches, label)


@router.post("/simplereenroll", responses=_ENROLL_DOC, response_class=Response,
             openapi_extra=_CSR_BODY)
async def simplereenroll(request: Request, svc: Wired, batches: Batches) -> Response:
    """RFC 7030 §4.2.2: renewal authenticated by the current certificate."""
    return await _simplereenroll(request, svc, batches, None)


@router.post("/{label}/simplereenroll",
             responses=_ENROLL_DOC, response_class=Response,
             openapi_extra=_CSR_BODY)
async def simplereenroll_labelled(label: str, request: Request, svc: Wired,
                                  batches: Batches) -> Response:
    """RFC 7030 §4.2.2 with a label."""
    return await _simplereenroll(request, svc, batches, label)


@router.get("/csrattrs", status_code=204, response_class=Response)
async def csrattrs() -> Response:
    """RFC 7030 §4.5: no attributes are required."""
    return _csrattrs(None)


@router.get("/{label}/csrattrs", status_code=204, response_class=Response)
async def csrattrs_labelled(label: str) -> Response:
    """RFC 7030 §4.5 with a label."""
    return _csrattrs(label)

