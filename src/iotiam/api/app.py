"""FastAPI applications: the admin API (HTTPS) and the public endpoints (plain HTTP)."""

from __future__ import annotations

from fastapi import FastAPI

from iotiam import __version__
from iotiam.api.limits import BodySizeLimit
from iotiam.api.problems import install_problem_handlers
from iotiam.api.routes import (
    admin,
    certificates,
    credentials,
    est,
    inventory,
    public,
    recovery,
)
from iotiam.bootstrap import Services


def create_api_app(services: Services) -> FastAPI:
    """The admin REST API under ``/v1`` with OpenAPI docs at ``/docs``."""
    app = FastAPI(
        title="iotiam",
        version=__version__,
        description="Identity and access control plane for IoT fleets.",
    )
    app.state.services = services
    install_problem_handlers(app)
    app.include_router(inventory.router)
    app.include_router(certificates.router)
    app.include_router(admin.router)
    app.include_router(public.router)
    app.include_router(est.router)
    app.include_router(recovery.router)
    app.include_router(credentials.router)
    app.add_middleware(BodySizeLimit, max_bytes=services.settings.max_body_bytes)
    return app


def create_public_app(services: Services) -> FastAPI:
    """OCSP, CRLs, CA certificates and ``/healthz``, for relying parties, over plain HTTP."""
    app = FastAPI(title="iotiam public endpoints", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.services = services
    install_problem_handlers(app)
    app.include_router(public.router)
    app.add_middleware(BodySizeLimit, max_bytes=64 * 1024)
    return app
