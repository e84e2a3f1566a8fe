"""The Toolbox with real MCP servers: mcp-server-time from PyPI, and tests/mcp_servers.py over stdio and HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from chat.tools import Policy, Toolbox, ToolError, ToolOutput

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-value"


def stdio_server(*args: str, **extra: object) -> dict:
    """Config of a tests/mcp_servers.py stdio server."""
    return {"command": sys.executable, "args": ["-m", "tests.mcp_servers", "stdio", *args], "cwd": str(ROOT), **extra}


def toolbox(tmp_path: Path, servers: dict, **kwargs: object) -> Toolbox:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return Toolbox(mcp_config=path, **kwargs)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll `condition` until it holds (a guard against hanging, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def server_children() -> list[psutil.Process]:
    """This process's stdio MCP server children (tests/mcp_servers.py stdio, mcp-server-time)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "tests.mcp_servers stdio" in cmdline or "mcp_server_time" in cmdline:
            found.append(child)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_http_server() -> tuple[subprocess.Popen, int]:
    """Start tests/mcp_servers.py over streamable HTTP on a free port; return once the port accepts connections."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.mcp_servers", "http", str(port)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the HTTP MCP server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the HTTP MCP server did not start listening")
            time.sleep(0.05)  # polling the port, not synchronization


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    """The port of a running HTTP test server."""
    proc, port = start_http_server()
    yield port
    proc.terminate()
    proc.wait(10)


# -- mcp-server-time, from PyPI -----------------------------------------------------------------------------------


async def test_mcp_server_time(tmp_path: Path) -> None:
    box = toolbox(tmp_path, {"time": {
        "command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "env": {"TZ": "UTC"}, "tools": {"get_current_time": "auto"},
    }})  # fmt: skip
    try:
        tools = {tool.name: tool for tool in await box.tools()}
        assert box.problems == {}
        assert {"calculator", "current_time", "time__get_current_time", "time__convert_time"} <= set(tools)
        get = tools["time__get_current_time"]
        assert (get.source, get.original_name, get.policy) == ("time", "get_current_time", Policy.auto)
        assert tools["time__convert_time"].policy is Policy.ask
        assert get.input_schema["type"] == "object" and get.input_schema["required"] == ["timezone"]
        assert "timezone" in get.input_schema["properties"] and get.description
        assert box.find("time__get_current_time") == get
        output = await box.call(get, box.parse_arguments(get, '{"timezone": "Europe/Paris"}'))
        assert not output.is_error and not output.truncated
        assert json.loads(output.text)["timezone"] == "Europe/Paris"
        bad = await box.call(get, {"timezone": "Nowhere/Land"})
        assert bad.is_error
    finally:
        await box.aclose()


# -- streamable HTTP ----------------------------------------------------------------------------------------------


async def test_http_server_tools(tmp_path: Path, http_server: int) -> None:
    url = f"http://127.0.0.1:{http_server}/mcp"
    box = toolbox(tmp_path, {"docs": {"url": url, "headers": {"Authorization": f"Bearer {SECRET}"}}})
    try:
        tools = {tool.name: tool for tool in await box.tools()}
        assert box.problems == {}
        echo, add = tools["docs__echo"], tools["docs__add"]
        assert echo.policy is Policy.ask and echo.source == "docs"
        assert set(add.input_schema["required"]) == {"a", "b"}
        assert await box.call(echo, {"text": "héllo"}) == ToolOutput("héllo")
        assert await box.call(add, box.parse_arguments(add, '{"a": 2, "b": 40}')) == ToolOutput("42")
        failed = await box.call(tools["docs__fail"], {"why": "no reason"})
        assert failed.is_error and "failure on purpose: no reason" in failed.text
    finally:
        await box.aclose()


async def test_http_server_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    box = toolbox(tmp_path, {"docs": {"url": f"http://user:{SECRET}@127.0.0.1:{port}/mcp",
                                      "headers": {"Authorization": f"Bearer {SECRET}"}}})  # fmt: skip
    tools = await box.tools()
    assert [tool.name for tool in tools] == ["calculator", "current_time"]
    assert box.problems == {
        "docs": f"The MCP server 'docs' at http://user:***@127.0.0.1:{port}/mcp did not answer: connection refused."
    }
    assert SECRET not in caplog.text
    await box.aclose()


async def test_http_server_dies_mid_call(tmp_path: Path) -> None:
    proc, port = start_http_server()
    box = toolbox(tmp_path, {"web": {"url": f"http://127.0.0.1:{port}/mcp"}})
    try:
        await box.tools()
        with pytest.raises(ToolError) as caught:
            await box.call(box.find("web__crash"), {})
        assert caught.value.reason.startswith(f"The MCP server 'web' at http://127.0.0.1:{port}/mcp ")
        assert caught.value.reason.endswith("stopped during the call of 'crash': the connection was lost.")
        assert proc.wait(30) == 3
        tools = await box.tools()
        assert "web__echo" not in {tool.name for tool in tools}
        assert "connection refused" in box.problems["web"]
    finally:
        await box.aclose()
        proc.kill()


# -- stdio servers: crash, hang, schema change, errors ------------------------------------------------------------


async def test_crash_mid_call_then_reconnect(tmp_path: Path) -> None:
    box = toolbox(tmp_path, {"crashy": stdio_server()})
    try:
        await box.tools()
        [first] = server_children()
        with pytest.raises(ToolError) as caught:
            await box.call(box.find("crashy__crash"), {})
        reason = caught.value.reason
        assert reason.startswith("The MCP server 'crashy' stopped during the call of 'crash'")
        assert "crashing on purpose for the test" in reason
        assert box.problems["crashy"] == reason
        await wait_until(lambda: not first.is_running(), "the crashed server to be gone")
        tools = await box.tools()
        assert box.problems == {}
        assert await box.call(box.find("crashy__echo"), {"text": "back"}) == ToolOutput("back")
        assert "crashy__echo" in {tool.name for tool in tools}
        [second] = server_children()
        assert second.pid != first.pid
        await box.tools()  # the listing is cached while the session lives: no new process
        assert [p.pid for p in server_children()] == [second.pid]
    finally:
        await box.aclose()


async def test_call_after_crash_reconnects(tmp_path: Path) -> None:
    box = toolbox(tmp_path, {"crashy": stdio_server()})
    try:
        await box.tools()
        with pytest.raises(ToolError):
            await box.call(box.find("crashy__crash"), {})
        assert await box.call(box.find("crashy__add"), {"a": 1, "b": 2}) == ToolOutput("3")
        assert "crashy" not in box.problems
    finally:
        await box.aclose()


async def test_a_call_that_never_answers_times_out(tmp_path: Path) -> None:
    box = toolbox(tmp_path, {"slow": stdio_server()})
    try:
        await box.tools()  # started within the default bound (a 1 s call_timeout bounds the start too: under load,
        box.call_timeout = 1  # starting Python and the mcp SDK took longer in a fresh clone)
        with pytest.raises(ToolError) as caught:
            await box.call(box.find("slow__hang"), {})
        assert caught.value.reason == "The tool slow__hang did not answer within 1 s."
        assert await box.call(box.find("slow__echo"), {"text": "still here"}) == ToolOutput("still here")
    finally:
        await box.aclose()


async def test_schema_change_changes_the_fingerprint(tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps({"version": 1}))
    box = toolbox(tmp_path, {"p": stdio_server("--schema-file", str(schema_file))})
    try:
        await box.tools()
        before = box.find("p__probe")
        assert set(before.input_schema["properties"]) == {"a"}
        schema_file.write_text(json.dumps({"version": 2}))
        await box.tools()
        assert box.find("p__probe") == before  # cached while the session lives
        with pytest.raises(ToolError):
            await box.call(box.find("p__crash"), {})
        await box.tools()
        after = box.find("p__probe")
        assert set(after.input_schema["properties"]) == {"a", "b"}
        assert after.name == before.name and after.fingerprint != before.fingerprint
        assert await box.call(after, {"a": 1, "b": "x"}) == ToolOutput("v2 1 x")
    finally:
        await box.aclose()


async def test_missing_command(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    box = toolbox(tmp_path, {"time": {"command": "mcp-server-tim", "env": {"SECRET_TOKEN": SECRET}}})
    tools = await box.tools()
    assert [tool.name for tool in tools] == ["calculator", "current_time"]
    assert box.problems == {"time": "The MCP server 'time' could not start: command 'mcp-server-tim' not found."}
    assert SECRET not in caplog.text
    await box.aclose()


async def test_disabled_server_is_skipped(tmp_path: Path) -> None:
    box = toolbox(tmp_path, {"off": stdio_server(disabled=True)})
    assert [tool.name for tool in await box.tools()] == ["calculator", "current_time"]
    assert box.problems == {} and server_children() == []
    await box.aclose()


async def test_secrets_never_appear(tmp_path: Path, caplog: pytest.LogCaptureFixture, http_server: int) -> None:
    caplog.set_level(logging.DEBUG)
    leaky = "import os, sys; print('token is', os.environ['SECRET_TOKEN'], file=sys.stderr); sys.exit(1)"
    box = toolbox(tmp_path, {
        "leaky": {"command": sys.executable, "args": ["-c", leaky], "env": {"SECRET_TOKEN": SECRET}},
        "gone": {"command": "no-such-command-here", "env": {"SECRET_TOKEN": SECRET}},
        "refused": {"url": f"http://127.0.0.1:{free_port()}/mcp", "headers": {"X-Api-Key": SECRET}},
        "good": stdio_server(env={"SECRET_TOKEN": SECRET}),
        "web": {"url": f"http://127.0.0.1:{http_server}/mcp", "headers": {"X-Api-Key": SECRET}},
    })  # fmt: skip
    reasons = []
    try:
        await box.tools()
        assert set(box.problems) == {"leaky", "gone", "refused"}
        assert "exited before answering (token is ***)" in box.problems["leaky"]
        # the env reaches the server (merged onto the SDK's minimal environment)
        assert await box.call(box.find("good__env"), {"name": "SECRET_TOKEN"}) == ToolOutput("set")
        assert await box.call(box.find("good__env"), {"name": "PATH"}) == ToolOutput("set")
        for name in ("good__crash", "web__hang"):
            box.call_timeout = 1
            with pytest.raises(ToolError) as caught:
                await box.call(box.find(name), {})
            reasons.append(caught.value.reason)
    finally:
        await box.aclose()
    assert len(reasons) == 2
    for text in [*box.problems.values(), *reasons, caplog.text]:
        assert SECRET not in text


# -- results ------------------------------------------------------------------------------------------------------


async def test_results_error_truncation_and_images(tmp_path: Path) -> None:
    box = toolbox(tmp_path, {"s": stdio_server()}, result_limit=1000)
    try:
        await box.tools()
        failed = await box.call(box.find("s__fail"), {})
        assert failed.is_error and "failure on purpose: it went wrong" in failed.text
        big = await box.call(box.find("s__big"), {"size": 50_000})
        assert big.truncated and not big.is_error
        assert big.text.startswith("x" * 1000 + "\n") and "49,000 more characters cut" in big.text
        small = await box.call(box.find("s__big"), {"size": 1000})
        assert small == ToolOutput("x" * 1000)
        image = await box.call(box.find("s__image"), {})
        assert image.text == "a caption\n[image: image/png, 1,008 bytes]"
    finally:
        await box.aclose()


# -- cancellation and shutdown ------------------------------------------------------------------------------------


async def test_cancelling_a_call_cancels_it_at_the_server(tmp_path: Path) -> None:
    marks = tmp_path / "marks.txt"
    marks.touch()
    box = toolbox(tmp_path, {"s": stdio_server("--mark-file", str(marks))})
    try:
        await box.tools()
        task = asyncio.create_task(box.call(box.find("s__sleep"), {"seconds": 600}))
        await wait_until(lambda: "started" in marks.read_text(), "the tool to start")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=30)
        assert done, "the call did not end after cancel()"
        assert task.cancelled()
        # the SDK sent notifications/cancelled: the server cancelled its handler
        await wait_until(lambda: "cancelled" in marks.read_text(), "the server to cancel the tool")
        assert "finished" not in marks.read_text()
        assert await box.call(box.find("s__echo"), {"text": "usable"}) == ToolOutput("usable")
    finally:
        await box.aclose()


async def test_aclose_ends_the_children(tmp_path: Path) -> None:
    box = toolbox(tmp_path, {
        "a": stdio_server(), "b": stdio_server(),
        "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
    })  # fmt: skip
    await box.tools()
    children = server_children()
    assert len(children) == 3
    await box.aclose()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert server_children() == []
    await box.aclose()  # twice is fine


PARLEY_STAND_IN = """
import asyncio, json, sys
import psutil
from chat.tools import Toolbox

