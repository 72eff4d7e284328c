"""Query parameters sent once: one a route reads as a single value, repeated, is refused
(an app-wide dependency of the REST API, ``api/app.py``).

Starlette keeps the last of ``?source=a&source=b`` and the route never learns there was
another, so a filter would silently select other than what was asked. A route that takes
several values declares the parameter as a list (``option: list[str]``); any other
parameter sent twice is a 400 naming it (G10).
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from iotiam.errors import InvalidInput

_MANY = (list, tuple, set, frozenset)


async def refuse_repeated_query(request: Request) -> None:
    """A router dependency: 400 when a single-valued query parameter is given twice.
    Async (it reads only the request): FastAPI runs a sync dependency on a pool
    thread, one hop for every request of the API, EST enrollments and
    ``POST /v1/certificates`` included (``benchmarks/README.md``)."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen and name not in _list_parameters(request):
            raise InvalidInput(f"query parameter {name[:40]!r} is given more than once; "
                               "it takes one value")
        seen.add(name)


def _list_parameters(request: Request) -> set[str]:
    """The names (aliases) of the route's query parameters that take several values
    (read only when a name repeats: most requests never get here)."""
    route = request.scope.get("route")
    return _lists_of(route.dependant) if isinstance(route, APIRoute) else set()


def _lists_of(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params
             if _takes_many(field.field_info.annotation)}
    for sub in dependant.dependencies:
        names |= _lists_of(sub)
    return names


def _takes_many(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    return annotation in _MANY or origin in _MANY
