"""The shapes every tool shares: `Tool`, `ToolOutput`, `Policy`, the errors, tool naming and result truncation.

Tool names follow OpenAI's function-name rule, ``^[a-zA-Z0-9_-]{1,64}$``
(https://platform.openai.com/docs/api-reference/chat/create, ``tools[].function.name``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum

#: OpenAI's rule for a function name.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_NAME_LENGTH = 64
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


class Policy(StrEnum):
    """What to do when the model calls a tool: run it (``auto``), ask the user first (``ask``) or refuse (``deny``)."""

    auto = "auto"
    ask = "ask"
    deny = "deny"


@dataclass(frozen=True, slots=True)
class Tool:
    """One tool offered to the model.

    Attributes:
        name: the name the model sees, matching ``NAME_PATTERN``. Built-ins keep theirs; an MCP tool is
            ``<server>__<tool>``, sanitized and made unique by `tool_name`.
        description: what the tool does, for the model.
        input_schema: JSON Schema of the arguments object (MCP's ``inputSchema``, or the built-in's own).
        source: ``"builtin"`` or the MCP server's name from the config.
        policy: `Policy` for calls of this tool.
        original_name: the tool's own name at its server (``== name`` for built-ins).
    """

    name: str
    description: str
    input_schema: dict
    source: str
    policy: Policy
    original_name: str

    @property
    def fingerprint(self) -> str:
        """sha256 hex digest of the description and the canonical JSON (sorted keys) of the input schema.

        An "always allow" approval is tied to it, so a tool whose description or schema changed asks again.
        """
        canonical = json.dumps(self.input_schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(f"{self.description}\n{canonical}".encode()).hexdigest()

    def openai_tool(self) -> dict:
        """The tool in the Chat Completions ``tools`` shape:
        ``{"type": "function", "function": {"name", "description", "parameters"}}``."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        }


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """The result of one tool call.

    Attributes:
        text: the result as plain text (for MCP: its content blocks' text joined by newlines, other blocks
            described, structured content as JSON when there is no text).
        is_error: the tool itself reported an error (MCP ``isError``, a built-in's bad input).
        truncated: `text` was cut to the result limit (a marker line says how much).
    """

    text: str
    is_error: bool = False
    truncated: bool = False


class ToolError(Exception):
    """A tool call that could not run or complete. ``reason`` is one clear sentence for the user (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidArguments(ToolError):
    """The arguments are not JSON, not an object, or do not match the tool's input schema."""


class UnknownTool(ToolError):
    """No tool has that name (the model made one up)."""


def tool_name(server: str, original: str, taken: set[str]) -> str:
    """The name the model sees for MCP tool `original` of `server`: ``<server>__<original>``.

    Characters outside ``[a-zA-Z0-9_-]`` become ``_``. A name longer than 64 characters, or one already in
    `taken`, is cut and given a suffix of 8 hex digits of sha256(server, original), so it stays stable
    across listings. The result is added to `taken`.

    Args:
        server: the server's name from the config.
        original: the tool's name at its server.
        taken: names already given (modified).
    Returns:
        a name matching ``NAME_PATTERN`` not in `taken` before the call.
    """
    name = _INVALID_NAME_CHARS.sub("_", f"{server}__{original}")
    if len(name) > MAX_NAME_LENGTH or name in taken:
        digest = hashlib.sha256(f"{server}\0{original}".encode()).hexdigest()
        for width in range(8, len(digest) + 1):
            candidate = f"{name[: MAX_NAME_LENGTH - width - 1]}_{digest[:width]}"
            if candidate not in taken:
                name = candidate
                break
    taken.add(name)
    return name


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """Cut `text` to at most `limit` characters of the original, then a marker line saying how many were cut.

    Returns:
        (text, truncated).
    """
    if len(text) <= limit:
        return text, False
    cut = len(text) - limit
    return f"{text[:limit]}\n[… {cut:,} more characters cut: the result was {len(text):,} characters long]", True
