"""Wires the layers together and runs the web server: settings → store → provider → engine → pages."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from nicegui import app, ui

from .api import register_api
from .attachments import FileLimits
from .auth import Accounts, session_secret
from .auth.http import register_login
from .config import Settings, check_exposure
from .engine import Engine, Limits
from .engine.pricing import PriceTable
from .engine.replicas import make_replicas
from .engine.tool_loop import ToolLimits, ToolLoop
from .provider import EMBEDDED_MODELS, EmbeddedModel, EmbeddedModelServer, Provider, ProviderError
from .provider.errors import redact
from .provider.tokens import CounterCache
from .store import Store
from .tools import Toolbox
from .ui.csp import ContentSecurityPolicy
from .ui.pages import register_pages
from .ui.theme import FAVICON
from .ui.welcome import StartPage

log = logging.getLogger("parley")

#: Preferred default among an upstream's models when none is configured.
PREFERRED_MODELS = ("gpt-4o-mini", "gpt-4.1-mini")


@dataclass
class Services:
    """Everything one running Parley holds.

    Attributes:
        embedded: the embedded model's server; None with an upstream.
        embedded_model: the embedded model served (its id, name, examples: ``EmbeddedModel``); None with an upstream.
    """

    settings: Settings
    store: Store
    provider: Provider
    engine: Engine
    embedded: EmbeddedModelServer | None
    embedded_model: EmbeddedModel | None
    accounts: Accounts


def provider_options(settings: Settings) -> dict[str, Any]:
    """The ``Provider`` arguments every upstream takes from the settings (timeouts, retries, limits)."""
    return {
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "idle_timeout": settings.idle_timeout,
        "retries": settings.retries,
        "retry_budget": settings.retry_budget,
        "max_tokens": settings.max_tokens,
        "context_window": settings.context_window,
        "text_only_models": settings.text_only_patterns,
    }


def embedded_provider(
    server: EmbeddedModelServer, *, max_tokens: int | None = None, context_window: int | None = None, **options: Any
) -> Provider:
    """The Provider of the embedded model: before each request it waits for ``server`` (starting it, or restarting
    it when its process died) and follows its port; it streams one answer at a time; a failure caused by the
    server's exit says so (``EmbeddedModelServer.explain``); requests are fitted to the server's ``n_ctx`` counted
    with the model's own vocabulary; without a system role (Gemma) the system prompt goes into the first user turn;
    it lists only the model's id and refuses any other model name (``EmbeddedModel.refuse``).

    Args:
        server: the embedded model's server.
        max_tokens: most tokens per answer (default: the model's ``max_tokens``).
        context_window: overrides the server's ``n_ctx``, tokens.
        options: more ``Provider`` arguments (timeouts, retries).
    """

    async def ready() -> None:
        await server.wait_ready()
        provider.base_url = server.base_url  # the port is chosen when the server (re)starts

    model = server.model
    provider = Provider(
        server.base_url,
        "none",
        max_concurrency=1,
        max_tokens=max_tokens or model.max_tokens,
        ready=ready,
        explain=server.explain,
        context_window=context_window or server.n_ctx,
        counters=CounterCache(embedded_model=model.id, embedded_loader=model.load_counter),
        system_in_first_turn=not model.system_role,
        served_models=[model.id],
        refuse=model.refuse,
        tools_supported=False,  # llama-cpp-python's server with these small models calls no tools
        images_supported=False,  # nor do they see images
        **options,
    )
    return provider


def build_services(settings: Settings) -> Services:
    """Create the store, provider (starting no process yet) and engine for ``settings``."""
    store = Store(settings.sqlalchemy_url)
    # tiktoken downloads its BPE file once: keep it with Parley's data rather than in a temporary folder
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(settings.data_dir / "tiktoken"))
    embedded = embedded_model = None
    if settings.uses_embedded_model:
        embedded_model = EMBEDDED_MODELS[settings.embedded_model]
        embedded = EmbeddedModelServer(
            embedded_model,
            n_ctx=settings.embedded_context,
            n_threads=settings.embedded_threads,
            log_file=settings.data_dir / "embedded-model.log",
        )
        provider = embedded_provider(embedded, **provider_options(settings))
    else:
        provider = Provider(
            settings.openai_base_url or "https://api.openai.com/v1",
            settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none",
            **provider_options(settings),
        )
    default_model = settings.model or (embedded_model.id if embedded_model else PREFERRED_MODELS[0])
    toolbox = None
    if settings.tools:
        try:
            toolbox = Toolbox(builtins=True, mcp_config=settings.mcp_config, call_timeout=settings.tool_timeout)
        except ValueError as error:  # a malformed --mcp-config: one line, as for any bad setting
            print(f"error: --mcp-config: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    limits = ToolLimits(settings.max_tool_steps, settings.max_tool_calls, settings.approval_timeout)
    try:
        prices = PriceTable.load(settings.prices, free=(embedded_model.id,) if embedded_model else ())
    except ValueError as error:  # a malformed --prices file: one line, as for any bad setting
        print(f"error: --prices: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    engine = Engine(
        store,
        provider,
        default_model=default_model,
        default_temperature=settings.temperature,
        checkpoint_interval=settings.checkpoint_interval,
        max_message_length=settings.max_message_length,
        limits=Limits(settings.messages_per_minute, settings.concurrent_answers, storage=settings.redis_url),
        tools=ToolLoop(toolbox, store, limits),
        prices=prices,
        files=FileLimits(
            max_bytes=int(settings.max_attachment_mb * 1024 * 1024), max_image_side=settings.max_image_side
        ),
        max_attachments=settings.max_attachments,
    )
    accounts = Accounts(
        store,
        login_attempts_per_ip=settings.login_attempts_per_ip,
        login_attempts_per_name=settings.login_attempts_per_name,
        enabled=False,  # until the schema is migrated: see ``setup``
        storage=settings.redis_url,
    )
    if settings.redis_url:
        engine.replicas = make_replicas(engine, settings.redis_url, lease_ttl=settings.replica_lease)
    return Services(settings, store, provider, engine, embedded, embedded_model, accounts)


async def choose_default_model(services: Services) -> None:
    """With an upstream and no ``--model``: take a preferred model it serves, else its first one."""
    try:
        models = await services.provider.models()
    except ProviderError as error:
        log.warning("could not list the upstream's models (%s); default model stays %s", error.reason,
                    services.engine.default_model)  # fmt: skip
        return
    if models and services.engine.default_model not in models:
        preferred = [m for m in PREFERRED_MODELS if m in models]
        services.engine.default_model = (preferred or models)[0]
    log.info("default model: %s", services.engine.default_model)


def start_page(services: Services) -> StartPage:
    """What the start page says: the embedded model's name and its example prompts, or the upstream's default model."""
    engine = services.engine
    model = services.embedded_model
    if model is None:
        return StartPage(lambda: engine.default_model)
    return StartPage(lambda: engine.default_model, built_in=model.name, about=model.about, examples=model.examples)


def setup(settings: Settings) -> Services:
    """Build the services, register the pages and the start-up/shut-down hooks on NiceGUI's app."""
    services = build_services(settings)
    background: list[asyncio.Task[None]] = []

    services.store.migrate()
    services.accounts.enabled = services.store.count_users() > 0
    check_exposure(settings, services.accounts.enabled)
    services.engine.recover()

    async def startup() -> None:
        if services.engine.replicas is not None:
            await services.engine.replicas.start()
        if services.embedded is not None:
            services.embedded.start()
        elif settings.model is None:
            background.append(asyncio.get_running_loop().create_task(choose_default_model(services)))

    async def shutdown() -> None:
        for task in background:
            task.cancel()
        await services.engine.shutdown()
        if services.engine.replicas is not None:
            await services.engine.replicas.close()  # after the answers' ends are written
        await asyncio.sleep(0)  # let the UI tasks the finished answers woke run before NiceGUI cancels every task
        await services.provider.close()
        if services.engine.tools is not None and services.engine.tools.toolbox is not None:
            await services.engine.tools.toolbox.aclose()
        if services.embedded is not None:
            await services.embedded.stop()
        services.store.close()

    app.on_startup(startup)
    app.on_shutdown(shutdown)
    app.add_middleware(ContentSecurityPolicy)
    register_pages(services.engine, services.store, services.provider.models, services.accounts,
                   start=start_page(services))  # fmt: skip
    # after the pages: NiceGUI's @ui.page("/login") removes every route at that path, POST /login included
    register_login(app, services.accounts)
    register_api(app, services.engine, services.store, services.accounts)
    return services


class RedactingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with no part of the upstream's API key (``errors.redact``): an upstream's
    error message quoted by the openai SDK's exceptions may carry a masked copy of it."""

    def __init__(self, fmt: str, api_key: str | None) -> None:
        super().__init__(fmt)
        self.api_key = api_key

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.api_key)


