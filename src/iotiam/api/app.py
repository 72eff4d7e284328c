"""FastAPI applications: the admin API (HTTPS) and the public endpoints (plain HTTP)."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp

from iotiam import __version__
from iotiam.api.docs import install_offline_docs
from iotiam.api.emqx_hook import EmqxHookFastPath
from iotiam.api.head_requests import HeadAsGet
from iotiam.api.http_metrics import RequestMetrics, RouteNote
from iotiam.api.issuance import install_certificate_batches
from iotiam.api.limits import BodySizeLimit
from iotiam.api.oauth_token_path import OAuthTokenFastPath
from iotiam.api.ocsp_fast_path import OcspFastPath
from iotiam.api.openapi import install_openapi
from iotiam.api.path_segments import EncodedSlashRefusal
from iotiam.api.problems import install_problem_handlers
from iotiam.api.query_params import refuse_repeated_query
from iotiam.api.routes import (
    admin,
    attestation,
    cas,
    certificates,
    compliance,
    credentials,
    detection,
    discovery,
    enrollment,
    est,
    firmware,
    gateways,
    inventory,
    metrics,
    oauth,
    oauth_clients,
    policies,
    public,
    recovery,
    revocations,
    risk,
)
from iotiam.bootstrap import Services
from iotiam.web.app import create_console_app


def create_api_app(services: Services) -> ASGIApp:
    """The admin REST API under ``/v1`` with OpenAPI docs at ``/docs``."""
    app = FastAPI(
        title="iotiam",
        version=__version__,
        description="Identity and access control plane for IoT fleets.",
        docs_url=None, redoc_url=None,  # served from the package: install_offline_docs
        dependencies=[Depends(refuse_repeated_query)],
    )
    app.state.services = services
    app.add_middleware(RouteNote)
    install_certificate_batches(app, services)
    install_problem_handlers(app)
    install_offline_docs(app)
    install_openapi(app)
    app.include_router(inventory.router)
    app.include_router(certificates.router)
    app.include_router(admin.router)
    app.include_router(public.router)
    app.include_router(est.router)
    app.include_router(recovery.router)
    app.include_router(credentials.router)
    app.include_router(enrollment.router)
    app.include_router(oauth.router)
    app.include_router(oauth_clients.router)
    app.include_router(policies.router)
    app.include_router(detection.router)
    app.include_router(firmware.router)
    app.include_router(attestation.router)
    app.include_router(gateways.router)
    app.include_router(discovery.router)
    app.include_router(risk.router)
    app.include_router(compliance.router)
    app.include_router(revocations.router)
    app.include_router(cas.router)
    app.mount("/console", create_console_app(services))  # docs/console.md
    # the size limit wraps the OCSP fast path too; the broker hook and the token endpoint
    # bound their own bodies
    limited = BodySizeLimit(OcspFastPath(EncodedSlashRefusal(app), services),
                            services.settings.max_body_bytes,
                            larger={"/v1/discovery/imports": services.settings.max_import_bytes})
    # the token fast path outermost but for the timing (it answers only POST
    # /oauth2/token); HEAD inside it
    return RequestMetrics(
        OAuthTokenFastPath(HeadAsGet(EmqxHookFastPath(limited, services)), services),
        services.metrics, "api")


def create_public_app(services: Services) -> ASGIApp:
    """OCSP, CRLs, CA certificates, ``/healthz``, ``/readyz`` and ``/metrics``, over
    plain HTTP."""
    app = FastAPI(title="iotiam public endpoints", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.services = services
    app.add_middleware(RouteNote)
    install_problem_handlers(app)
    app.include_router(public.router)
    app.include_router(metrics.router)  # here only: docs/observability.md
    return RequestMetrics(HeadAsGet(BodySizeLimit(
        OcspFastPath(EncodedSlashRefusal(app), services), 64 * 1024)),
        services.metrics, "public")
