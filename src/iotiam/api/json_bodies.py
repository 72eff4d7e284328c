"""JSON request bodies decoded by the project's one untrusted-JSON decoder.

FastAPI decodes a body with ``json.loads``: a duplicate key silently keeps the last value
(``{"state":"active","state":"decommissioned"}`` decommissioned a device), ``NaN`` gets
through, and a deeply nested body raises ``RecursionError``. Every route of the API is an
``UntrustedJsonRoute`` instead, whose requests decode their body with
``iotiam.untrusted.load_json``: the same refusals, with the same one-line reasons, as every
other document that comes from outside.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from iotiam.errors import IamError
from iotiam.untrusted import load_json


class UntrustedJsonRequest(Request):
    """A request whose ``json()`` is ``load_json`` (duplicate keys, depth, NaN refused)."""

    async def json(self) -> Any:
        """The body as JSON, decoded once; a malformed body raises ``_BodyRefused``."""
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                # the size is bounded before the body is read (``limits.BodySizeLimit``)
                self._json = load_json(body, what="the request body", max_bytes=len(body))
            except IamError as e:
                raise _BodyRefused(e) from None
        return self._json


class UntrustedJsonRoute(APIRoute):
    """An API route whose JSON body goes through ``UntrustedJsonRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given an ``UntrustedJsonRequest``."""
        handle = super().get_route_handler()

        async def handle_untrusted(request: Request) -> Response:
            try:
                return await handle(UntrustedJsonRequest(request.scope, request.receive))
            except _BodyRefused as e:
                # reported (and audited) as every other invalid body is: a 400 naming it
                raise RequestValidationError([{
                    "type": "json_invalid", "loc": ("body",), "msg": e.error.detail,
                    "input": {}}]) from None

        return handle_untrusted


class _BodyRefused(HTTPException):
    """Carries the decoder's error through FastAPI, which turns any other exception raised
    while it reads a body into a bare 400 "There was an error parsing the body"."""

    def __init__(self, error: IamError) -> None:
        super().__init__(400, error.detail)
        self.error = error