async def main():
    box = Toolbox(mcp_config=sys.argv[1])
    await box.tools()
    assert not box.problems, box.problems
    print(json.dumps([p.pid for p in psutil.Process().children()]), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_children_end_when_parley_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed Parley runs no cleanup: its stdio servers end because they read EOF on stdin."""
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "a": stdio_server(),
        "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
    }}))  # fmt: skip
    parley = subprocess.Popen(
        [sys.executable, "-c", PARLEY_STAND_IN, str(config)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = await asyncio.to_thread(parley.stdout.readline)
        pids = json.loads(line)
        assert len(pids) == 2
        children = [psutil.Process(pid) for pid in pids]
        parley.kill()
        assert parley.wait(30) == -9
        gone, alive = await asyncio.to_thread(psutil.wait_procs, children, 30)
        for child in alive:
            child.kill()
        assert alive == [], f"still running after Parley was killed: {alive}"
    finally:
        parley.kill()
        parley.wait(30)
        parley.stdout.close()


async def test_concurrent_listings_and_calls_share_one_server(tmp_path: Path) -> None:
    box = toolbox(tmp_path, {"s": stdio_server()})
    try:
        first, second = await asyncio.gather(box.tools(), box.tools())
        assert first == second
        assert len(server_children()) == 1
        echo, add = box.find("s__echo"), box.find("s__add")
        outputs = await asyncio.gather(*(box.call(echo, {"text": str(i)}) for i in range(10)),
                                       *(box.call(add, {"a": i, "b": 1}) for i in range(10)))  # fmt: skip
        assert [o.text for o in outputs] == [str(i) for i in range(10)] + [str(i + 1) for i in range(10)]
    finally:
        await box.aclose()


async def test_a_server_that_never_answers_is_left_out(tmp_path: Path) -> None:
    mute = "import time; time.sleep(600)  # parley-test-mute"
    box = toolbox(tmp_path, {"mute": {"command": sys.executable, "args": ["-c", mute]}}, call_timeout=1)
    try:
        tools = await box.tools()
        assert [tool.name for tool in tools] == ["calculator", "current_time"]
        assert box.problems == {"mute": "The MCP server 'mute' did not answer within 1 s."}
    finally:
        await box.aclose()
    leftovers = [p for p in psutil.Process().children(recursive=True) if "parley-test-mute" in " ".join(p.cmdline())]
    assert leftovers == []
