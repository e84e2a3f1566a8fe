"""The per-answer stream: one WebSocket per followed answer whose text frames carry only the answer's text.

Protocol (``GET /api/messages/{id}/stream?offset=N``, upgraded to a WebSocket):

* **text frame** — the next piece of the answer, nothing else: the UTF-8 bytes on the wire are the answer's own
  bytes, so streaming an answer of *n* bytes costs about *n* bytes (plus 2–4 bytes of WebSocket header per frame,
  RFC 6455 §5.2). Pieces that queue up while the socket is busy are joined into one frame.
* **binary frame** — a JSON control message, rare: ``{"phase": "loading" | "queued" | "thinking"}`` before the
  first text, and last ``{"end": {"status": ..., "length": L}}`` once the answer is stored (``L``: its length in
  characters). The server then closes the socket with code 1000.
* ``offset`` — how many characters (Unicode code points) the client already has: the stream starts right after
  them, so a client that lost its socket reconnects with what it counted and gets every character exactly once.
  A stored (finished) answer is served the same way: its text after ``offset``, then ``end``.
* An unknown message, or another user's, closes with code 4404. With accounts (team mode) the socket needs the
  browser's login session cookie (or an ``Authorization: Bearer`` API token); without one it is accepted and closed
  at once with code 4401 (before accepting, a browser would only see the handshake fail with an HTTP 403).

Compared with NiceGUI's own messages (a JSON envelope with the element id and method name, tens of bytes per
call), this keeps the bytes sent per token near the token's own size without batching, which would add lag.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..engine import Delta, Event, Finished, PhaseChanged

log = logging.getLogger(__name__)

#: URL path of an answer's stream; ``{message_id}`` is the assistant message's id.
STREAM_PATH = "/api/messages/{message_id}/stream"
#: Close code for an unknown message, or another user's (4000–4999 are free for applications, RFC 6455 §7.4.2).
CLOSE_NOT_FOUND = 4404
#: Close code for a socket without a valid login session or API token (team mode), after accepting it.
CLOSE_NOT_AUTHENTICATED = 4401


def stream_path(message_id: int) -> str:
    """The URL path of the stream of the answer ``message_id`` (without the ``offset`` query)."""
    return STREAM_PATH.format(message_id=message_id)


def control_frame(event: PhaseChanged | Finished) -> bytes:
    """The binary frame for a phase change or the end of the answer (see the module docstring)."""
    if isinstance(event, PhaseChanged):
        return json.dumps({"phase": event.phase.value}).encode()
    message = event.message
    status = getattr(message.status, "value", message.status)
    return json.dumps({"end": {"status": status, "length": len(message.content)}}).encode()


async def serve_stream(websocket: WebSocket, events: AsyncIterator[Event]) -> None:
    """Accept ``websocket`` and send ``events`` over it in the protocol above until ``Finished`` or a disconnect.

    Args:
        websocket: a WebSocket not yet accepted.
        events: the answer's events from the client's offset on (``Engine.follow``); closed when this returns.
            A ``LookupError`` it raises (``NotFound``) closes the socket with code 4404.
    """
    await websocket.accept()
    sender = asyncio.create_task(_send(websocket, events))
    listener = asyncio.create_task(_wait_for_disconnect(websocket))
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
            if isinstance(event, Delta):
                await websocket.send_text(event.text)
            else:
                await websocket.send_bytes(control_frame(event))
                if isinstance(event, Finished):
                    break
        await websocket.close(1000)
    except LookupError:  # NotFound: no such message
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
