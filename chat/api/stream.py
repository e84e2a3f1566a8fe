"""The per-answer stream: one WebSocket per followed answer whose text frames carry only the answer's text.

Protocol (``GET /api/messages/{id}/stream?after=N``, upgraded to a WebSocket):

* **text frame** — the next piece of the answer, nothing else: the UTF-8 bytes on the wire are the answer's own
  bytes, so streaming an answer of *n* bytes costs about *n* bytes (plus 2–4 bytes of WebSocket header per frame,
  RFC 6455 §5.2). Pieces that queue up while the socket is busy are joined into one frame. Each piece is sent as
  soon as it is there: the page paces its own updates (``streaming_message.js``). Holding pieces here for a display
  frame (16 ms) was measured (``bench/streaming.py``, same run): lag p50 2.5 → 14 ms at 100 tokens/s, and no change
  in the server's CPU, which the openai SDK's per-chunk parsing dominates (``bench/profile.py``).
* **binary frame** — a JSON object, one of:

  * ``{"phase": P}``: the answer moved to phase ``P`` (``chat.engine.Phase``: ``"loading"``, ``"queued"``,
    ``"retrying"``, ``"thinking"`` before the first text; ``"awaiting_approval"``, ``"running_tools"`` around tool
    calls; ``"streaming"``);
  * ``{"event": E}``: a content event that is not text (reasoning, a tool call starting, its arguments, its approval,
    running, its result, a notice), ``E`` being ``chat.engine.events.to_json`` of it. ``E["seq"]`` is the answer's
    position once the client has it: the client sets its position to it (text frames add their code points);
  * last, ``{"end": {"status": ..., "length": L, "seq": S}}`` once the answer is stored (``L``: its text's length in
    characters; ``S``: the answer's final position, ``L`` for an answer of text only). The server then closes the
    socket with code 1000.
* ``after`` — the answer's sequence number the client has (``chat/engine/events.py``; for text, how many characters,
  Unicode code points, it has; ``offset`` is its older name): the stream starts right after it, so a client that lost
  its socket reconnects with what it counted and gets every character and every event exactly once, tool steps
  included. A stored (finished) answer is served the same way: its content after ``after``, then ``end``. Status events
  other than a phase or the end (``usage``) are not sent: the page reads them from the stored message.
* An unknown message, or another user's, closes with code 4404. With accounts (team mode) the socket needs the
  browser's login session cookie (or an ``Authorization: Bearer`` API token); without one it is accepted and closed
  at once with code 4401 (before accepting, a browser would only see the handshake fail with an HTTP 403).

**The next answer's socket** (``GET /api/answers/next?spare=T``, upgraded to a WebSocket) is opened by a page *before*
it sends, so that the first frames of its next answer need no new connection, nor a round of NiceGUI's updates to
create the element that would open one (time to first token, ``bench/streaming.py``). ``T`` is a random token the
page's server side gave its spare ``StreamingMessage`` (``NextAnswers.new_token``). The socket waits; when the page's
own Send has stored its exchange, the page ``bind``s the token to the new answer and the socket sends one binary frame
``{"bound": {"stream": <STREAM_PATH of the answer>, "question": <the user's text>}}``, then the answer's stream from
position 0 exactly as above (the client reconnects to that stream path, from its position, if it loses the socket).
An unbound socket carries nothing; a second socket with the same token replaces the first (closed with 1000). The
account rules are the answer stream's: the socket's login must own the answer (else 4404).

Compared with NiceGUI's own messages (a JSON envelope with the element id and method name, tens of bytes per
call), this keeps the bytes sent per token near the token's own size without batching, which would add lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator

from fastapi import APIRouter
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth.http import connection_account
from ..engine import LOCAL, Event, Finished, PhaseChanged, TextDelta
from ..engine.events import ContentEvent, is_content, to_json
from ..store import NotFound
from .dependencies import api_services

log = logging.getLogger(__name__)

#: URL path of an answer's stream; ``{message_id}`` is the assistant message's id.
STREAM_PATH = "/api/messages/{message_id}/stream"
#: URL path of a page's socket for its next answer (query ``spare``: the page's token).
NEXT_ANSWER_PATH = "/api/answers/next"
#: Close code for an unknown message, or another user's (4000–4999 are free for applications, RFC 6455 §7.4.2).
CLOSE_NOT_FOUND = 4404
#: Close code for a socket without a valid login session or API token (team mode), after accepting it.
CLOSE_NOT_AUTHENTICATED = 4401


def stream_path(message_id: int) -> str:
    """The URL path of the stream of the answer ``message_id`` (without the ``after`` query)."""
    return STREAM_PATH.format(message_id=message_id)


def control_frame(event: PhaseChanged | Finished) -> bytes:
    """The binary frame for a phase change or the end of the answer (see the module docstring)."""
    if isinstance(event, PhaseChanged):
        return json.dumps({"phase": event.phase.value}).encode()
    message = event.message
    status = getattr(message.status, "value", message.status)
    return json.dumps({"end": {"status": status, "length": len(message.content), "seq": event.seq}}).encode()


def event_frame(event: ContentEvent) -> bytes:
    """The binary frame of a content event that is not text: ``{"event": to_json(event)}`` (UTF-8 JSON; tool
    arguments and results are sent as the untrusted strings they are, for the page to show as text)."""
    return json.dumps({"event": to_json(event)}, ensure_ascii=False).encode()


def next_answer_path(token: str) -> str:
    """The URL path and query of the next-answer socket of the page holding ``token``."""
    return f"{NEXT_ANSWER_PATH}?spare={token}"


def bound_frame(message_id: int, question: str) -> bytes:
    """The binary frame that tells a next-answer socket which answer it now carries (see the module docstring)."""
    return json.dumps({"bound": {"stream": stream_path(message_id), "question": question}}, ensure_ascii=False).encode()


class NextAnswers:
    """The next-answer sockets of this process's pages, waiting by token (see the module docstring).

    One instance per process (``next_answers``): the page that binds a token and the socket waiting on it are served
    by the same process (with several replicas, the proxy's stickiness sends a page's sockets to its replica; where
    it does not, ``bind`` finds nothing and the answer's element opens its own stream, as without this).
    """

    #: What a token looks like (``secrets.token_urlsafe(18)``); other values are refused.
    TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[tuple[int, str]]] = {}

    @staticmethod
    def new_token() -> str:
        """A fresh, unguessable token for one page's next answer (24 URL-safe characters)."""
        return secrets.token_urlsafe(18)

    def bind(self, token: str, message_id: int, question: str) -> bool:
        """Make the socket waiting on ``token`` carry the answer ``message_id`` (asked by ``question``) from now on.

        Returns:
            True when a socket was waiting (it sends the ``bound`` frame, then the answer); False when none is (the
            page's socket has not opened yet, or is gone): nothing happens then.
        """
        future = self._waiting.pop(token, None)
        if future is None or future.done():
            return False
        future.set_result((message_id, question))
        return True

    def waiting(self) -> int:
        """How many sockets wait for an answer now."""
        return len(self._waiting)

    def _register(self, token: str) -> asyncio.Future[tuple[int, str]]:
        earlier = self._waiting.pop(token, None)
        if earlier is not None and not earlier.done():
            earlier.cancel()  # the same page reconnected: the older socket is closed
        future: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        return future

    def _forget(self, token: str, future: asyncio.Future[tuple[int, str]]) -> None:
        if self._waiting.get(token) is future:
            del self._waiting[token]


#: This process's next-answer sockets.
next_answers = NextAnswers()


async def serve_stream(websocket: WebSocket, events: AsyncIterator[Event]) -> None:
    """Accept ``websocket`` and send ``events`` over it in the protocol above until ``Finished`` or a disconnect.

    Args:
        websocket: a WebSocket not yet accepted.
        events: the answer's events after the client's sequence number (``Engine.follow``); closed when this returns.
            A ``NotFound`` it raises closes the socket with code 4404.
    """
    await websocket.accept()
    await _serve(websocket, events, asyncio.create_task(_wait_for_disconnect(websocket)))


async def _serve(websocket: WebSocket, events: AsyncIterator[Event], listener: asyncio.Task[None]) -> None:
    """Send ``events`` over the accepted ``websocket`` until the end or until ``listener`` sees the client leave."""
    sender = asyncio.create_task(_send(websocket, events))
    try:
        await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, listener):
            task.cancel()
        await asyncio.gather(sender, listener, return_exceptions=True)
        await events.aclose()  # type: ignore[attr-defined]


