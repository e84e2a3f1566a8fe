"""`Toolbox`: the built-in tools and the configured MCP servers' tools behind one listing, validation and call."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import jsonschema
import mcp_types as types
from jsonschema.exceptions import SchemaError, best_match

from .base import InvalidArguments, Policy, Tool, ToolError, ToolOutput, UnknownTool, tool_name, truncate
from .builtin import BUILTINS
from .mcp_config import load_config
from .mcp_server import McpServer

logger = logging.getLogger(__name__)

#: Most seconds a server may take to start and list its tools (call_timeout, when smaller, wins).
CONNECT_TIMEOUT = 30.0
#: Longest validation message passed back to the model, characters.
_MAX_REASON = 500


def _blob_size(data: str) -> int:
    """Bytes encoded by base64 text `data` (without decoding it)."""
    data = data.strip()
    return max(0, len(data) * 3 // 4 - (len(data) - len(data.rstrip("="))))


def _block_text(block: Any) -> str | None:
    """One MCP content block as text; None for an unknown kind."""
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        kind = "image" if isinstance(block, types.ImageContent) else "audio"
        return f"[{kind}: {block.mime_type}, {_blob_size(block.data):,} bytes]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.name} <{block.uri}>]"
    if isinstance(block, types.EmbeddedResource):
        res = block.resource
        if isinstance(res, types.TextResourceContents):
            return f"[resource <{res.uri}>]\n{res.text}"
        mime = f", {res.mime_type}" if res.mime_type else ""
        return f"[resource <{res.uri}>{mime}, {_blob_size(res.blob):,} bytes]"
    return f"[{getattr(block, 'type', 'unknown')} content]"


def mcp_result_text(result: types.CallToolResult) -> str:
    """The text of an MCP ``CallToolResult``: its content blocks joined by newlines (images, audio and binary
    resources described by type and size), or its ``structuredContent`` as JSON when no block has text."""
    parts = [text for block in result.content if (text := _block_text(block)) is not None]
    has_text = any(isinstance(b, types.TextContent | types.EmbeddedResource) for b in result.content)
    if result.structured_content is not None and not has_text:
        parts.insert(0, json.dumps(result.structured_content, ensure_ascii=False, indent=2))
    return "\n".join(parts)


class Toolbox:
    """The tools Parley offers a model: the built-ins and every configured MCP server's, with their calls.

    Args:
        builtins: offer ``calculator`` and ``current_time``.
        mcp_config: path of the MCP config file (``{"mcpServers": {...}}``, see `chat.tools.mcp_config`); read and
            validated here, but no server starts until `tools` or `call` needs it.
        call_timeout: seconds one call may take (a server's start and tools/list take at most 30 s, or this when
            smaller).
        result_limit: most characters of a result's text; the rest is cut with a marker line.
    Raises:
        ValueError: the MCP config file cannot be read or is malformed (the message names the file and the server,
            never a secret).
    """

    def __init__(
        self,
        *,
        builtins: bool = True,
        mcp_config: Path | None = None,
        call_timeout: float = 120.0,
        result_limit: int = 20_000,
    ) -> None:
        self.call_timeout = call_timeout
        self.result_limit = result_limit
        self._builtins = dict(BUILTINS) if builtins else {}
        configs = load_config(mcp_config) if mcp_config is not None else []
        connect_timeout = min(CONNECT_TIMEOUT, call_timeout)
        self._servers = {c.name: McpServer(c, connect_timeout=connect_timeout) for c in configs if not c.disabled}
        for config in configs:
            if config.disabled:
                logger.info("MCP server %r is disabled in the config", config.name)
        #: server name -> the clear reason it is unavailable now (no secrets); cleared when it works again.
        self.problems: dict[str, str] = {}
        self._listing: dict[str, Tool] = {}
        self._names: dict[tuple[str, str], str] = {}  # (server, original name) -> the name given, kept stable
        self._taken: set[str] = set(self._builtins)
        self._validators: dict[str, tuple[str, Any]] = {}  # tool name -> (fingerprint, validator or None)

    def _mcp_tool(self, server: McpServer, tool: types.Tool) -> Tool:
        key = (server.config.name, tool.name)
        if key not in self._names:
            self._names[key] = tool_name(server.config.name, tool.name, self._taken)
        schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
        schema = dict(schema) or {"type": "object", "properties": {}}
        description = (tool.description or tool.title or "").strip()
        return Tool(
            name=self._names[key],
            description=description or f"The tool {tool.name!r} of the MCP server {server.config.name!r}.",
            input_schema=schema,
            source=server.config.name,
            policy=server.config.policy_for(tool.name),
            original_name=tool.name,
        )

    async def tools(self) -> list[Tool]:
        """The built-ins, then every available MCP server's tools in config order.

        Starts servers that are not running (or died); a server that fails, or does not list its tools within the
        connect bound, is left out and its reason put in `problems`. Never raises for a server's failure.

        Returns:
            the tools; `find` answers from this listing afterwards.
        """
        servers = list(self._servers.values())
        results = await asyncio.gather(*(s.list_tools() for s in servers), return_exceptions=True)
        listing = [tool for tool, _ in self._builtins.values()]
        for server, result in zip(servers, results, strict=True):
            name = server.config.name
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if isinstance(result, ToolError):
                    self.problems[name] = result.reason
                else:
                    logger.error("listing the tools of MCP server %r failed: %s", name, type(result).__name__)
                    self.problems[name] = f"The MCP server {name!r} could not list its tools."
                continue
            self.problems.pop(name, None)
            listing.extend(self._mcp_tool(server, tool) for tool in result)
        self._listing = {tool.name: tool for tool in listing}
        return listing

    def find(self, name: str) -> Tool | None:
        """The tool called `name` in the last `tools` listing, or None."""
        return self._listing.get(name)

    def _validator(self, tool: Tool) -> Any:
        cached = self._validators.get(tool.name)
        if cached is not None and cached[0] == tool.fingerprint:
            return cached[1]
        cls = jsonschema.validators.validator_for(tool.input_schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(tool.input_schema)
            validator = cls(tool.input_schema)
        except (SchemaError, TypeError, ValueError):
            logger.warning("the input schema of tool %r is not a valid JSON Schema: not validating", tool.name)
            validator = None
        self._validators[tool.name] = (tool.fingerprint, validator)
        return validator

    def parse_arguments(self, tool: Tool, arguments: str) -> dict:
        """The model's `arguments` text for `tool` as a dict, checked against the tool's input schema.

        ``""`` (or whitespace) means ``{}``. The schema is applied with the validator of its ``$schema`` (Draft
        2020-12 by default); a schema that is itself invalid is skipped (only the object check applies).

        Raises:
            InvalidArguments: not JSON, not an object, or not matching the schema; the reason is meant for the
                model, e.g. ``arguments do not match the input schema: 'expression' is a required property``.
        """
        if not arguments.strip():
            value: Any = {}
        else:
            try:
                value = json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise InvalidArguments(
                    f"arguments are not valid JSON: {exc.msg}: line {exc.lineno} column {exc.colno}"
                ) from None
            except RecursionError:
                raise InvalidArguments("arguments are not valid JSON: nested too deeply") from None
        if not isinstance(value, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
                type(value), "a number"
            )
            raise InvalidArguments(f"arguments must be a JSON object, not {kind}")
        validator = self._validator(tool)
        if validator is None:
            return value
        try:
            error = best_match(validator.iter_errors(value))
        except Exception:  # noqa: BLE001 - e.g. an unresolvable $ref: the schema cannot be applied
            logger.warning("the input schema of tool %r could not be applied: not validating", tool.name)
            return value
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            message = error.message if len(error.message) <= _MAX_REASON else error.message[:_MAX_REASON] + "…"
            raise InvalidArguments(
                f"arguments do not match the input schema: {message}" + (f" (at '{where}')" if where else "")
            )
        return value

    async def call(self, tool: Tool, arguments: dict) -> ToolOutput:
        """Run `tool` with `arguments` (already checked by `parse_arguments`), bounded by ``call_timeout``.

        Built-ins run in a worker thread. An MCP tool is a ``tools/call`` to its server (started if needed).

        Returns:
            the `ToolOutput`; its text cut to ``result_limit`` characters (``truncated=True``).
        Raises:
            UnknownTool: no such tool (or its server is not configured).
            ToolError: the policy is ``deny``; the call did not finish within ``call_timeout`` ("The tool X did not
                answer within N s."); the server is unavailable or died during the call (it reconnects on the
                next use).
            asyncio.CancelledError: the caller was cancelled; an MCP request in flight is cancelled at the server
                (the SDK sends ``notifications/cancelled``).
        """
        if tool.policy is Policy.deny:
            raise ToolError(f"The tool {tool.name} is not allowed: its policy is deny.")
        logger.debug("calling tool %r (%s)", tool.name, tool.source)
        try:
            async with asyncio.timeout(self.call_timeout):
                if tool.source == "builtin":
                    entry = self._builtins.get(tool.name)
                    if entry is None:
                        raise UnknownTool(f"There is no built-in tool {tool.name}.")
                    output = await asyncio.to_thread(entry[1], arguments)
                else:
                    server = self._servers.get(tool.source)
                    if server is None:
                        raise UnknownTool(f"There is no MCP server {tool.source!r} for the tool {tool.name}.")
                    try:
                        result = await server.call(tool.original_name, arguments)
                    except ToolError as exc:
                        if server.problem:
                            self.problems[server.config.name] = server.problem
                        raise exc
                    self.problems.pop(server.config.name, None)
                    output = ToolOutput(mcp_result_text(result), is_error=bool(result.is_error))
        except TimeoutError:
            logger.warning("tool %r did not answer within %g s", tool.name, self.call_timeout)
            raise ToolError(f"The tool {tool.name} did not answer within {self.call_timeout:g} s.") from None
        text, truncated = truncate(output.text, self.result_limit)
        return ToolOutput(text, is_error=output.is_error, truncated=truncated)

    async def aclose(self) -> None:
        """Stop every MCP server: stdio children end (stdin closed, then SIGTERM/SIGKILL), HTTP sessions close."""
        await asyncio.gather(*(server.aclose() for server in self._servers.values()), return_exceptions=True)
