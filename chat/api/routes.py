"""Parley's HTTP/WebSocket routes on NiceGUI's FastAPI app."""

from __future__ import annotations

from fastapi import Depends, FastAPI, WebSocket

from ..auth import Accounts
from ..auth.http import connection_account
from ..engine import Engine
from ..store import Store
from .auth import authenticator
from .openai_compat import register_openai
from .rest import UNAUTHORIZED, register_rest
from .stream import CLOSE_NOT_AUTHENTICATED, STREAM_PATH, serve_stream


def register_api(app: FastAPI, engine: Engine, store: Store, accounts: Accounts) -> None:
    """Add the API routes to ``app``.

    With users in the database (``accounts.enabled``, team mode) every route needs an API token or a login session
    (see ``auth.py``); without, nothing is asked and every request is ``LOCAL``.

    * ``WS /api/messages/{message_id}/stream?offset=N`` — an answer's text as it is written (see ``stream.py``);
      closed with 4401 when not logged in, 4404 for an unknown message or another user's.
    * ``GET /api/metrics`` — counters for monitoring and benchmarks (JSON, no conversation content; 401 when not
      logged in):
      ``db_writes`` (write transactions committed since start), ``checkpoints`` (partial-text saves),
      ``live_answers`` (answers being generated now).
    * ``/api/conversations…``, ``/api/messages…`` — conversations over REST and answers as SSE (``rest.py``).
    * ``/v1/models``, ``/v1/chat/completions`` — the OpenAI-compatible API (``openai_compat.py``).

    Args:
        app: the FastAPI app (NiceGUI's).
        engine: answers and streams.
        store: read by the JSON views.
        accounts: who each request is.
    """
    register_rest(app, engine, store, accounts)
    register_openai(app, engine, store, accounts)
    current_account = authenticator(accounts)

    @app.websocket(STREAM_PATH)
    async def stream(websocket: WebSocket, message_id: int, offset: int = 0) -> None:
        account = await connection_account(accounts, websocket)
        if account is None:
            await websocket.accept()
            await websocket.close(CLOSE_NOT_AUTHENTICATED, reason="not logged in")
            return
        await serve_stream(websocket, engine.follow(message_id, max(0, offset), account))

    @app.get(
        "/api/metrics",
        dependencies=[Depends(current_account)],
        responses={401: UNAUTHORIZED},
        tags=["monitoring"],
    )
    def metrics() -> dict[str, int]:
        """Counters for monitoring and benchmarks (no conversation content)."""
        return {"db_writes": store.writes, "checkpoints": engine.checkpoints, "live_answers": len(engine.generations)}
