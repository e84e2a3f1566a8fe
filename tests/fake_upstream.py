"""A real OpenAI-compatible HTTP server for tests: :class:`FakeUpstream`.

The fake listens on ``127.0.0.1`` and is reached over TCP by the unmodified ``openai`` SDK (nothing is monkeypatched).
It runs Starlette on uvicorn in a daemon thread with its *own* asyncio event loop, so it serves sync tests and async
tests alike: the app under test keeps the pytest event loop to itself.

What the next requests do is described by :class:`Script` (``fake.script``, mutable from the test; or queued, one per
request, in ``fake.scripts``); what happened is
recorded in ``fake.requests`` (request bodies), ``fake.streams`` (one :class:`StreamRecord` per answered request, with
the wall-clock time it arrived and the time of each content token written) and ``fake.log`` (wall-clock time of every
content token written, across requests).

Control endpoints (for a fake running in another process) live under ``/_fake/``:

* ``PUT /_fake/script`` -- body: a JSON object of :class:`Script` fields; the next requests use ``Script(**body)``
  (fields left out take their defaults). Answers ``{"ok": true}``, or 400 for an unknown field or a non-object.
* ``PUT /_fake/scripts`` -- body: a JSON list of such objects; queued (replacing the queue), one per request.
* ``GET /_fake/streams?since=K`` -- the stream records from index ``K`` (default 0) as JSON, see
  :meth:`StreamRecord.to_json`.
* ``POST /_fake/reset`` -- like :meth:`FakeUpstream.reset`.

Run in its own process (so it does not share a GIL with what is measured): ``python -m tests.fake_upstream --port P``
(``--port 0`` picks a free port); it prints ``listening on http://127.0.0.1:PORT/v1`` on standard output once it
accepts connections, and stops on SIGTERM / SIGINT. :class:`FakeUpstreamProcess` does all of that for you::

    with FakeUpstreamProcess() as fake:
        fake.set_script(Script(tokens=100, rate=50.0))
        ...  # point the app at fake.base_url
        record = fake.streams()[0]  # dict: received_at, written, tokens_sent, ...

Example::

    with FakeUpstream() as fake:
        fake.script = Script(tokens=5, rate=50.0)
        client = openai.OpenAI(base_url=fake.base_url, api_key="k")
        ...

The ``*_deltas`` helpers that build ``Script.deltas`` (tool calls, content and reasoning as each upstream streams
them) live in ``tests/fake_deltas.py`` and are re-exported here.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .fake_deltas import (
    Calls,
    _accumulate,
    content_deltas,
    llamacpp_tool_call_deltas,
    ollama_tool_call_deltas,
    openai_tool_call_deltas,
    reasoning_content_deltas,
    reasoning_field_deltas,
    think_tag_deltas,
)

__all__ = [
    "Calls",
    "FakeUpstream",
    "FakeUpstreamProcess",
    "Script",
    "StreamRecord",
    "content_deltas",
    "llamacpp_tool_call_deltas",
    "ollama_tool_call_deltas",
    "openai_tool_call_deltas",
    "reasoning_content_deltas",
    "reasoning_field_deltas",
    "think_tag_deltas",
]

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Script:
    """What the next chat-completion requests do. Tests assign or mutate ``fake.script``.

    Each request takes a copy of the script when it arrives, so changing it affects only later requests.
    The ``*_after`` knobs apply to streaming responses only; when several are set, the smallest count wins.
    A count larger than the number of tokens acts after the last content token (before the finish chunk).
    """

    tokens: int = 20
    """Number of generated content tokens to stream (ignored when ``pieces`` is set)."""
    rate: float | None = None
    """Pacing in tokens per second; ``None`` sends as fast as possible."""
    first_token_delay: float = 0.0
    """Seconds between the response headers (plus the role chunk) and the first content chunk."""
    pieces: list[str] | None = None
    """Exact content deltas to stream instead of the generated ``"w{i} "`` tokens."""
    deltas: list[dict] | None = None
    """Exact ``delta`` objects to stream instead of ``pieces`` / tokens, one chunk each, paced and counted (for
    ``tokens_sent`` and the ``*_after`` cuts) like tokens: ``{"content": ...}``, ``{"tool_calls": [...]}``,
    ``{"reasoning_content": ...}``... (see the ``*_deltas`` helpers, in ``fake_deltas.py``)."""
    finish_reason: str = "stop"
    """``finish_reason`` of the final chunk: ``"stop"``, ``"length"``, ``"content_filter"``, ..."""
    status: int | None = None
    """Answer with this HTTP error status and an OpenAI-shaped error body instead of generating."""
    error_message: str = "fake upstream error"
    """``error.message`` of the body sent with ``status``."""
    retry_after: float | None = None
    """``Retry-After`` header value in seconds, sent with ``status``."""
    status_times: int | None = None
    """Answer only the next this-many requests with ``status``, then generate normally (``None``: every request)."""
    context_window: int | None = None
    """Refuse, with OpenAI's 400 ``context_length_exceeded``, a request whose messages count more than this many
    "tokens" (the fake counts whitespace-separated words plus 4 per message)."""
    reject_stream_options: bool = False
    """Refuse a request carrying ``stream_options`` with a 400 naming it, as some older servers do."""
    reject_tools: str | None = None
    """Refuse a request carrying ``tools`` with ``reject_tools_status`` and this error message (e.g. Ollama's
    ``"fake-model does not support tools"``)."""
    reject_tools_status: int = 400
    """The HTTP status of a ``reject_tools`` refusal (llama.cpp's server answers some with 500)."""
    reject_images: str | None = None
    """Refuse a request with an ``image_url`` content part with a 400 and this error message (e.g. OpenAI's
    ``"Invalid content type. image_url is only supported by certain models."``)."""
    hang: bool = False
    """Accept the request but never send response headers, until the client goes away."""
    stall_after: int | None = None
    """Stream this many tokens, then send nothing more (connection stays open) until the client goes away."""
    drop_after: int | None = None
    """Stream this many tokens, then abruptly close the TCP connection mid-body (no finish chunk, no ``[DONE]``)."""
    malformed_after: int | None = None
    """Stream this many tokens, then send ``data: {not json`` and end the response."""
    truncate_after: int | None = None
    """Stream this many tokens, then end the response cleanly with neither a finish chunk nor ``[DONE]``."""
    error_event_after: int | None = None
    """Stream this many tokens, then send an error inside the stream, ``data: {"error": {"message": error_message,
    "type": "server_error", ...}}`` (as vLLM, LiteLLM and OpenRouter report a failure once the response has started),
    and end the response."""
    content_type: str = "text/event-stream; charset=utf-8"
    """``Content-Type`` of a streamed answer (its body is server-sent events whatever this says)."""
    no_done: bool = False
    """End the stream cleanly but without the final ``data: [DONE]``."""
    usage: bool = True
    """Send usage: a usage chunk if the request has ``stream_options.include_usage``; ``usage`` when not streaming."""


@dataclass
class StreamRecord:
    """Server-side account of one chat-completion request that got past validation (model, auth, ``status``).

    Streaming and non-streaming requests (and hanging ones) get a record; ``stream`` tells them apart.
    Fields are written from the server thread; read them after ``ended`` is set for a stable picture.
    """

    request: dict
    """The JSON body received."""
    stream: bool = True
    """Whether the request asked for ``"stream": true``."""
    tokens_sent: int = 0
    """Content tokens written to the socket so far."""
    finished: bool = False
    """The server sent everything the script meant it to (including a scripted drop / malformed end)."""
    client_disconnected: bool = False
    """The client closed the connection before the server was done."""
    ended: threading.Event = field(default_factory=threading.Event)
    """Set when the server side of this response has ended, in any way."""
    received_at: float = 0.0
    """Wall-clock time (``time.time()``, seconds) at which the whole request (headers and body) had been read."""
    written: list[float] = field(default_factory=list)
    """Wall-clock time (``time.time()``, seconds) at which each content token of *this* request was written."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able snapshot: the fields above (times in seconds since the epoch) and ``ended`` as a bool."""
        return {
            "request": self.request,
            "stream": self.stream,
            "received_at": self.received_at,
            "written": list(self.written),
            "tokens_sent": self.tokens_sent,
            "finished": self.finished,
            "client_disconnected": self.client_disconnected,
            "ended": self.ended.is_set(),
        }

    async def wait_ended(self, timeout: float = 2.0) -> bool:
        """Wait (without blocking the calling event loop) up to ``timeout`` seconds for ``ended``; return it."""
        deadline = time.monotonic() + timeout
        while not self.ended.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.ended.is_set()


class _DropConnection(Exception):
    """Raised inside a response so uvicorn closes the TCP connection without ending the chunked body."""


def _is_drop(exc: BaseException | None) -> bool:
    """Whether ``exc`` is (or wraps) a :class:`_DropConnection`."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _DropConnection):
            return True
        if isinstance(exc, BaseExceptionGroup):
            return any(_is_drop(inner) for inner in exc.exceptions)
        exc = exc.__cause__ or exc.__context__
    return False


class _HideDrops(logging.Filter):
    """Keep uvicorn from logging our deliberate connection drops as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_drop(record.exc_info[1]))


