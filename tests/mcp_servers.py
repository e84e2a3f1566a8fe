"""Small real MCP servers for the tests, built with the `mcp` SDK's MCPServer (FastMCP in mcp 1.x).

Run as ``python -m tests.mcp_servers stdio [--schema-file PATH] [--mark-file PATH]`` (stdin/stdout) or
``python -m tests.mcp_servers http PORT`` (streamable HTTP on 127.0.0.1:PORT, path /mcp).

Tools: ``echo``, ``add``, ``fail`` (reports isError), ``big`` (a long text), ``image`` (an image block),
``sleep`` (sleeps; writes "started" then "cancelled" or "finished" to the mark file), ``hang`` (never answers),
``crash`` (writes a line to stderr, then ``os._exit(3)`` mid-call), ``probe`` (its input schema is read from the
schema file at start, so it can change between runs), ``env`` (whether an environment variable is set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build(schema_file: str | None = None, mark_file: str | None = None) -> MCPServer:
    """The test server; `schema_file` holds ``{"version": 1|2}``, `mark_file` receives the ``sleep`` tool's marks."""
    server = MCPServer("parley-test", log_level="WARNING")

    def mark(text: str) -> None:
        if mark_file:
            with open(mark_file, "a", encoding="utf-8") as f:
                f.write(text + "\n")

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Always fails with a tool error.")
    def fail(why: str = "it went wrong") -> str:
        raise ToolError(f"failure on purpose: {why}")

    @server.tool(description="Return `size` characters.")
    def big(size: int) -> str:
        return "x" * size

    @server.tool(description="Return an image and a caption.")
    def image() -> types.CallToolResult:
        data = "iVBORw0KGgo" + "A" * 1333
        return types.CallToolResult(
            content=[
                types.TextContent(type="text", text="a caption"),
                types.ImageContent(type="image", data=data, mime_type="image/png"),
            ]
        )

    @server.tool(description="Sleep for `seconds`, leaving marks in the mark file.")
    async def sleep(seconds: float) -> str:
        mark("started")
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            mark("cancelled")
            raise
        mark("finished")
        return "slept"

    @server.tool(description="Never answers.")
    async def hang() -> str:
        await anyio.sleep_forever()
        return "never"

    @server.tool(description="Crash the server process during the call.")
    def crash() -> str:
        print("crashing on purpose for the test", file=sys.stderr, flush=True)
        os._exit(3)

    @server.tool(description="Whether the environment variable `name` is set (never its value).")
    def env(name: str) -> str:
        return "set" if os.environ.get(name) else "unset"

    if schema_file:
        version = json.loads(Path(schema_file).read_text())["version"]
        if version == 1:

            @server.tool(description="Probe, first version.")
            def probe(a: int) -> str:
                return f"v1 {a}"
        else:

            @server.tool(description="Probe, first version.")
            def probe(a: int, b: str = "") -> str:  # noqa: F811 - the other version
                return f"v2 {a} {b}"

    return server


def main() -> None:
    """Command line: ``stdio [--schema-file PATH] [--mark-file PATH]`` or ``http PORT``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["stdio", "http"])
    parser.add_argument("port", nargs="?", type=int)
    parser.add_argument("--schema-file")
    parser.add_argument("--mark-file")
    args = parser.parse_args()
    server = build(args.schema_file, args.mark_file)
    if args.kind == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
