"""The pages: ``/`` (a new conversation), ``/c/{id}`` (a stored one, live answers included), ``/login``,
``/account`` (password, API tokens) and ``/admin`` (users, their models, usage).

In team mode (``Accounts.enabled``) every page but ``/login`` needs a login: a request without one is redirected to
``/login?next=<its path>``. Each page passes the signed-in ``Account`` to everything it builds, which makes every
engine call with ``account=`` and every store read with ``owner=account.owner``: another user's conversation is
"not found", like a deleted one.
"""

from __future__ import annotations

import asyncio

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..auth import Accounts
from ..engine import DEFAULT_TITLE, LOCAL, Account, Change, Engine
from ..store import NotFound, Store
from .access import Guard, always_signed_in, login_redirect, page_account, session_guard, user_menu
from .account_page import account_page
from .admin_page import admin_page
from .chat_view import ChatView
from .conversation_list import ConversationList
from .login_page import login_page
from .notices import show_error
from .settings_dialog import open_settings
from .share_dialog import open_share_dialog
from .share_page import register_share_page
from .shortcuts import SHORTCUTS, show_shortcuts
from .theme import ThemeToggle, install_theme
from .transfer_dialog import export_all_link
from .tree_panel import TreePanel
from .welcome import StartPage


def register_pages(
    engine: Engine, store: Store, list_models: object, accounts: Accounts, *, start: StartPage | None = None
) -> None:
    """Declare Parley's pages on NiceGUI's app, with their shared stylesheet and theme (``theme.install_theme``).

    Args:
        engine: the engine every page talks to.
        store: for reading conversations.
        list_models: async function returning the upstream's model ids (for the settings dialog and the admin page).
        accounts: who each page is for (team mode: a login is required).
        start: what the start page says about the model that answers (default: the engine's default model).
    """
    install_theme()
    register_share_page(store, accounts)

    async def chat_page(request: Request, conversation_id: int | None, message: int | None = None) -> Response | None:
        account = await page_account(request, accounts)
        if account is None:
            return login_redirect(request)
        guard = session_guard(request, accounts)
        await layout(engine, store, conversation_id, list_models, account=account, accounts=accounts, guard=guard,
                     start=start, message_id=message)  # fmt: skip
        return None

    @ui.page("/", title="Parley")
    async def index(request: Request) -> Response | None:
        return await chat_page(request, None)

    @ui.page("/c/{conversation_id}", title="Parley")
    async def conversation_page(request: Request, conversation_id: int, message: int | None = None) -> Response | None:
        """A conversation; ``?message=M`` opens it at message M (on the branch that holds it, highlighted)."""
        return await chat_page(request, conversation_id, message)

    # ``ui.page`` removes every route of its path: ``POST /login`` (chat/auth/http.py) is registered after this
    @ui.page("/login", title="Log in · Parley")
    async def login(request: Request, next: str = "/") -> Response | None:
        if not accounts.enabled:
            return RedirectResponse("/", status_code=303)
        login_page(next)
        return None

    @ui.page("/account", title="Account · Parley")
    async def account(request: Request) -> Response | None:
        account = await page_account(request, accounts)
        if account is None:
            return login_redirect(request)
        await account_page(account, accounts, store, request, guard=session_guard(request, accounts))
        return None

    @ui.page("/admin", title="Admin · Parley")
    async def admin(request: Request) -> Response | None:
        account = await page_account(request, accounts)
        if account is None:
            return login_redirect(request)
        await admin_page(account, accounts, engine, store, list_models, guard=session_guard(request, accounts))
        return None