_uvicorn_error_logger = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _HideDrops) for f in _uvicorn_error_logger.filters):
    _uvicorn_error_logger.addFilter(_HideDrops())


def _error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-shaped error response."""
    kind, default_code = _ERROR_KINDS.get(status, ("server_error", None))
    body = {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _word_count(messages: Any) -> int:
    """Rough prompt size in words: whitespace-separated words of all text in ``messages``."""
    words = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return words


class _Exchange:
    """Per-request helper on the server loop: watches for the client going away and paces sleeps."""

    def __init__(self, receive: Receive) -> None:
        self.gone = asyncio.Event()
        """Set when the client disconnects, or when the server shuts down (then ``shutdown`` is true)."""
        self.shutdown = False
        self._watcher = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        # The request body has been read already, so the next ASGI message is ``http.disconnect``.
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                return

    def abort(self) -> None:
        """Server shutdown: wake every wait so the response ends (by dropping the connection)."""
        self.shutdown = True
        self.gone.set()

    async def sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (``time.monotonic()`` seconds); return True if the exchange is over instead."""
        delay = deadline - time.monotonic()
        if delay <= 0:
            await asyncio.sleep(0)  # let the watcher notice a disconnect even when streaming flat out
            return self.gone.is_set()
        try:
            await asyncio.wait_for(self.gone.wait(), delay)
        except TimeoutError:
            return False
        return True

    async def wait_gone(self) -> None:
        """Wait until the client goes away (or the server shuts down)."""
        await self.gone.wait()

    def close(self) -> None:
        """Stop watching."""
        self._watcher.cancel()


