"""Parley's settings: one typed object, read once at start-up and passed down.

Sources, highest priority first: command-line flags (``--port 9000``), environment variables
(``PARLEY_PORT=9000``; the upstream and database use the names their own tools read:
``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``DATABASE_URL``), a ``.env`` file in the working directory,
then the defaults below. Read by pydantic-settings.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Literal, get_args

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Settings read from the variables their own tools use, not PARLEY_*.
ENV_NAMES = {"database_url": "DATABASE_URL", "openai_api_key": "OPENAI_API_KEY", "openai_base_url": "OPENAI_BASE_URL"}

#: The ids of the embedded models Parley can serve itself; ``provider/embedded_models.py`` describes each.
EmbeddedModelId = Literal["smollm2-135m-instruct", "gemma-3-270m"]

#: The embedded model served when ``--embedded-model`` is not given.
DEFAULT_EMBEDDED_MODEL: EmbeddedModelId = "smollm2-135m-instruct"


class Settings(BaseSettings):
    """Every setting Parley reads. Units are in the field names' descriptions."""

    model_config = SettingsConfigDict(
        env_prefix="PARLEY_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        cli_kebab_case=True,
        cli_prog_name="app.py",
        cli_implicit_flags=True,
    )

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port to listen on.")
    data_dir: Path = Field(Path("data"), description="Folder for the database and other state.")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("database_url", "DATABASE_URL"),
        description="SQLAlchemy URL of the database (default: sqlite:///<data-dir>/parley.db).",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("openai_api_key", "OPENAI_API_KEY"),
        description="API key of an OpenAI-compatible upstream. With it (or a base URL), the embedded model is off.",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("openai_base_url", "OPENAI_BASE_URL"),
        description="Base URL of an OpenAI-compatible upstream, e.g. http://127.0.0.1:11434/v1 for Ollama.",
    )
    # after the upstream's settings and before ``model``, whose check reads them
    embedded_model: EmbeddedModelId = Field(
        DEFAULT_EMBEDDED_MODEL,
        description="The model Parley serves itself when no upstream is set: smollm2-135m-instruct (instruction-"
        "tuned, SmolLM2 135M) or gemma-3-270m (a base model, Gemma 3 270M).",
    )
    model: str | None = Field(
        None,
        description="Default model for new conversations (default: the upstream's preferred or first model; "
        "without an upstream, the embedded model, the only one it may be).",
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Default temperature (0 to 2).")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect to the upstream.")
    read_timeout: float = Field(
        120.0,
        gt=0,
        description="Seconds to wait for the upstream's first byte, and for the first text of an answer.",
    )
    idle_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a streaming answer may go without a chunk before it is given up as stalled.",
    )
    retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of a request the upstream refused as busy (429, 5xx) or could not take, before any text.",
    )
    retry_budget: float = Field(
        30.0,
        ge=0,
        description="Most seconds spent waiting between retries of one request (a longer Retry-After is not waited).",
    )
    max_message_length: int = Field(100_000, ge=1, description="Longest message a user may send, in characters.")
    context_window: int | None = Field(
        None,
        ge=256,
        description="The model's context window in tokens (default: known for the embedded and OpenAI models, "
        "else learned from the upstream's first refusal).",
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="Most tokens per answer (default: the embedded model's, 1024 for SmolLM2 and 512 for Gemma; "
        "else the upstream's limit).",
    )
    checkpoint_interval: float = Field(
        0.5,
        gt=0,
        description="Seconds between two saves of a streaming answer's partial text.",
    )
    embedded_context: int | None = Field(
        None, ge=512, description="Context window of the embedded model, in tokens (default: the model's, 8192)."
    )
    embedded_threads: int | None = Field(None, ge=1, description="CPU threads for the embedded model.")
    insecure_expose_without_login: bool = Field(
        False,
        description="Listen on a non-loopback --host although no user exists (so no login is asked): anyone who "
        "reaches the port reads every conversation and spends the upstream's API key.",
    )
    storage_secret: SecretStr | None = Field(
        None,
        description="Secret that signs the browser's session cookie, which holds the login (default: generated "
        "once into <data-dir>/session-secret).",
    )
    secure_cookies: bool = Field(
        False,
        description="Send the session cookie over HTTPS only: set it when a reverse proxy serves Parley over HTTPS.",
    )
    messages_per_minute: int | None = Field(
        20,
        ge=1,
        description="Most messages (sends and regenerations) a user may send per minute, with accounts; "
        "over it: 429 with Retry-After.",
    )
    concurrent_answers: int | None = Field(
        2, ge=1, description="Most answers of one user generating at once, with accounts."
    )
    tools: bool = Field(
        True,
        description="Offer the built-in tools (calculator, current_time) and the MCP servers' tools to upstream models "
        "that take tools (the embedded model takes none).",
    )
    mcp_config: Path | None = Field(
        None,
        description='JSON file of MCP servers, in the shape other MCP clients use: {"mcpServers": {"time": '
        '{"command": "mcp-server-time"}, "docs": {"url": "http://127.0.0.1:9000/mcp"}}}.',
    )
    tool_timeout: float = Field(
        120.0, gt=0, description="Seconds one tool call may run before it fails (MCP servers may need minutes)."
    )
    approval_timeout: float = Field(
        600.0, gt=0, description="Seconds a tool call waits for the user's approval before it expires."
    )
    max_tool_steps: int = Field(
        8, ge=1, le=100, description="Most rounds of tool calls in one answer (the model asks, tools answer)."
    )
    max_tool_calls: int = Field(32, ge=1, le=1000, description="Most tool calls in one answer.")
    prices: Path | None = Field(
        None,
        description="JSON file of model prices in US dollars per million tokens, on top of the built-in OpenAI ones: "
        '{"my-model": {"input": 0.5, "output": 1.5}}.',
    )
    max_attachment_mb: float = Field(
        20.0, gt=0, le=1024, description="Largest file a user may attach, in megabytes (as uploaded)."
    )
    max_attachments: int = Field(10, ge=1, le=100, description="Most files attached to one message.")
    max_image_side: int = Field(
        2048, ge=64, le=8192, description="Attached images are scaled down to this longest side, in pixels."
    )
    text_only_models: str = Field(
        "",
        description="Comma-separated patterns (fnmatch: gpt-3.5*, llama3*) of upstream models that take no images: "
        "an image for them is refused before anything is sent. Others take images until their server refuses them "
        "(remembered); the embedded model takes none.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis for running several Parley replicas on one PostgreSQL: answers followed, resumed and "
        "stopped from any replica, limits counted across them (redis://host:6379/0). None: one process.",
    )
    replica_lease: float = Field(
        5.0,
        gt=0.2,
        le=120,
        description="With --redis-url: seconds after which a silent replica's answers are "
        "marked interrupted by the others.",
    )
    login_attempts_per_ip: int = Field(20, ge=1, description="Failed logins allowed per client address per minute.")
    login_attempts_per_name: int = Field(5, ge=1, description="Failed logins allowed per user name per minute.")

    @property
    def text_only_patterns(self) -> list[str]:
        """``text_only_models`` as a list of patterns."""
        return [pattern.strip() for pattern in self.text_only_models.split(",") if pattern.strip()]

    @field_validator("openai_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value or None

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Without an upstream the default model can only be the embedded model: its server answers any model name
        with its one model, so Parley refuses the others (see ``provider/embedded_models.py``)."""
        embedded = info.data.get("embedded_model")
        upstream = info.data.get("openai_api_key") is not None or info.data.get("openai_base_url") is not None
        if not value or upstream or embedded is None or value == embedded:
            return value
        if value in get_args(EmbeddedModelId):
            raise ValueError(f"Parley's embedded model is {embedded}; to serve {value}, use --embedded-model {value}")
        raise ValueError(
            f"without an upstream Parley serves only its embedded model, {embedded}: leave --model out, or set "
            f"OPENAI_BASE_URL to an upstream that serves {value}"
        )

    @property
    def on_loopback(self) -> bool:
        """True when ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``: only this machine sees it."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    @property
    def uses_embedded_model(self) -> bool:
        """True when no upstream is configured, so Parley serves its packaged model itself."""
        return self.openai_api_key is None and self.openai_base_url is None

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL to open: ``database_url``, or an SQLite file in ``data_dir``."""
        return self.database_url or f"sqlite:///{self.data_dir / 'parley.db'}"


def load_settings(argv: list[str] | None = None, prog: str = "app.py") -> Settings:
    """Read the settings from flags, environment and ``.env``.

    Args:
        argv: command-line arguments (without the program name); ``None`` reads no flags.
        prog: the program's name in ``--help`` (``app.py``, or ``parley`` for the installed command).

    Returns:
        The settings.

    Exits:
        with status 2 and one line per bad setting on standard error (no traceback) when a value is invalid.
    """
    try:
        settings = Settings() if argv is None else Settings(_cli_parse_args=argv, _cli_prog_name=prog)
    except ValidationError as error:
        for problem in error.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "settings"
            source = ENV_NAMES.get(name, f"PARLEY_{name.upper()}")
            flag = "--" + name.replace("_", "-")
            value = problem.get("input")
            print(f"parley: invalid setting {name} ({flag} / {source}) = {value!r}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def check_exposure(settings: Settings, accounts_enabled: bool) -> None:
    """Refuse to listen on a non-loopback ``host`` without accounts (no user in the database) unless
    ``insecure_expose_without_login`` is set.

    Exits:
        with status 2 and one line on standard error.
    """
    if not settings.on_loopback and not accounts_enabled and not settings.insecure_expose_without_login:
        print(
            f"parley: refusing to listen on {settings.host} without accounts: anyone who reaches it would read every "
            "conversation and spend the API key. Add a user first (python app.py user add NAME --admin), listen on "
            "127.0.0.1, or pass --insecure-expose-without-login.",
            file=sys.stderr,
        )
        raise SystemExit(2)
