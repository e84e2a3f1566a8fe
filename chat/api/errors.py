"""How ``/api`` answers a ``Refusal`` (``chat/refusals.py``): one route class for every route of its router.

* a refusal about one input (``Refusal.field``) is FastAPI's own 422 shape, ``{"detail": [{"loc": ["body",
  "content"], "msg": "…", "type": "value_error"}]}``, located in the path when the field is a path parameter;
* any other is ``{"detail": "…"}`` with the refusal's status and headers (``Retry-After`` over a limit,
  ``WWW-Authenticate`` when not logged in).

``/v1`` answers refusals in OpenAI's shape instead (``openai_compat.OpenAIRoute``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from ..refusals import Refusal


class ErrorOut(BaseModel):
    """An error: what went wrong, in a sentence."""

    detail: str


def refusal_response(refusal: Refusal, request: Request) -> JSONResponse:
    """``refusal`` as ``/api`` answers it (see the module docstring)."""
    if refusal.field is not None:
        where = "path" if refusal.field in request.path_params else "body"
        detail: Any = [{"loc": [where, refusal.field], "msg": str(refusal), "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422, headers=refusal.headers)
    return JSONResponse({"detail": str(refusal)}, status_code=refusal.status, headers=refusal.headers)


class ApiRoute(APIRoute):
    """A route whose ``Refusal``, raised by the route or one of its dependencies, is answered as ``refusal_response``
    says."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Refusal as refusal:
                return refusal_response(refusal, request)

        return route
