"""One configured MCP server: its session, held open by one long-lived task, and the calls made through it.

The `mcp` SDK's transports and `ClientSession` are anyio context managers that must be entered and exited in one
task, so each connection has an owner task (`McpServer._own`) that opens the transport and the session, lists the
tools, then waits until it is told to stop or the connection ends. Other tasks send requests through the same
`ClientSession`: its dispatcher correlates them (``send_raw_request`` may be awaited from any task of the loop
while the owner holds the context open; a caller's cancellation sends ``notifications/cancelled``, see
``mcp/shared/jsonrpc_dispatcher.py``).

Between the transport and the session a small pump forwards messages; when the transport's read stream ends (the
stdio child exited, the HTTP transport failed) it marks the connection closed, so the next use reconnects.

Lifecycle of stdio children: `stdio_client` starts the server in its own session/process group and on exit closes
its stdin, waits 2 s, then SIGTERMs and SIGKILLs the group (the MCP spec's shutdown sequence). If Parley is killed
with SIGKILL none of that runs: then we rely on the child reading EOF on its stdin (the pipe closes when Parley
dies) and exiting, which MCP stdio servers do (the spec's stdio transport, and the SDK's servers, including
``mcp-server-time``). A server's stderr goes to a temporary file whose last line explains a crash.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import tempfile
import time
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from .base import ToolError
from .mcp_config import ServerConfig

logger = logging.getLogger(__name__)

#: Seconds before a server that failed to start is tried again; doubled after each failure in a row, up to the max.
RETRY_AFTER_FAILURE = 5.0
MAX_RETRY_AFTER_FAILURE = 300.0
#: Most pages of tools/list read from one server.
MAX_LIST_PAGES = 20
#: Seconds a failed call waits for the connection's owner task to record why the connection ended.
_DEATH_REPORT_WAIT = 5.0
#: SSE read timeout of the HTTP client, seconds (the SDK's default); call_timeout bounds calls anyway.
_HTTP_READ_TIMEOUT = 300.0


class _Connection:
    """The state of one connection attempt: the owner task's ready future, end event and the session."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[ClientSession] = loop.create_future()
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even when nobody waits
        self.end = asyncio.Event()
        self.closed = False  # the transport ended by itself (not by aclose)
        self.session: ClientSession | None = None
        self.tools: list[types.Tool] | None = None
        self.stderr: Any = None
        self.transport_error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.reason: str | None = None

    def close_stderr(self) -> None:
        """Close the stdio server's stderr file, once its process has ended."""
        if self.stderr is not None and (self.task is None or self.task.done()):
            self.stderr.close()


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