class _ChatResponse(Response):
    """The body of an accepted chat completion, written with raw ASGI sends for full control over timing."""

    def __init__(self, fake: FakeUpstream, script: Script, record: StreamRecord) -> None:
        # Deliberately not calling Response.__init__: this response renders itself in __call__.
        self.fake = fake
        self.script = script
        self.record = record
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange(receive)
        self.fake._exchanges.add(exchange)
        try:
            if self.script.hang:
                await exchange.wait_gone()
                self._over(exchange)
            elif self.record.stream:
                await self._stream(exchange, send)
            else:
                await self._complete(exchange, scope, receive, send)
        finally:
            exchange.close()
            self.fake._exchanges.discard(exchange)
            self.record.ended.set()

    def _over(self, exchange: _Exchange) -> None:
        """The exchange ended early: record a client disconnect, or drop the connection on server shutdown."""
        if exchange.shutdown:
            raise _DropConnection("fake upstream shutting down")
        self.record.client_disconnected = True

    def _sent(self, index: int) -> None:
        """Account for content token ``index`` having been written."""
        now = time.time()
        self.record.tokens_sent += 1
        self.record.written.append(now)
        self.fake.log.append((now, index))

    def _schedule(self, index: int, start: float) -> float:
        """Monotonic time at which token ``index`` is due: ``start + first_token_delay + index / rate``."""
        step = index / self.script.rate if self.script.rate else 0.0
        return start + self.script.first_token_delay + step

    async def _stream(self, exchange: _Exchange, send: Send) -> None:
        """Stream an SSE chat completion according to the script."""
        script, body = self.script, self.record.request
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model"),
                "system_fingerprint": "fp_fake",
                "choices": [choice],
            }
            if include_usage:
                data["usage"] = None
            return data

        async def event(data: dict | str | bytes) -> None:
            if isinstance(data, dict):
                text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                if not text.isascii() and any("\ud800" <= char <= "\udfff" for char in text):
                    text = json.dumps(data, separators=(",", ":"))  # a lone surrogate travels as a \ud83d escape
                data = text
            if isinstance(data, str):
                data = f"data: {data}\n\n".encode()
            await send({"type": "http.response.body", "body": data, "more_body": True})

        headers = [
            (b"content-type", script.content_type.encode()),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", f"req_{uuid.uuid4().hex}".encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        start = time.monotonic()
        await event(chunk({"role": "assistant", "content": ""}))

        deltas = self.fake.deltas(script)
        cuts = [
            (n, kind)
            for n, kind in (
                (script.drop_after, "drop"),
                (script.stall_after, "stall"),
                (script.malformed_after, "malformed"),
                (script.truncate_after, "truncate"),
                (script.error_event_after, "error_event"),
            )
            if n is not None
        ]
        limit, cut = min(cuts) if cuts else (len(deltas), None)
        for index, delta in enumerate(deltas[:limit]):
            if await exchange.sleep_until(self._schedule(index, start)):
                return self._over(exchange)
            await event(chunk(delta))
            self._sent(index)
        if cut is None and await exchange.sleep_until(0.0):
            return self._over(exchange)

        if cut == "stall":
            await exchange.wait_gone()
            return self._over(exchange)
        if cut == "drop":
            # uvicorn answers an exception after the response started with transport.close(): the bytes written so
            # far are flushed, then the socket closes without the terminating zero-length chunk, so the client sees
            # an incomplete chunked body (httpx.RemoteProtocolError) rather than a clean end.
            self.record.finished = True
            raise _DropConnection(f"scripted drop after {self.record.tokens_sent} tokens")
        if cut == "malformed":
            await event("{not json")
        elif cut == "error_event":
            await event({"error": {"message": script.error_message, "type": "server_error", "param": None,
                                   "code": None}})  # fmt: skip
        elif cut == "truncate":
            pass
        else:
            await event(chunk({}, script.finish_reason))
            if include_usage and script.usage:
                usage_chunk = chunk({})
                usage_chunk["choices"] = []
                usage_chunk["usage"] = self._usage()
                await event(usage_chunk)
            if not script.no_done:
                await event("[DONE]")
        self.record.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _complete(self, exchange: _Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a non-streaming request with one ``chat.completion`` once the last token is "generated"."""
        script, body = self.script, self.record.request
        deltas = self.fake.deltas(script)
        start = time.monotonic()
        if await exchange.sleep_until(self._schedule(max(len(deltas) - 1, 0), start)):
            return self._over(exchange)
        message = _accumulate(deltas)
        data: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": script.finish_reason}],
        }
        for index in range(len(deltas)):
            self._sent(index)
        if script.usage:
            data["usage"] = self._usage()
        self.record.finished = True
        await JSONResponse(data)(scope, receive, send)

    def _usage(self) -> dict[str, int]:
        """OpenAI ``usage`` for this exchange; prompt tokens are a rough word count of the messages."""
        prompt = _word_count(self.record.request.get("messages"))
        completion = self.record.tokens_sent
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class FakeUpstream:
    """A scriptable OpenAI-compatible server (``GET /v1/models``, ``POST /v1/chat/completions``) on 127.0.0.1.

    Use as a context manager or call :meth:`start` / :meth:`stop`. Attributes read by tests:

    * ``script`` -- the :class:`Script` for the next requests.
    * ``scripts`` -- a queue of scripts: each request (rejected ones included) takes the first, if any, instead of
      ``script`` (a tool loop's follow-up request then gets its own answer).
    * ``requests`` -- every chat-completion request body received (after auth), in order, including rejected ones.
    * ``streams`` -- one :class:`StreamRecord` per request that got past validation, in order.
    * ``log`` -- ``(time.time() seconds, token index)`` for each content token written, across all requests.
    * ``base_url`` -- ``"http://127.0.0.1:PORT/v1"``, available once started.
    """

    def __init__(self, models: Sequence[str] = ("fake-model",), api_key: str | None = None) -> None:
        """``models``: ids served and accepted; ``api_key``: when set, other bearer tokens get 401."""
        self.models: list[str] = list(models)
        self.api_key = api_key
        self.script = Script()
        self.scripts: list[Script] = []
        self.requests: list[dict] = []
        self.streams: list[StreamRecord] = []
        self.log: list[tuple[float, int]] = []
        self.port: int | None = None
        self._exchanges: set[_Exchange] = set()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app = Starlette(
            routes=[
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/_fake/script", self._put_script, methods=["PUT"]),
                Route("/_fake/scripts", self._put_scripts, methods=["PUT"]),
                Route("/_fake/streams", self._get_streams, methods=["GET"]),
                Route("/_fake/reset", self._post_reset, methods=["POST"]),
            ]
        )

    # -- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``"http://127.0.0.1:PORT/v1"``."""
        if self.port is None:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 10.0, port: int = 0) -> FakeUpstream:
        """Start serving on ``port`` (0: a free one) in a daemon thread; return self once it accepts connections."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit TCP_NODELAY from this one (Linux). Without it, on a kept-alive connection each
        # chunk after the response headers waited for the client's delayed ACK (Nagle's algorithm): 40 ms added to
        # every answer's first token after the first, which Parley's benchmarks counted as Parley's own overhead.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            lifespan="off",
            log_level="warning",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(self._server, sock), name="fake-upstream", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeUpstream failed to start")
            time.sleep(0.005)
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        """Server thread: a private event loop running uvicorn until stopped."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            sock.close()

    def _abort_all(self) -> None:
        """On the server loop: end every in-flight response (hanging or stalled ones included)."""
        for exchange in list(self._exchanges):
            exchange.abort()

    def stop(self) -> None:
        """Stop the server, cutting any in-flight responses, and join its thread (idempotent)."""
        server, thread, loop = self._server, self._thread, self._loop
        if server is None or thread is None:
            return
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._abort_all)
            except RuntimeError:  # the loop closed in between
                pass
        server.should_exit = True
        thread.join(5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        self._server = self._thread = self._loop = None
        self.port = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting helpers -----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to a default :class:`Script`; clear ``scripts``, ``requests``, ``streams`` and ``log``."""
        self.script = Script()
        self.scripts.clear()
        self.requests.clear()
        self.streams.clear()
        self.log.clear()

    @staticmethod
    def token(i: int) -> str:
        """The ``i``-th generated token (from 0): ``"w{i} "``."""
        return f"w{i} "

    def pieces(self, script: Script | None = None) -> list[str]:
        """The content of each delta ``script`` (default: the current one) streams: its ``pieces`` or generated
        tokens; with ``deltas``, each delta's ``content`` (``""`` for one without), so index ``n`` is delta ``n``."""
        script = script or self.script
        if script.deltas is not None:
            return [delta.get("content") or "" for delta in script.deltas]
        if script.pieces is not None:
            return list(script.pieces)
        return [self.token(i) for i in range(script.tokens)]

    def deltas(self, script: Script | None = None) -> list[dict]:
        """The ``delta`` objects ``script`` (default: the current one) streams, one chunk each: its ``deltas``, else
        ``{"content": piece}`` for each of ``pieces``."""
        script = script or self.script
        if script.deltas is not None:
            return copy.deepcopy(script.deltas)
        return [{"content": piece} for piece in self.pieces(script)]

    def expected_text(self, n: int | None = None) -> str:
        """The text the first ``n`` content deltas make (default: all of them, per the current script)."""
        pieces = self.pieces()
        return "".join(pieces if n is None else pieces[:n])

    # -- endpoints -------------------------------------------------------------------------------------------------

    def _unauthorized(self, request: Request) -> Response | None:
        """A 401 response when an ``api_key`` is configured and the request's bearer token differs."""
        if self.api_key is None:
            return None
        auth = request.headers.get("authorization", "")
        if auth == f"Bearer {self.api_key}":
            return None
        if not auth:
            return _error(401, "You didn't provide an API key.")
        given = auth.removeprefix("Bearer ")
        return _error(401, f"Incorrect API key provided: {given[:3]}***.")

    async def _list_models(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        data = [{"id": model, "object": "model", "created": 0, "owned_by": "fake"} for model in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _chat_completions(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            raw = await request.body()
            received_at = time.time()  # the whole request is in: from here on, the time is the upstream's own
            body = json.loads(raw)
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        self.requests.append(body)
        queued = self.scripts.pop(0) if self.scripts else None
        script = copy.deepcopy(queued or self.script)
        model = body.get("model")
        if model not in self.models:
            return _error(404, f"The model `{model}` does not exist", param="model", code="model_not_found")
        if script.reject_stream_options and "stream_options" in body:
            return _error(400, "Unrecognized request argument supplied: stream_options", param="stream_options")
        if script.reject_tools is not None and "tools" in body:
            return _error(script.reject_tools_status, script.reject_tools)
        if script.reject_images is not None and any(
            isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
            for m in body.get("messages") or []
        ):
            return _error(400, script.reject_images, param="messages")
        if script.context_window is not None:
            messages = body.get("messages") or []
            counted = _word_count(messages) + 4 * len(messages)
            if counted > script.context_window:
                message = (
                    f"This model's maximum context length is {script.context_window} tokens. However, your messages "
                    f"resulted in {counted} tokens. Please reduce the length of the messages."
                )
                return _error(400, message, param="messages", code="context_length_exceeded")
        live = queued or self.script  # status_times counts down on the live script, not this request's copy
        if script.status is not None and (live.status_times is None or live.status_times > 0):
            if live.status_times is not None:
                live.status_times -= 1
            headers = None
            if script.retry_after is not None:
                seconds = script.retry_after
                headers = {"retry-after": str(int(seconds)) if float(seconds).is_integer() else str(seconds)}
            return _error(script.status, script.error_message, headers=headers)
        record = StreamRecord(request=body, stream=bool(body.get("stream")), received_at=received_at)
        self.streams.append(record)
        return _ChatResponse(self, script, record)

    async def _put_script(self, request: Request) -> Response:
        """``PUT /_fake/script``: replace the script by ``Script(**body)``."""
        try:
            fields = json.loads(await request.body())
            if not isinstance(fields, dict):
                raise TypeError("the script must be a JSON object")
            self.script = Script(**fields)
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"ok": True})

    async def _put_scripts(self, request: Request) -> Response:
        """``PUT /_fake/scripts``: replace the queue by ``[Script(**item) for item in body]``."""
        try:
            items = json.loads(await request.body())
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise TypeError("the scripts must be a JSON list of objects")
            self.scripts = [Script(**item) for item in items]
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"ok": True})

    async def _get_streams(self, request: Request) -> Response:
        """``GET /_fake/streams?since=K``: the stream records from index ``K`` on, as JSON."""
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"error": "since must be an integer"}, status_code=400)
        return JSONResponse([record.to_json() for record in self.streams[since:]])

    async def _post_reset(self, request: Request) -> Response:
        """``POST /_fake/reset``: default script, no requests, streams or log."""
        self.reset()
        return JSONResponse({"ok": True})


