"""The function-calling loop of an answer: which tools a request offers, and one round of tool calls.

An answer with tools is several chat completions in a row (https://platform.openai.com/docs/guides/function-calling):
the model streams text and tool calls; Parley checks each call's arguments, asks the owner when the tool's policy says
``ask``, runs the calls of the round concurrently, then sends the assistant message with its ``tool_calls`` and one
``role: "tool"`` message per call id (a failed, denied, expired or cancelled call too, saying so: an upstream answers
400 otherwise), and the model goes on. ``Engine._generate`` drives the rounds; every step is an event of the answer's
log (``events.py``), so the page, ``/api`` and a stored answer all show the same steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..provider import ChatStream, ToolCall
from ..store import Status, Store
from ..tools import InvalidArguments, Policy, Tool, Toolbox, ToolError
from .events import ContentEvent, Phase, ToolStatus, tool_rounds
from .generation import Generation
from .policy import Account
from .text import clean_text

log = logging.getLogger(__name__)

#: What the model is told for a call that never ran because the answer ended first.
NOT_RUN = "This call did not run: the answer ended before it could."


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """Bounds of one answer's tool use.

    Attributes:
        max_steps: most rounds of tool calls (model asks, tools answer) in one answer.
        max_calls: most tool calls in one answer.
        approval_timeout: seconds a call waits for its owner's decision before it expires.
    """

    max_steps: int = 8
    max_calls: int = 32
    approval_timeout: float = 600.0


class ToolLoop:
    """Runs the tool calls of answers.

    Args:
        toolbox: the tools (built-in and MCP); None: no tools at all.
        store: where "always allow" decisions are kept.
        limits: the bounds per answer.
    """

    def __init__(self, toolbox: Toolbox | None, store: Store, limits: ToolLimits | None = None) -> None:
        self.toolbox = toolbox
        self.store = store
        self.limits = limits or ToolLimits()

    async def available(self, account: Account) -> list[Tool]:
        """The tools ``account`` may have a model call (policy ``deny`` left out), in the toolbox's order. A failing
        MCP server's tools are missing (``toolbox.problems`` says why)."""
        if self.toolbox is None:
            return []
        tools = await self.toolbox.tools()
        return [tool for tool in tools if tool.policy != Policy.deny and account.may_call(tool.name)]

    async def offered(self, account: Account, enabled: list[str] | None) -> list[Tool]:
        """The tools a request offers: ``available`` ones that the conversation has on (``enabled``; None: all)."""
        tools = await self.available(account)
        return tools if enabled is None else [tool for tool in tools if tool.name in enabled]

    async def run_round(
        self, generation: Generation, calls: list[ToolCall], offered: Mapping[str, Tool], account: Account
    ) -> None:
        """Check, approve and run one round's calls (concurrently), each ending with a ``ToolResult`` in the log.

        Raises:
            asyncio.CancelledError: the answer was stopped; the calls without a result are ``cancelled``.
        """
        assert self.toolbox is not None
        toolbox = self.toolbox
        prepared: list[tuple[ToolCall, Tool | None, dict[str, Any] | None, str | None]] = []
        for call in calls:
            tool, parsed, error = offered.get(call.name), None, None
            if tool is None:
                error = f"There is no tool named {call.name!r}; the tools offered are: {', '.join(offered) or 'none'}."
            else:
                try:
                    parsed = toolbox.parse_arguments(tool, call.arguments)
                except InvalidArguments as invalid:
                    error = invalid.reason
            generation.tool_call_ready(call.id, call.name, call.arguments, parsed, error)
            prepared.append((call, tool, parsed, error))
        approvals = await asyncio.to_thread(self.store.tool_approvals, account.user_id)
        generation.set_phase("running_tools")
        tasks = [
            asyncio.ensure_future(self._one(generation, call, tool, parsed, error, account, approvals))
            for call, tool, parsed, error in prepared
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            for call in calls:
                generation.tool_result(call.id, ToolStatus.cancelled, "The answer was stopped before this call ended.",
                                       is_error=True)  # fmt: skip

    async def _one(
        self,
        generation: Generation,
        call: ToolCall,
        tool: Tool | None,
        parsed: dict[str, Any] | None,
        error: str | None,
        account: Account,
        approvals: dict[str, str],
    ) -> None:
        if tool is None or parsed is None:
            generation.tool_result(call.id, ToolStatus.failed, error or "Invalid arguments.", is_error=True)
            return
        if tool.policy == Policy.deny:
            generation.tool_result(call.id, ToolStatus.denied, "This tool is not allowed.", is_error=True)
            return
        if tool.policy == Policy.ask and approvals.get(tool.name) != tool.fingerprint:
            timeout = self.limits.approval_timeout
            decision = await generation.approval(
                call.id, tool.name, tool.source, timeout=timeout, changed=tool.name in approvals
            )
            if decision is None:
                reason = f"Nobody approved this call within {timeout:g} s; it did not run."
                generation.tool_result(call.id, ToolStatus.expired, reason, is_error=True)
                return
            if not decision.approve:
                generation.tool_result(call.id, ToolStatus.denied, "The user denied this call.", is_error=True)
                return
            if decision.always:
                await asyncio.to_thread(self.store.allow_tool, account.user_id, tool.name, tool.fingerprint)
                approvals[tool.name] = tool.fingerprint
        assert self.toolbox is not None
        generation.tool_running(call.id)
        started = time.monotonic()
        try:
            output = await self.toolbox.call(tool, parsed)
        except ToolError as failure:
            duration = round(time.monotonic() - started, 3)
            generation.tool_result(call.id, ToolStatus.failed, failure.reason, is_error=True, duration=duration)
            log.warning("%s: tool %s failed: %s", generation, tool.name, failure.reason)
            return
        status = ToolStatus.failed if output.is_error else ToolStatus.succeeded
        generation.tool_result(call.id, status, output.text, is_error=output.is_error, truncated=output.truncated,
                               duration=round(time.monotonic() - started, 3))  # fmt: skip


async def stream_round(
    generation: Generation,
    stream: ChatStream,
    started: float,
    offered: dict[str, Tool],
    client_tools: list[dict[str, Any]] | None,
) -> None:
    """One chat completion's chunks into the log: reasoning, text and tool-call deltas."""
    async for chunk in stream:  # the stream keeps the finish_reason, the usage and the calls itself
        if chunk.delta or chunk.reasoning or chunk.tool_calls:
            if generation.ttft is None:
                generation.ttft = time.monotonic() - started
            if generation.phase != Phase.streaming:
                generation.set_phase(Phase.streaming)
        if chunk.reasoning:
            generation.add_reasoning(clean_text(chunk.reasoning))
        if chunk.delta:
            generation.append(clean_text(chunk.delta))
        for delta in chunk.tool_calls:
            if delta.name is not None:
                source = "client" if client_tools else source_of(offered, delta.name)
                generation.start_tool_call(delta.id, delta.name, source)
            if delta.arguments:
                generation.add_tool_arguments(delta.id, delta.arguments)


def hand_to_client(generation: Generation, calls: list[ToolCall]) -> None:
    """A ``/v1`` client's own tools were called: the calls are complete; the client runs them."""
    for call in calls:
        generation.tool_call_ready(call.id, call.name, call.arguments, None, None)
        generation.hand_over(call.id)


def refuse_calls(generation: Generation, calls: list[ToolCall], reason: str) -> None:
    """End ``calls`` without running them (``cancelled``), telling the model ``reason``."""
    for call in calls:
        generation.tool_call_ready(call.id, call.name, call.arguments, None, reason)
        generation.tool_result(call.id, ToolStatus.cancelled, reason, is_error=True)


def close_calls(generation: Generation) -> None:
    """Give every call still open a result, so the stored log says how each ended."""
    reason = "The answer was stopped before this call ended."
    if generation.status == Status.interrupted:
        reason = "Parley was stopped before this call ended."
    elif generation.status == Status.error:
        reason = "The answer failed before this call ended."
    for call_id in generation.open_calls():
        generation.tool_result(call_id, ToolStatus.cancelled, reason, is_error=True)


def source_of(offered: Mapping[str, Tool], name: str) -> str:
    """Where the tool ``name`` comes from (``Tool.source``), or ``""`` when none of that name was offered."""
    tool = offered.get(name)
    return tool.source if tool is not None else ""


def assistant_messages(events: list[ContentEvent], *, final: bool) -> list[dict[str, Any]]:
    """An answer's log as the chat completion messages that stand for it in a later request: per round with tool
    calls, the assistant message with its text and ``tool_calls``, then one ``role: "tool"`` message per call (a call
    with no result is told it did not run); then, with ``final``, the last round's text as a plain assistant message
    (none when empty). Calls whose arguments never finished streaming are left out. Reasoning is never sent back.

    Returns:
        ``[{"role": "assistant", "content": str | None, "tool_calls": [...]}, {"role": "tool", "tool_call_id": str,
        "content": str}, ..., {"role": "assistant", "content": str}]`` (OpenAI's Chat Completions shapes).
    """
    messages: list[dict[str, Any]] = []
    rounds = tool_rounds(events)
    for index, round_ in enumerate(rounds):
        calls = [call for call in round_.calls if call.ready or call.result is not None]
        if not calls:
            if round_.text and (final or index < len(rounds) - 1):
                messages.append({"role": "assistant", "content": round_.text})
            continue
        messages.append({
            "role": "assistant",
            "content": round_.text or None,
            "tool_calls": [
                {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for call in calls
            ],
        })  # fmt: skip
        for call in calls:
            messages.append({"role": "tool", "tool_call_id": call.call_id, "content": call.result or NOT_RUN})
    return messages