async def _send(websocket: WebSocket, events: AsyncIterator[Event]) -> None:
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                await websocket.send_text(event.text)
            elif is_content(event):
                await websocket.send_bytes(event_frame(event))  # type: ignore[arg-type]
            elif isinstance(event, PhaseChanged | Finished):
                await websocket.send_bytes(control_frame(event))
                if isinstance(event, Finished):
                    break
        await websocket.close(1000)
    except NotFound:  # no such message
        await websocket.close(CLOSE_NOT_FOUND, reason="no such message")
    except (WebSocketDisconnect, RuntimeError, OSError):  # the tab went away while we were sending
        log.debug("stream client left")


async def _wait_for_disconnect(websocket: WebSocket) -> None:
    """Return when the client closes the socket (clients send nothing else), so a silent answer frees it too."""
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


router = APIRouter()


@router.websocket(STREAM_PATH)
async def answer_stream(websocket: WebSocket, message_id: int, after: int | None = None, offset: int = 0) -> None:
    """An answer's own WebSocket (see the module docstring): closed with 4401 when not logged in (team mode), 4404
    for an unknown message or another user's."""
    services = api_services(websocket)
    account = LOCAL if services.accounts is None else await connection_account(services.accounts, websocket)
    if account is None:
        await websocket.accept()
        await websocket.close(CLOSE_NOT_AUTHENTICATED, reason="not logged in")
        return
    position = max(0, after if after is not None else offset)
    await serve_stream(websocket, services.engine.follow(message_id, position, account))


@router.websocket(NEXT_ANSWER_PATH)
async def next_answer_stream(websocket: WebSocket, spare: str = "") -> None:
    """A page's socket for its next answer (see the module docstring): waits until the page binds its token, then
    carries that answer. Closed with 4401 when not logged in (team mode), 4404 for a malformed token, 1000 when the
    same token opens another socket."""
    services = api_services(websocket)
    account = LOCAL if services.accounts is None else await connection_account(services.accounts, websocket)
    await websocket.accept()
    if account is None:
        await websocket.close(CLOSE_NOT_AUTHENTICATED, reason="not logged in")
        return
    if not NextAnswers.TOKEN.fullmatch(spare):
        await websocket.close(CLOSE_NOT_FOUND, reason="no such page")
        return
    listener = asyncio.create_task(_wait_for_disconnect(websocket))
    future = next_answers._register(spare)
    try:
        await asyncio.wait({future, listener}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        listener.cancel()
        raise
    finally:
        next_answers._forget(spare, future)
    if not future.done() or future.cancelled():  # the page left, or opened another socket with this token
        left = listener.done()
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        if not left:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.close(1000)
        return
    message_id, question = future.result()
    try:
        await websocket.send_bytes(bound_frame(message_id, question))
    except (WebSocketDisconnect, RuntimeError, OSError):
        listener.cancel()
        return
    await _serve(websocket, services.engine.follow(message_id, 0, account), listener)
