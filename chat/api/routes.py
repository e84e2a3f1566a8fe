"""Parley's HTTP/WebSocket routes on NiceGUI's FastAPI app: the routers of ``rest.py``, ``openai_compat.py`` and
``stream.py``, and ``GET /api/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from ..auth import Accounts
from ..engine import Engine
from ..store import Store
from . import attachments, openai_compat, prompts, rest, search, share, stream, transfer
from .dependencies import ApiServices, EngineDep, StoreDep, current_account, install
from .errors import ApiRoute

metrics_router = APIRouter(
    route_class=ApiRoute, dependencies=[Depends(current_account)], responses={401: rest.UNAUTHORIZED}
)


@metrics_router.get("/api/metrics", tags=["monitoring"])
def metrics(engine: EngineDep, store: StoreDep) -> dict[str, int]:
    """Counters for monitoring and benchmarks (no conversation content): ``db_writes`` (write transactions committed
    since start), ``checkpoints`` (partial-text saves), ``live_answers`` (answers being generated now),
    ``waiting_next_answers`` (pages' next-answer sockets open and waiting, ``stream.NextAnswers``)."""
    return {
        "db_writes": store.writes,
        "checkpoints": engine.checkpoints,
        "live_answers": len(engine.generations),
        "waiting_next_answers": stream.next_answers.waiting(),
    }


async def healthz() -> dict[str, str]:
    """``GET /healthz``: ``{"status": "ok"}`` while the process serves (a proxy's health check; no login needed, nothing
    about anyone's data)."""
    return {"status": "ok"}


def register_api(app: FastAPI, engine: Engine, store: Store, accounts: Accounts) -> None:
    """Serve the API on ``app``, answered by these services.

    With users in the database (``accounts.enabled``, team mode) every route needs an API token or a login session
    (``dependencies.current_account``); without, nothing is asked and every request is ``LOCAL``.

    * ``WS /api/messages/{message_id}/stream?after=N`` — an answer as it is written (``stream.py``); closed with 4401
      when not logged in, 4404 for an unknown message or another user's.
    * ``WS /api/answers/next?spare=T`` — a page's socket for its next answer, opened before it sends (``stream.py``).
    * ``GET /api/metrics`` — counters for monitoring and benchmarks (JSON, no conversation content; 401 when not
      logged in).
    * ``/api/conversations…``, ``/api/messages…`` — conversations over REST and answers as SSE (``rest.py``).
    * ``/api/search`` (``search.py``), export and import (``transfer.py``), share links (``share.py``).
    * ``/v1/models``, ``/v1/chat/completions`` — the OpenAI-compatible API (``openai_compat.py``).

    Args:
        app: the FastAPI app (NiceGUI's).
        engine: answers and streams.
        store: read by the JSON views.
        accounts: who each request is.
    """
    install(app, ApiServices(engine, store, accounts))
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    include_routers(app, rest.router, attachments.router, search.router, transfer.router, share.router, prompts.router,
                    openai_compat.router, stream.router, metrics_router)  # fmt: skip


def include_routers(app: FastAPI, *routers: APIRouter) -> None:
    """Include ``routers`` in ``app`` without growing its lifespan: FastAPI wraps the app's lifespan once more on
    every ``include_router`` (to run the router's own, which ours do not have), and NiceGUI's test simulation runs
    Parley's setup again on the same app for every test, so the wrapping would nest until Python's recursion limit."""
    lifespan = app.router.lifespan_context
    for router in routers:
        app.include_router(router)
    app.router.lifespan_context = lifespan
