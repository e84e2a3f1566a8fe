"""The built-in tools, argument parsing, tool naming and fingerprints, and MCP config validation (no servers run)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from chat.tools import InvalidArguments, Policy, Tool, Toolbox, ToolError, ToolOutput, UnknownTool
from chat.tools.base import NAME_PATTERN, tool_name, truncate
from chat.tools.builtin import CALCULATOR, CURRENT_TIME, calculate, current_time
from chat.tools.mcp_config import load_config, redact_url


def calc(expression: str) -> ToolOutput:
    return calculate({"expression": expression})


# -- calculator ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2", "3"),
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("-2 ** 2", "-4"),
        ("2 ** -1", "0.5"),
        ("7 // 2", "3"),
        ("7 % 3", "1"),
        ("7 / 2", "3.5"),
        ("0.1 + 0.2", "0.3"),
        ("2 ** 100", str(2**100)),
        ("sqrt(16)", "4"),
        ("abs(-5) + round(2.567, 2)", "7.57"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("log(e)", "1"),
        ("log(8, 2)", "3"),
        ("log10(1000)", "3"),
        ("round(sin(pi / 6), 4)", "0.5"),
        ("cos(0) + tan(0) + exp(0)", "2"),
        ("  10 - -3  ", "13"),
    ],
)
def test_calculator_evaluates(expression: str, value: str) -> None:
    assert calc(expression) == ToolOutput(value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("2 ** 100000", "exponent"),
        ("(10 ** 101) ** 2", "too large"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("__import__('os')", "Unknown function"),
        ("().__class__", "not"),
        ("(1).__class__", "not allowed"),
        ("os.system('true')", "Unknown name 'os'"),
        ("x + 1", "Unknown name 'x'"),
        ("open('/etc/passwd')", "Unknown function 'open'"),
        ("2 +", "not valid arithmetic"),
        ("sqrt(-1)", "math domain error"),
        ("'abc'", "number"),
        ("1 < 2", "not"),
        ("[1, 2]", "not"),
        ("lambda: 1", "not"),
        ("1e308 * 10", "too large"),
        ("", "missing"),
    ],
)
def test_calculator_refuses(expression: str, reason: str) -> None:
    output = calc(expression)
    assert output.is_error, output
    assert reason in output.text


def test_calculator_refuses_a_long_expression() -> None:
    output = calc("1+" * 250 + "1")
    assert output.is_error and "at most 500" in output.text
    assert calc("1+" * 249 + "1") == ToolOutput("250")


def test_calculator_refuses_a_missing_expression() -> None:
    assert calculate({}).is_error


# -- current_time -------------------------------------------------------------------------------------------------


def test_current_time_in_a_zone() -> None:
    output = current_time({"timezone": "Asia/Kolkata"})
    assert not output.is_error
    match = re.fullmatch(r"(\S+) \(Asia/Kolkata, (\w+)\)", output.text)
    assert match, output.text
    moment = datetime.fromisoformat(match[1])
    assert moment.utcoffset().total_seconds() == 5.5 * 3600
    assert match[2] == moment.strftime("%A")


def test_current_time_defaults_to_utc() -> None:
    output = current_time({})
    assert not output.is_error
    assert output.text.endswith(" (UTC, " + datetime.fromisoformat(output.text.split()[0]).strftime("%A") + ")")
    assert datetime.fromisoformat(output.text.split()[0]).utcoffset().total_seconds() == 0


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "Europe/"])
def test_current_time_unknown_zone(zone: str) -> None:
    output = current_time({"timezone": zone})
    assert output.is_error
    assert "Unknown time zone" in output.text


async def test_builtins_run_through_the_toolbox() -> None:
    box = Toolbox()
    tools = await box.tools()
    assert [t.name for t in tools] == ["calculator", "current_time"]
    assert all(t.policy is Policy.auto and t.source == "builtin" and t.original_name == t.name for t in tools)
    assert box.problems == {}
    calculator = box.find("calculator")
    assert calculator is CALCULATOR
    assert await box.call(calculator, box.parse_arguments(calculator, '{"expression": "6 * 7"}')) == ToolOutput("42")
    output = await box.call(calculator, {"expression": "1/0"})
    assert output.is_error
    assert box.find("nope") is None
    await box.aclose()


async def test_toolbox_without_builtins_and_unknown_tool() -> None:
    box = Toolbox(builtins=False)
    assert await box.tools() == []
    with pytest.raises(UnknownTool):
        await box.call(CALCULATOR, {"expression": "1"})
    ghost = Tool("ghost__x", "", {"type": "object"}, "ghost", Policy.auto, "x")
    with pytest.raises(UnknownTool) as caught:
        await Toolbox().call(ghost, {})
    assert isinstance(caught.value, ToolError) and "ghost" in caught.value.reason


async def test_a_denied_tool_is_not_run() -> None:
    denied = Tool("calculator", CALCULATOR.description, CALCULATOR.input_schema, "builtin", Policy.deny, "calculator")
    with pytest.raises(ToolError, match="deny"):
        await Toolbox().call(denied, {"expression": "1"})


async def test_a_long_result_is_truncated() -> None:
    box = Toolbox(result_limit=10)
    output = await box.call(CALCULATOR, {"expression": "2 ** 100"})
    assert output.truncated
    assert output.text.startswith(str(2**100)[:10] + "\n")
    assert "21 more characters cut" in output.text


def test_truncate() -> None:
    assert truncate("abc", 3) == ("abc", False)
    text, cut = truncate("abcdef", 2)
    assert cut and text.startswith("ab\n") and "4 more characters" in text


# -- parse_arguments ----------------------------------------------------------------------------------------------


def test_parse_arguments_accepts_valid_arguments() -> None:
    box = Toolbox()
    assert box.parse_arguments(CALCULATOR, '{"expression": "1+1"}') == {"expression": "1+1"}
    assert box.parse_arguments(CURRENT_TIME, "") == {}
    assert box.parse_arguments(CURRENT_TIME, "  \n ") == {}
    assert box.parse_arguments(CURRENT_TIME, '{"timezone": "UTC"}') == {"timezone": "UTC"}


def test_parse_arguments_broken_json() -> None:
    with pytest.raises(InvalidArguments) as caught:
        Toolbox().parse_arguments(CALCULATOR, '{"expression" "1"}')
    assert caught.value.reason == "arguments are not valid JSON: Expecting ':' delimiter: line 1 column 15"


@pytest.mark.parametrize(("text", "kind"), [("[1]", "an array"), ('"1+1"', "a string"), ("3", "a number"),
                                            ("null", "null")])  # fmt: skip
def test_parse_arguments_not_an_object(text: str, kind: str) -> None:
    with pytest.raises(InvalidArguments, match=f"arguments must be a JSON object, not {kind}"):
        Toolbox().parse_arguments(CALCULATOR, text)


def test_parse_arguments_schema_mismatch() -> None:
    box = Toolbox()
    with pytest.raises(InvalidArguments) as caught:
        box.parse_arguments(CALCULATOR, "{}")
    assert caught.value.reason == "arguments do not match the input schema: 'expression' is a required property"
    with pytest.raises(InvalidArguments, match="5 is not of type 'string'"):
        box.parse_arguments(CALCULATOR, '{"expression": 5}')
    with pytest.raises(InvalidArguments, match="required property"):
        box.parse_arguments(CALCULATOR, "")


def test_parse_arguments_extra_properties() -> None:
    with pytest.raises(InvalidArguments, match=r"Additional properties are not allowed \('x' was unexpected\)"):
        Toolbox().parse_arguments(CURRENT_TIME, '{"timezone": "UTC", "x": 1}')


def test_parse_arguments_nested_path_and_other_drafts() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
    }
    tool = Tool("t", "d", schema, "s", Policy.ask, "t")
    with pytest.raises(InvalidArguments, match=r"'a' is not of type 'integer' \(at 'items/1'\)"):
        Toolbox().parse_arguments(tool, '{"items": [1, "a"]}')


def test_parse_arguments_with_an_invalid_schema_checks_only_the_object() -> None:
    tool = Tool("t", "d", {"type": "object", "properties": {"a": {"type": 12}}}, "s", Policy.ask, "t")
    box = Toolbox()
    assert box.parse_arguments(tool, '{"a": "anything"}') == {"a": "anything"}
    with pytest.raises(InvalidArguments, match="JSON object"):
        box.parse_arguments(tool, "[]")


def test_parse_arguments_revalidates_a_changed_schema() -> None:
    box = Toolbox()
    first = Tool("t", "d", {"type": "object", "properties": {"a": {"type": "string"}}}, "s", Policy.ask, "t")
    second = Tool("t", "d", {"type": "object", "properties": {"a": {"type": "integer"}}}, "s", Policy.ask, "t")
    assert box.parse_arguments(first, '{"a": "x"}') == {"a": "x"}
    with pytest.raises(InvalidArguments):
        box.parse_arguments(second, '{"a": "x"}')


# -- names, fingerprints, openai_tool -----------------------------------------------------------------------------


def test_tool_names_are_sanitized_and_unique() -> None:
    taken: set[str] = {"calculator"}
    assert tool_name("time", "get_current_time", taken) == "time__get_current_time"
    assert tool_name("my server", "read.file", taken) == "my_server__read_file"
    # the same sanitized name from another (server, tool) pair gets a hash suffix
    other = tool_name("my.server", "read file", taken)
    assert other != "my_server__read_file" and other.startswith("my_server__read_file_")
    long = tool_name("s" * 40, "t" * 40, taken)
    assert len(long) == 64 and long.startswith("s" * 40 + "__")
    longer = tool_name("s" * 40, "t" * 41, taken)
    assert len(longer) == 64 and longer != long
    unicode = tool_name("café", "naïve/tool", taken)
    assert unicode == "caf___na_ve_tool"
    assert all(NAME_PATTERN.match(name) for name in taken)
    assert len(taken) == 7


def test_fingerprint_follows_description_and_schema() -> None:
    base = Tool("a", "Adds.", {"type": "object", "properties": {"x": {"type": "integer"}}}, "s", Policy.ask, "a")
    same = Tool("b", "Adds.", {"properties": {"x": {"type": "integer"}}, "type": "object"}, "o", Policy.auto, "b")
    assert base.fingerprint == same.fingerprint  # key order, name, source and policy do not count
    assert re.fullmatch(r"[0-9a-f]{64}", base.fingerprint)
    described = Tool("a", "Adds two.", base.input_schema, "s", Policy.ask, "a")
    reshaped = Tool("a", "Adds.", {"type": "object", "properties": {"x": {"type": "number"}}}, "s", Policy.ask, "a")
    assert len({base.fingerprint, described.fingerprint, reshaped.fingerprint}) == 3


def test_openai_tool_shape() -> None:
    assert CALCULATOR.openai_tool() == {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": CALCULATOR.description,
            "parameters": CALCULATOR.input_schema,
        },
    }
    assert CALCULATOR.input_schema["additionalProperties"] is False
    assert CURRENT_TIME.input_schema["additionalProperties"] is False


# -- MCP config ---------------------------------------------------------------------------------------------------


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_config_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, {"mcpServers": {
        "time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"], "env": {"TZ": "UTC"}},
        "docs": {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer x"}, "type": "http"},
        "fs": {"command": "fs-server", "tools": {"read_file": "auto", "*": "deny"}, "disabled": True, "note": "hi"},
    }})  # fmt: skip
    time, docs, fs = load_config(path)
    assert (time.command, time.args, time.env, time.policy_for("x")) == (
        "mcp-server-time", ("--local-timezone", "UTC"), {"TZ": "UTC"}, Policy.ask)  # fmt: skip
    assert (docs.url, docs.headers) == ("http://127.0.0.1:9000/mcp", {"Authorization": "Bearer x"})
    assert fs.disabled and fs.policy_for("read_file") is Policy.auto and fs.policy_for("write") is Policy.deny
    assert "Bearer" not in repr(docs)
    assert "'TZ'" not in repr(time)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not valid JSON"),
        ([], '"mcpServers"'),
        ({"servers": {}}, '"mcpServers"'),
        ({"mcpServers": {"a": []}}, "MCP server 'a' must be an object"),
        ({"mcpServers": {"a": {}}}, "exactly one of 'command'"),
        ({"mcpServers": {"a": {"command": "x", "url": "http://h/"}}}, "exactly one of 'command'"),
        ({"mcpServers": {"a": {"command": ""}}}, "'command' must be a non-empty string"),
        ({"mcpServers": {"a": {"command": "x", "args": "y"}}}, "'args' must be a list of strings"),
        ({"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}, "'env' must be an object of string values"),
        ({"mcpServers": {"a": {"command": "x", "tools": {"t": "always"}}}}, "policy of tool 't'"),
        ({"mcpServers": {"a": {"command": "x", "disabled": "no"}}}, "'disabled' must be true or false"),
        ({"mcpServers": {"a": {"url": "ftp://h/x"}}}, "http:// or https://"),
        ({"mcpServers": {"a": {"url": "http://h:99999/"}}}, "not a valid URL"),
        ({"mcpServers": {"a": {"url": "http://h/", "type": "sse"}}}, "SSE transport is not supported"),
        ({"mcpServers": {"a": {"url": "http://h/", "env": {"K": "v"}}}}, "only apply to a 'command' server"),
        ({"mcpServers": {"a": {"url": "http://h/", "headers": {"H": 5}}}}, "'headers' must be an object"),
    ],
)
def test_config_errors(tmp_path: Path, data: object, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ValueError) as caught:
        Toolbox(mcp_config=path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the MCP config file"):
        Toolbox(mcp_config=tmp_path / "absent.json")


def test_config_errors_never_show_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, {"mcpServers": {"a": {"url": "http://u:hunter22@h/x?key=s3cr3t", "type": "stdio",
                                                  "headers": {"X": "s3cr3t-value"}}}})  # fmt: skip
    with pytest.raises(ValueError) as caught:
        Toolbox(mcp_config=path)
    assert "hunter22" not in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_redact_url() -> None:
    assert redact_url("https://user:pw@example.com:8443/mcp?token=abc") == "https://user:***@example.com:8443/mcp?…"
    assert redact_url("http://127.0.0.1:9000/mcp") == "http://127.0.0.1:9000/mcp"