class FakeUpstreamProcess:
    """A :class:`FakeUpstream` in a child process (``python -m tests.fake_upstream``), driven over its ``/_fake/`` API.

    Use as a context manager or call :meth:`start` / :meth:`stop`. The child has its own interpreter and GIL, so a
    benchmark's measurements of the app under test are not disturbed by the fake's work in the measuring process.
    """

    def __init__(self, models: Sequence[str] = ("fake-model",), api_key: str | None = None) -> None:
        """``models``: ids served and accepted; ``api_key``: when set, other bearer tokens get 401."""
        self.models = list(models)
        self.api_key = api_key
        self.process: subprocess.Popen[str] | None = None
        """The child process while it runs."""
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``"http://127.0.0.1:PORT/v1"``."""
        if self.port is None:
            raise RuntimeError("FakeUpstreamProcess is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self.process is None:
            raise RuntimeError("FakeUpstreamProcess is not started")
        return self.process.pid

    def start(self, timeout: float = 30.0) -> FakeUpstreamProcess:
        """Start the child on a free port; return self once it accepts connections (or raise RuntimeError)."""
        if self.process is not None:
            return self
        argv = [sys.executable, "-m", "tests.fake_upstream", "--port", "0", "--models", ",".join(self.models)]
        if self.api_key is not None:
            argv += ["--api-key", self.api_key]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else root
        self.process = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
        ready = threading.Event()
        lines: list[str] = []

        def read_banner() -> None:
            assert self.process is not None and self.process.stdout is not None
            lines.append(self.process.stdout.readline())
            ready.set()

        threading.Thread(target=read_banner, daemon=True).start()
        if not ready.wait(timeout) or not lines[0].startswith("listening on "):
            self.stop()
            raise RuntimeError(f"fake upstream process did not start: {lines!r}")
        self.port = int(lines[0].rsplit(":", 1)[1].split("/", 1)[0])
        return self

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 5 s) and wait for it (idempotent)."""
        process, self.process, self.port = self.process, None, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> FakeUpstreamProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One request to the child's control API; returns the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        url = f"http://127.0.0.1:{self.port}{path}"
        request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def set_script(self, script: Script) -> None:
        """Use ``script`` for the next chat-completion requests."""
        self._call("PUT", "/_fake/script", dataclasses.asdict(script))

    def set_scripts(self, scripts: Sequence[Script]) -> None:
        """Queue ``scripts``, one per next chat-completion request (replacing any queue)."""
        self._call("PUT", "/_fake/scripts", [dataclasses.asdict(script) for script in scripts])

    def streams(self, since: int = 0) -> list[dict[str, Any]]:
        """Snapshots (:meth:`StreamRecord.to_json`) of the stream records from index ``since`` on."""
        return self._call("GET", f"/_fake/streams?since={since}")

    def reset(self) -> None:
        """Back to a default script; forget requests, streams and log."""
        self._call("POST", "/_fake/reset")


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fake_upstream [--port P] [--models a,b] [--api-key K]``: serve until SIGTERM / SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_upstream", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--models", default="fake-model", help="comma-separated model ids served")
    parser.add_argument("--api-key", default=None, help="bearer token required (default: any)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with FakeUpstream(models=args.models.split(","), api_key=args.api_key).start(port=args.port) as fake:
        print(f"listening on {fake.base_url}", flush=True)
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main()
