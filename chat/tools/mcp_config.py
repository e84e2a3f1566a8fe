"""The MCP config file: ``{"mcpServers": {name: server}}``, the shape Claude Desktop and Cursor read.

A server is either stdio (``command``, ``args``, ``env``, ``cwd``) or streamable HTTP (``url``, ``headers``), with
optional ``tools`` (per-tool `Policy`, ``"*"`` for the rest; default ``ask``) and ``disabled``. An optional
``type`` (``stdio``, ``http``, ``streamable-http``, ``streamableHttp``) is checked against the fields given. Other
keys are ignored with a log line (other clients add their own). Env and header values are secrets: no message
here or elsewhere shows them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .base import Policy

logger = logging.getLogger(__name__)

_KNOWN_KEYS = {"command", "args", "env", "cwd", "url", "headers", "tools", "disabled", "type"}
_HTTP_TYPES = {"http", "streamable-http", "streamableHttp", "streamable_http"}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One configured MCP server.

    Attributes:
        name: its key in ``mcpServers``.
        command, args, env, cwd: a stdio server (``command`` is set); ``env`` values are secret.
        url, headers: a streamable-HTTP server (``url`` is set); ``headers`` values are secret.
        policies: tool name (or ``"*"``) -> `Policy`.
        disabled: skip this server.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    policies: dict[str, Policy] = field(default_factory=dict)
    disabled: bool = False

    def policy_for(self, tool: str) -> Policy:
        """The policy of tool `tool` (its own name at the server): its entry, else ``"*"``, else ``ask``."""
        return self.policies.get(tool) or self.policies.get("*") or Policy.ask

    @property
    def secrets(self) -> list[str]:
        """Every env and header value, and a URL's password: strings no message may contain."""
        values = [*self.env.values(), *self.headers.values()]
        if self.url and (password := urlsplit(self.url).password):
            values.append(password)
        return [v for v in values if v]

    @property
    def display_url(self) -> str | None:
        """The URL fit to show: a password is replaced by ``***`` and a query string by ``?…``."""
        return redact_url(self.url) if self.url else None


def redact_url(url: str) -> str:
    """`url` without its password (``user:***@host``) or query string values (``?…``)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = netloc.rpartition("@")[2]
            netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
    except ValueError:
        return "(an invalid URL)"


def _strings(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{what} must be an object of string values")
    return dict(value)


def _server(name: str, raw: object, where: str) -> ServerConfig:
    prefix = f"{where}: MCP server {name!r}"
    if not isinstance(raw, dict):
        raise ValueError(f"{prefix} must be an object with a 'command' or a 'url'")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        logger.warning("%s: ignoring the keys %s", prefix, ", ".join(repr(k) for k in unknown))
    command, url = raw.get("command"), raw.get("url")
    if (command is None) == (url is None):
        raise ValueError(f"{prefix} needs exactly one of 'command' (stdio) or 'url' (streamable HTTP)")
    kind = raw.get("type")
    if kind is not None:
        if kind == "sse":
            raise ValueError(f"{prefix}: the SSE transport is not supported, only stdio and streamable HTTP")
        if kind == "stdio" and command is None or kind in _HTTP_TYPES and url is None:
            raise ValueError(f"{prefix}: 'type' {kind!r} does not match its 'command'/'url'")
        if kind != "stdio" and kind not in _HTTP_TYPES:
            raise ValueError(f"{prefix}: unknown 'type' {kind!r} (stdio or http)")
    disabled = raw.get("disabled", False)
    if not isinstance(disabled, bool):
        raise ValueError(f"{prefix}: 'disabled' must be true or false")
    policies: dict[str, Policy] = {}
    tools = raw.get("tools") or {}
    if not isinstance(tools, dict):
        raise ValueError(f'{prefix}: \'tools\' must be an object of tool name -> "auto", "ask" or "deny"')
    for tool, policy in tools.items():
        if policy not in set(Policy):
            raise ValueError(f'{prefix}: the policy of tool {tool!r} must be "auto", "ask" or "deny"')
        policies[str(tool)] = Policy(policy)
    try:
        env = _strings(raw.get("env"), "'env'")
        headers = _strings(raw.get("headers"), "'headers'")
    except ValueError as exc:
        raise ValueError(f"{prefix}: {exc}") from None
    if command is not None:
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"{prefix}: 'command' must be a non-empty string")
        args = raw.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"{prefix}: 'args' must be a list of strings")
        cwd = raw.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ValueError(f"{prefix}: 'cwd' must be a string")
        if headers:
            raise ValueError(f"{prefix}: 'headers' only apply to a 'url' server")
        return ServerConfig(name, command=command, args=tuple(args), env=env, cwd=cwd, policies=policies,
                            disabled=disabled)  # fmt: skip
    if not isinstance(url, str):
        raise ValueError(f"{prefix}: 'url' must be a string")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{prefix}: 'url' is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{prefix}: 'url' must be an http:// or https:// URL, not {redact_url(url)!r}")
    if env or raw.get("args") or raw.get("cwd"):
        raise ValueError(f"{prefix}: 'env', 'args' and 'cwd' only apply to a 'command' server")
    return ServerConfig(name, url=url, headers=headers, policies=policies, disabled=disabled)


def load_config(path: Path) -> list[ServerConfig]:
    """Read and validate the MCP config file at `path`.

    Returns:
        the servers in file order, disabled ones included (``disabled=True``).
    Raises:
        ValueError: the file cannot be read, is not JSON, or does not have the shape above; the message names the
            file and the server, never an env or header value.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{where}: cannot read the MCP config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: the MCP config file is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: the MCP config file is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise ValueError(f'{where}: the MCP config file must be an object with "mcpServers": {{name: server}}')
    servers = []
    for name, raw in data["mcpServers"].items():
        if not name.strip():
            raise ValueError(f"{where}: an MCP server has an empty name")
        servers.append(_server(name, raw, where))
    return servers
