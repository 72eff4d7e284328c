"""``/docs`` (Swagger UI) and ``/redoc`` served from the package, so they work offline.

FastAPI's defaults load both from a CDN (and ReDoc's fonts from Google): on the isolated
networks where fleets are managed the pages stayed blank. The assets are vendored under
``api/static/`` (see its README for versions and licences) and served from this app.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")
#: where the vendored assets are served
ASSETS_URL = "/static/docs"


def install_offline_docs(app: FastAPI) -> None:
    """Serve the docs pages and their assets; ``app`` must be built with
    ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS_URL, StaticFiles(directory=STATIC_DIR), name="docs-assets")
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"
    favicon = f"{ASSETS_URL}/swagger-ui/favicon-32x32.png"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=title,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=favicon,
            # the validator badge would send the whole document to swagger.io
            swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=title,
            redoc_js_url=f"{ASSETS_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=favicon, with_google_fonts=False)