async def layout(
    engine: Engine,
    store: Store,
    conversation_id: int | None,
    list_models: object,
    *,
    account: Account = LOCAL,
    accounts: Accounts | None = None,
    guard: Guard = always_signed_in,
    start: StartPage | None = None,
    message_id: int | None = None,
) -> None:
    """Header, drawer, the tree panel and the conversation (or a not-found notice, also for another user's
    conversation).

    The header is one row at every width (the title ends in an ellipsis); the drawer is beside the page on wide screens
    and an overlay on narrow ones (Quasar's ``show-if-above``, below 1024 px), closed when a page opens there. The
    header follows the conversation's title through the engine's changes of this conversation only; the database is
    read in threads (here, ``ChatView.sync``, ``ConversationList.load``).

    Args:
        engine: the engine the page talks to.
        store: for reading conversations.
        conversation_id: the conversation shown, or None for a new one.
        list_models: async function returning the upstream's model ids.
        account: who the page is for.
        accounts: for the header's user menu (none without it).
        guard: checks that the page's login still holds before a Send or Regenerate.
        start: what the start page says about the model that answers.
        message_id: open the conversation at this message: its branch shown, the message scrolled to and highlighted
            (a search result, a link); ignored when it is not one of the conversation's.
    """
    conversation = None
    if conversation_id is not None:
        try:
            conversation = await asyncio.to_thread(store.get_conversation, conversation_id, owner=account.owner)
        except NotFound:
            ui.context.client.status_code = 404  # the same answer as for a missing id on /api
            ui.label("This conversation does not exist (it may have been deleted).").classes("m-8 text-lg")
            ui.link("Start a new chat", "/")
            return
    title = conversation.title if conversation is not None else DEFAULT_TITLE
    ui.page_title(f"{title} · Parley")
    # open on wide screens (Quasar's show-if-above, which reports the state back), closed on narrow ones; not
    # value=None, which makes NiceGUI ask the browser once per page and log an ERROR when the tab leaves first
    with ui.left_drawer(value=False).classes("parley-sidebar").props("show-if-above width=280 bordered") as drawer:
        conversations = ConversationList(engine, store, conversation_id, account=account)
    await conversations.load()

    current: list[int] = [conversation_id] if conversation_id is not None else []  # once there is one
    tree = TreePanel(engine, account=account)
    if message_id is not None and conversation is not None:
        try:
            shown = await engine.show_message(message_id, account)
            if shown.conversation_id != conversation_id:
                message_id = None
        except NotFound:
            message_id = None

    async def settings() -> None:
        try:
            await open_settings(engine, store, current[0], list_models, account=account)
        except Exception as error:
            show_error(error)

    async def share() -> None:
        try:
            await open_share_dialog(engine, store, current[0], account, guard=guard)
        except Exception as error:
            show_error(error)

    with ui.header(wrap=False).classes("parley-header items-center"):
        ui.button(icon="menu", on_click=drawer.toggle).props(
            'flat round aria-label="Conversations" title="Conversations"'
        ).mark("drawer-toggle")
        heading = ui.label(title).classes("parley-header-title text-base font-medium").mark("conversation-heading")
        settings_button = (
            ui.button(icon="tune", on_click=settings)
            .props('flat round title="Conversation settings" aria-label="Conversation settings"')
            .mark("settings")
        )
        share_button = (
            ui.button(icon="share", on_click=share).props('flat round title="Share" aria-label="Share"').mark("share")
        )
        tree_button = (
            ui.button(icon="account_tree", on_click=tree.toggle)
            .props('flat round title="Conversation tree" aria-label="Conversation tree"')
            .mark("tree-toggle")
        )
        find_button = (
            ui.button(icon="manage_search", on_click=lambda: chat.search.open())
            .props('flat round title="Search in this conversation" aria-label="Search in this conversation"')
            .mark("conversation-search")
        )
        if conversation_id is None:  # shown by parley.css once the first message is on the page: nothing to send
            settings_button.classes("parley-after-first-message")
            tree_button.classes("parley-after-first-message")
            share_button.classes("parley-after-first-message")
            find_button.classes("parley-after-first-message")
        shortcut = next(s.keys[0] for s in SHORTCUTS if s.action == "help")
        ui.button(icon="keyboard", on_click=show_shortcuts).props(
            f'flat round aria-label="Keyboard shortcuts" title="Keyboard shortcuts ({shortcut})"'
        ).classes("max-sm:hidden").mark("shortcuts-button")
        ThemeToggle()
        if accounts is None or not accounts.enabled:  # team mode: Export and Import are in the user menu
            export_all_link(account)
        if accounts is not None:
            user_menu(account, accounts)
    # the drawer reaches down beside the footer (the composer), not under it: Quasar's layout view, third row
    view = list(ui.context.client.layout.props["view"])
    view[8] = "l"
    ui.context.client.layout.props["view"] = "".join(view)

    def show_title(title: str) -> None:
        if not heading.is_deleted:
            heading.set_text(title)
            with heading:  # maybe called from another tab's task: set this page's title
                ui.page_title(f"{title} · Parley")

    def on_title(change: Change) -> None:
        if change.kind == "updated" and change.title is not None:
            show_title(change.title)

    def attach(conversation_id: int) -> None:
        """Make the header and the drawer follow ``conversation_id`` (on load, or once the first Send created it)."""
        ui.context.client.on_delete(engine.watch_conversation(conversation_id, on_title))
        conversations.current_id = conversation_id
        current[:] = [conversation_id]

    def created(conversation_id: int, title: str) -> None:
        """The first Send made the conversation, titled from its message: show that title."""
        attach(conversation_id)
        show_title(title)

    chat = ChatView(engine, store, conversation, on_created=created, account=account, guard=guard, start=start,
                    tree=tree, focus=message_id, list_models=list_models)  # fmt: skip
    if conversation_id is not None:
        attach(conversation_id)
        await chat.sync()