class McpServer:
    """A configured MCP server, connected lazily and reconnected after it died.

    Args:
        config: the server's `ServerConfig`.
        connect_timeout: seconds allowed to start, initialize and list the tools.
    """

    def __init__(self, config: ServerConfig, *, connect_timeout: float) -> None:
        self.config = config
        self.connect_timeout = connect_timeout
        #: Why the server is unavailable now (a clear sentence, no secrets), or None.
        self.problem: str | None = None
        self._retry_at = 0.0
        self._failures = 0  # failed starts in a row
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()

    # -- text ---------------------------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """``The MCP server 'name'`` (with ``at <url>`` for HTTP, password removed)."""
        where = f" at {self.config.display_url}" if self.config.url else ""
        return f"The MCP server {self.config.name!r}{where}"

    def scrub(self, text: str) -> str:
        """`text` with every secret of this server's config (env, header values, URL password) replaced by ***.

        For the server's own words (its stderr, its error messages) in a reason; our own text never holds a secret.
        Values under 4 characters (``TZ=UTC``) are left: replacing them would garble the message, not protect it.
        """
        for secret in sorted((s for s in self.config.secrets if len(s) >= 4), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _stderr_tail(self, conn: _Connection) -> str | None:
        if conn.stderr is None:
            return None
        try:
            conn.stderr.flush()
            conn.stderr.seek(0, 2)
            size = conn.stderr.tell()
            conn.stderr.seek(max(0, size - 4096))
            lines = [line.strip() for line in conn.stderr.read().splitlines() if line.strip()]
        except (OSError, ValueError):
            return None
        return self.scrub(lines[-1][:300]) if lines else None

    def _describe(self, exc: BaseException) -> str:
        """What went wrong, as a phrase (``connection refused``, ``command 'x' not found``)."""
        leaves = [
            e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError | anyio.get_cancelled_exc_class())
        ]
        exc = leaves[0] if leaves else exc
        for link in _chain(exc):
            if isinstance(link, FileNotFoundError) and self.config.command:
                return f"command {self.config.command!r} not found"
            if isinstance(link, PermissionError) and self.config.command:
                return f"command {self.config.command!r} cannot be run (permission denied)"
            if isinstance(link, ConnectionRefusedError) or getattr(link, "errno", None) == errno.ECONNREFUSED:
                return "connection refused"
            if isinstance(link, TimeoutError):
                return "it timed out"
            if isinstance(link, MCPError):
                if link.error.code == types.CONNECTION_CLOSED:
                    return "the connection closed"
                return f"it answered with an error: {link.error.message}"
        name = type(exc).__name__
        if name == "ConnectError":
            return f"cannot connect ({exc})" if str(exc) else "cannot connect"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        return text[:300]

    # -- connection ---------------------------------------------------------------------------------------------

    async def _connected(self) -> tuple[_Connection, ClientSession]:
        """The live connection, started (or restarted) if needed.

        Raises:
            ToolError: the server could not be started or did not answer in time (reason kept in `problem`).
        """
        async with self._lock:
            conn = self._conn
            if conn is None or conn.end.is_set() or (conn.task is not None and conn.task.done()):
                if conn is not None:
                    await self._reap(conn)
                    self._conn = None
                if self.problem and time.monotonic() < self._retry_at:
                    raise ToolError(self.problem)
                conn = self._conn = _Connection()
                conn.task = asyncio.create_task(self._own(conn), name=f"mcp-server-{self.config.name}")
        session = await asyncio.shield(conn.ready)
        return conn, session

    async def _reap(self, conn: _Connection) -> None:
        conn.end.set()
        if conn.task is not None and not conn.task.done():
            done, _ = await asyncio.wait({conn.task}, timeout=10)
            if not done:
                conn.task.cancel()
        conn.close_stderr()

    async def _pump(self, conn: _Connection, read: Any, send: Any) -> None:
        try:
            async with send:
                async for item in read:
                    if isinstance(item, Exception):
                        conn.transport_error = item
                    await send.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass
        finally:
            if not conn.end.is_set():
                conn.closed = True
                conn.end.set()

    async def _on_message(self, conn: _Connection, message: Any) -> None:
        if isinstance(message, Exception):
            conn.transport_error = message
        elif isinstance(message, types.ToolListChangedNotification):
            conn.tools = None

    async def _open(self, stack: AsyncExitStack, conn: _Connection) -> tuple[Any, Any]:
        cfg = self.config
        if cfg.command:
            # Kept open after the connection ends, for its last line; closed when the connection is reaped.
            conn.stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
            params = StdioServerParameters(command=cfg.command, args=list(cfg.args), env=cfg.env or None, cwd=cfg.cwd)
            return await stack.enter_async_context(stdio_client(params, errlog=conn.stderr))
        import httpx2  # the HTTP client the SDK's transport is built on

        # user:password@ moves into Basic auth, so the URL the SDK sees (and logs at debug level) holds no password.
        parts = urlsplit(cfg.url)
        auth = None
        url = cfg.url
        if parts.username is not None or parts.password is not None:
            auth = httpx2.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
            url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        client = create_mcp_http_client(
            headers=dict(cfg.headers) or None,
            timeout=httpx2.Timeout(self.connect_timeout, read=_HTTP_READ_TIMEOUT),
            auth=auth,
        )
        await stack.enter_async_context(client)
        return await stack.enter_async_context(streamable_http_client(url, http_client=client))

    async def _list(self, session: ClientSession) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor = None
        for _ in range(MAX_LIST_PAGES):
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            result = await session.list_tools(params=params)
            tools.extend(result.tools)
            cursor = result.next_cursor
            if not cursor:
                break
        return tools

    async def _own(self, conn: _Connection) -> None:
        """The owner task: open, initialize, list, then hold the session until told to stop or it ends."""
        name = self.config.name
        started = False
        logger.info("starting MCP server %r", name)
        try:
            async with AsyncExitStack() as stack:
                try:
                    read, write = await self._open(stack, conn)
                except OSError as exc:
                    raise _StartFailed() from exc
                tg = await stack.enter_async_context(anyio.create_task_group())
                send, receive = anyio.create_memory_object_stream[Any](0)
                tg.start_soon(self._pump, conn, read, send)
                session = await stack.enter_async_context(
                    ClientSession(receive, write, message_handler=functools.partial(self._on_message, conn))
                )
                # The bound covers only awaits that start and end inside it (anyio scopes nest strictly).
                with anyio.fail_after(self.connect_timeout):
                    await session.initialize()
                    conn.tools = await self._list(session)
                conn.session = session
                started = True
                self.problem = None
                self._failures = 0
                conn.ready.set_result(session)
                logger.info("MCP server %r is ready with %d tools", name, len(conn.tools))
                await conn.end.wait()
                tg.cancel_scope.cancel()
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a reason; cancellation re-raised below
            cancelled = isinstance(exc, asyncio.CancelledError)
            if cancelled:
                conn.end.set()
                if not conn.ready.done():
                    conn.ready.set_exception(ToolError(f"{self.label} was stopped."))
                logger.info("stopped MCP server %r", name)
                raise
            if started:
                reason = f"{self.label} stopped: {self._describe(exc)}."
            elif any(isinstance(leaf, TimeoutError) for leaf in _leaves(exc)):
                reason = f"{self.label} did not answer within {self.connect_timeout:g} s."
            elif self.config.command:
                closed = any(
                    isinstance(leaf, MCPError) and leaf.error.code == types.CONNECTION_CLOSED for leaf in _leaves(exc)
                )
                why = (
                    "it exited before answering"
                    if closed
                    else self._describe(exc.__cause__ if isinstance(exc, _StartFailed) else exc)
                )
                tail = self._stderr_tail(conn)
                reason = f"{self.label} could not start: {why}" + (f" ({tail})" if tail else "") + "."
            elif errors := [
                e for e in _leaves(exc) if isinstance(e, MCPError) and e.error.code != types.CONNECTION_CLOSED
            ]:
                reason = f"{self.label} refused the connection: {errors[0].error.message}."
            else:
                reason = f"{self.label} did not answer: {self._describe(exc)}."
            reason = conn.reason = self.problem = self.scrub(reason)
            logger.warning("%s", reason)
            if not started:
                self._failures += 1
                wait = min(MAX_RETRY_AFTER_FAILURE, RETRY_AFTER_FAILURE * 2 ** min(self._failures - 1, 10))
                self._retry_at = time.monotonic() + wait
                conn.ready.set_exception(ToolError(reason))
            conn.closed = True
            conn.end.set()
            return
        finally:
            conn.end.set()
            conn.session = None
            if not conn.ready.done():
                conn.ready.set_exception(ToolError(f"{self.label} was stopped."))
        if conn.closed:
            tail = self._stderr_tail(conn)
            conn.reason = self.scrub(f"{self.label} stopped" + (f": {tail}" if tail else "") + ".")
            self.problem = conn.reason
            logger.warning("%s", conn.reason)
        else:
            logger.info("stopped MCP server %r", name)

    # -- use ----------------------------------------------------------------------------------------------------

    async def list_tools(self) -> list[types.Tool]:
        """The server's tools, cached while its session lives (connecting first if needed).

        Raises:
            ToolError: the server is unavailable; the reason is also kept in `problem`.
        """
        conn, session = await self._connected()
        if conn.tools is None:
            try:
                with anyio.fail_after(self.connect_timeout):
                    conn.tools = await self._list(session)
            except (MCPError, TimeoutError) as exc:
                self.problem = self.scrub(f"{self.label} could not list its tools: {self._describe(exc)}.")
                conn.end.set()
                raise ToolError(self.problem) from None
        return conn.tools

    async def call(self, tool: str, arguments: dict) -> types.CallToolResult:
        """``tools/call`` of `tool` (the server's own name) with `arguments`. Unbounded: the caller bounds it.

        Raises:
            ToolError: the server is unavailable, died during the call (the connection is then reconnected on the
                next use), or answered with a protocol error.
            asyncio.CancelledError: the caller was cancelled; the SDK sends ``notifications/cancelled``.
        """
        conn, session = await self._connected()
        try:
            return await session.call_tool(tool, arguments)
        except MCPError as exc:
            if exc.error.code != types.CONNECTION_CLOSED:
                raise ToolError(
                    self.scrub(f"{self.label} refused the call of {tool!r}: {exc.error.message}.")
                ) from None
            conn.closed = True
            conn.end.set()
            if conn.task is not None:
                await asyncio.wait({conn.task}, timeout=_DEATH_REPORT_WAIT)
            tail = self._stderr_tail(conn)
            lost = "it exited" if self.config.command else "the connection was lost"
            why = tail or (self._describe(conn.transport_error) if conn.transport_error else lost)
            reason = self.scrub(f"{self.label} stopped during the call of {tool!r}: {why}.")
            self.problem = reason
            logger.warning("%s", reason)
            raise ToolError(reason) from None
        except (ValueError, RuntimeError) as exc:  # pydantic's ValidationError is a ValueError
            logger.warning("%s sent a result that could not be read: %s", self.label, type(exc).__name__)
            raise ToolError(f"{self.label} answered the call of {tool!r} with a result Parley cannot read.") from None

    async def aclose(self) -> None:
        """Stop the connection (the stdio child ends; an HTTP session is closed). Safe to call twice."""
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is None or conn.task is None:
            return
        if not conn.ready.done():
            conn.task.cancel()
        conn.end.set()
        done, _ = await asyncio.wait({conn.task}, timeout=15)
        if not done:
            conn.task.cancel()
            await asyncio.wait({conn.task}, timeout=5)
        conn.close_stderr()


class _StartFailed(Exception):
    """The transport could not be opened (the stdio command could not be spawned); the OSError is the cause."""