def run(settings: Settings) -> None:
    """Serve Parley until interrupted (blocks).

    Exits:
        with status 2 and one line on standard error when ``host`` is not a loopback address, no user exists and
        ``--insecure-expose-without-login`` is not given (``check_exposure``).
    """
    if not settings.on_loopback:  # refuse before logging is set up, so the refusal is the one line printed
        store = Store(settings.sqlalchemy_url)
        store.migrate()
        check_exposure(settings, store.count_users() > 0)
        store.close()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", api_key))
    services = setup(settings)
    embedded_model = services.embedded_model
    where = f"the embedded model {embedded_model.name}" if embedded_model else settings.openai_base_url or "OpenAI"
    mode = "accounts: a login is required" if services.accounts.enabled else "no accounts: no login"
    log.info("Parley on http://%s:%s, answering with %s (%s)", settings.host, settings.port, where, mode)
    secret = session_secret(settings.data_dir, settings.storage_secret.get_secret_value() if settings.storage_secret
                            else None)  # fmt: skip
    ui.run(
        host=settings.host,
        port=settings.port,
        title="Parley",
        favicon=FAVICON,
        reload=False,
        show=False,
        storage_secret=secret,
        session_middleware_kwargs={"https_only": settings.secure_cookies, "same_site": "lax"},
        show_welcome_message=False,
        fastapi_docs={  # /docs (Swagger UI), /redoc and /openapi.json: the /api and /v1 routes, not the pages
            "title": "Parley API",
            "version": version("parley"),
            "description": "Conversations over REST, answers as resumable server-sent events (`/api`), and an "
            "OpenAI-compatible endpoint (`/v1`) served by the same engine as the pages.",
        },
    )
