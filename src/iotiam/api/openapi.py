"""The OpenAPI document describes what the API really answers.

FastAPI documents a 422 with its own error shape for every operation with inputs, but
the API answers invalid input with 400 ``application/problem+json`` (``problems.py``),
and every other refusal with a problem too. ``install_openapi`` rewrites the generated
document once: 400 and ``default`` are RFC 9457 problems, and the endpoints answered in
front of the framework (OCSP, the EMQX hook) are described where clients look for them.
Routes that answer something other than JSON declare it with ``binary``/``text``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from iotiam.api.emqx_hook import HOOK_PATH
from iotiam.api.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem: what went wrong, in one line.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:iotiam:problem:<kind>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {"type": "array", "description": "every invalid field, for a 400",
                   "items": {"type": "object", "properties": {
                       "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}


def binary(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that answers 200 with bytes of ``media_type``."""
    return {200: {"description": description, "content": {
        media_type: {"schema": {"type": "string", "format": "binary"}}}}}


def text(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that answers 200 with text of ``media_type``."""
    return {200: {"description": description, "content": {
        media_type: {"schema": {"type": "string"}}}}}


#: RFC 6749 §5.2: how the OAuth endpoints refuse (JSON, never problem+json)
OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"},
                   "error_uri": {"type": "string"}},
}
#: the form body of the OAuth endpoints (RFC 6749 §3.2)
OAUTH_FORM: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "additionalProperties": {"type": "string"}}}}}}


def oauth(success: dict[str, Any] | None,
          media_type: str = "application/json") -> dict[int | str, dict[str, Any]]:
    """``responses=`` of an OAuth endpoint: ``success`` (None: an empty 200) or an
    RFC 6749 §5.2 error."""
    error = {"description": "RFC 6749 §5.2 error", "content": {
        "application/json": {"schema": OAUTH_ERROR_SCHEMA}}}
    ok: dict[str, Any] = {"description": "Success"}
    if success is not None:
        ok["content"] = {media_type: {"schema": success}}
    return {200: ok, 400: error, 401: error, "default": error}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` the refined document (built once, on first use)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            _refine(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _refine(spec: dict[str, Any]) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    paths = spec.setdefault("paths", {})
    for operations in paths.values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("400", {"description": "Invalid input",
                                             "content": _PROBLEM_CONTENT})
            responses.setdefault("default", {"description": "Refused or failed",
                                             "content": _PROBLEM_CONTENT})
    # after the loop: these answer every refusal in their own protocol's terms
    paths.update(_fast_paths())


def _fast_paths() -> dict[str, Any]:
    """Endpoints answered by ASGI middleware in front of FastAPI (``ocsp_fast_path``,
    ``emqx_hook``): invisible to FastAPI, described here."""
    ocsp_answer = {"200": {"description": "An OCSP response (RFC 6960 §4.2.1); errors are "
                                          "OCSP responses too (malformedRequest, ...)",
                           "content": {"application/ocsp-response": {
                               "schema": {"type": "string", "format": "binary"}}}}}
    hook_answer = {"200": {
        "description": "Always 200 so that EMQX never falls back to its no_match setting; "
                       "the reason of a deny is in the x-iotiam-reason header",
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["result"],
            "properties": {"result": {"type": "string", "enum": ["allow", "deny"]}}}}}}}
    hook_fields = {"type": "object", "properties": {
        name: {"type": "string"} for name in
        ("clientid", "username", "peerhost", "topic", "action", "qos", "retain")}}
    return {
        "/ocsp": {"post": {
            "tags": ["public"], "summary": "OCSP (RFC 6960 Appendix A.1, POST)",
            "operationId": "ocsp_post",
            "requestBody": {"required": True, "content": {"application/ocsp-request": {
                "schema": {"type": "string", "format": "binary"}}}},
            "responses": {**ocsp_answer, "413": {
                "description": "Body over the API's limit", "content": _PROBLEM_CONTENT}}}},
        "/ocsp/{request}": {"get": {
            "tags": ["public"], "summary": "OCSP (RFC 6960 Appendix A.1, GET)",
            "operationId": "ocsp_get",
            "parameters": [{"name": "request", "in": "path", "required": True,
                            "description": "the DER OCSPRequest, base64 then URL-encoded",
                            "schema": {"type": "string"}}],
            "responses": ocsp_answer}},
        HOOK_PATH: {"post": {
            "tags": ["policies"], "summary": "EMQX 5 HTTP authorizer",
            "operationId": "emqx_authz",
            "description": "EMQX's request template as JSON or a form (or the query of a "
                           "GET); authenticated with an admin token (viewer or higher) as "
                           "Bearer.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": hook_fields},
                "application/x-www-form-urlencoded": {"schema": hook_fields}}},
            "responses": hook_answer}},
    }
