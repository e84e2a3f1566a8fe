"""Who a page is for (team mode: the login session in the signed cookie) and the page chrome every signed-in page
shares: the user menu of the header (Account, Export all, Import, Admin, Log out)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from ..auth import Accounts
from ..auth.http import session_token
from ..engine import LOCAL, Account
from .composer import DRAFT_PREFIX
from .text import Text
from .theme import ThemeToggle
from .transfer_dialog import export_all, open_import_dialog


async def page_account(request: Request, accounts: Accounts) -> Account | None:
    """The account a page request is made for.

    Args:
        request: the page's HTTP request (its signed session cookie holds the login token).
        accounts: decides who a login token is.

    Returns:
        ``LOCAL`` in personal mode; in team mode the logged-in user's account, or None when the request is not
        logged in (no session, logged out, user disabled or deleted).
    """
    if not accounts.enabled:
        return LOCAL
    token = session_token(request)
    if not token:
        return None
    return await asyncio.to_thread(accounts.session_account, token)


#: Checks, before an action of an open page, that its login still holds (see ``session_guard``).
Guard = Callable[[], Awaitable[bool]]


async def always_signed_in() -> bool:
    """The guard of personal mode (and the default): there is no login to lose."""
    return True


def session_guard(request: Request, accounts: Accounts) -> Guard:
    """A check that the login a page was opened with still holds, for the page's actions (Send, Regenerate, the
    admin and account actions): a tab opened before its user logged out elsewhere, changed their password or was
    disabled or deleted must not go on acting for them. When the login is gone the check sends the tab to the login
    page and returns False.

    Args:
        request: the page's request (its session cookie holds the login token).
        accounts: decides whether the token still logs someone in.

    Returns:
        An async function returning True while the login holds (always, in personal mode).
    """
    if not accounts.enabled:
        return always_signed_in
    token = session_token(request)
    next_path = request.url.path

    async def still_signed_in() -> bool:
        account = await asyncio.to_thread(accounts.session_account, token) if token else None
        if account is None:
            ui.navigate.to(f"/login?next={quote(next_path, safe='/')}")
            return False
        return True

    return still_signed_in


def safe_next(target: str | None) -> str:
    """Where to go after logging in: ``target`` when it is a path on this site, else ``/``.

    Only a local path is accepted: it starts with a single ``/`` (``//host`` and ``/\\host`` are other sites to a
    browser) and holds no control character or backslash, so a crafted ``/login?next=…`` link cannot send the user
    elsewhere (an open redirect).

    Args:
        target: the ``next`` query parameter, as given.

    Returns:
        A path starting with one ``/``.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    return target


def login_redirect(request: Request) -> RedirectResponse:
    """The answer to a page request that is not logged in: a redirect to ``/login?next=<the page's path>``."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(path, safe='/')}", status_code=303)


#: What the browser runs to log out: forget this browser's drafts (``composer.DRAFT_PREFIX``: a shared computer keeps
#: nothing the user typed), ``POST /logout`` (which ends the session), then the login page.
LOGOUT_JS = (
    f"Object.keys(localStorage).filter((key) => key.startsWith('{DRAFT_PREFIX}'))"
    ".forEach((key) => localStorage.removeItem(key)); "
    "fetch('/logout', {method: 'POST', credentials: 'same-origin'}).finally(() => location.assign('/login'))"
)


def user_menu(account: Account, accounts: Accounts) -> None:
    """The header's user button (team mode only; nothing in personal mode): the user's name, with a menu of
    Account, Export all (Parley JSON, or a zip of Markdown files), Import…, Admin (admins only) and Log out.

    Args:
        account: who is logged in.
        accounts: tells whether Parley runs with accounts.
    """
    if not accounts.enabled:
        return
    with ui.button(icon="account_circle").props("flat no-caps").mark("user-menu") as button:
        button.props["aria-label"] = f"{account.name}: account menu"
        Text(account.name).classes("ml-1 max-sm:hidden")  # on a phone the icon alone keeps the header one row
        with ui.menu():
            ui.menu_item("Account", lambda: ui.navigate.to("/account")).mark("menu-account")
            ui.menu_item("Export all (Parley JSON)", lambda: export_all("json")).mark("menu-export-json")
            ui.menu_item("Export all (Markdown, zip)", lambda: export_all("markdown")).mark("menu-export-markdown")
            ui.menu_item("Import…", lambda: open_import_dialog(account)).mark("menu-import")
            if account.is_admin:
                ui.menu_item("Admin", lambda: ui.navigate.to("/admin")).mark("menu-admin")
            ui.menu_item("Log out", lambda: ui.run_javascript(LOGOUT_JS)).mark("menu-logout")


def plain_header(title: str, account: Account, accounts: Accounts) -> None:
    """The header of a page that is not a conversation (account, admin): a link back to the chats, the page's title
    and the user menu."""
    ui.page_title(f"{title} · Parley")
    with ui.header(wrap=False).classes("parley-header items-center"):
        ui.button(icon="arrow_back", on_click=lambda: ui.navigate.to("/")).props(
            'flat round title="Back to the chats" aria-label="Back to the chats"'
        )
        ui.label(title).classes("parley-header-title text-base font-medium")
        ThemeToggle()
        user_menu(account, accounts)


def not_found_notice() -> None:
    """What a page shows for something that does not exist, or that this user may not see (the same words)."""
    ui.context.client.status_code = 404
    ui.label("This page does not exist.").classes("m-8 text-lg").mark("not-found")
    ui.link("Back to the chats", "/")
