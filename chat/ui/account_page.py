"""``/account``: the signed-in user's password, API tokens and shared links.

* **Password**: current, new, repeated. A wrong current password, a short new one, a mismatch or too many wrong
  passwords (they count with failed logins) is said under the form; a change logs out the user's other browsers
  (``Accounts.set_password``) but keeps this one.
* **API tokens** (``Authorization: Bearer parley_…`` on ``/api`` and ``/v1``): listed by name, first characters,
  creation and last use; a new token's secret is shown once, in a dialog with a Copy button (only its SHA-256 is
  stored); Revoke asks first.
* **Shared links** (``share_dialog.shares_card``): the read-only links the user made, by conversation title (when
  shared), audience and creation, each with Revoke (asked first). In personal mode, where there is no login to manage,
  the page still lists every link.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nicegui import ui
from starlette.requests import Request

from ..auth import Accounts, LoginFailed, WeakPassword
from ..auth.http import session_token
from ..engine import Account, RateLimited
from ..store import ApiToken, NotFound, Store
from .access import Guard, always_signed_in, plain_header
from .confirm import confirm
from .notices import show_error
from .share_dialog import shares_card


def when(moment: datetime | None, never: str = "never") -> str:
    """A stored time as shown: ``2026-11-23 15:58 UTC``, or ``never`` for None."""
    if moment is None:
        return never
    if moment.tzinfo is None:  # SQLite gives back naive UTC times
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


async def account_page(
    account: Account, accounts: Accounts, store: Store, request: Request, *, guard: Guard = always_signed_in
) -> None:
    """Build the account page.

    Args:
        account: who is signed in.
        accounts: changes the password, creates and revokes tokens.
        store: lists the tokens and the shared links.
        request: the page's request (its login session is kept when the password changes).
        guard: checks that the page's login still holds before each action.
    """
    plain_header("Account", account, accounts)
    if account.user_id is None:
        ui.label("Parley runs without accounts: there is no login, password or API token to manage.").classes(
            "m-8 text-lg"
        ).mark("no-accounts")
        with ui.column().classes("w-full max-w-3xl mx-auto gap-6 p-4"):
            shares = shares_card(store, account, guard)
        await shares.refresh()
        return
    with ui.column().classes("w-full max-w-3xl mx-auto gap-6 p-4"):
        ui.label(f"Signed in as {account.name}" + (" (admin)" if account.is_admin else "")).classes("parley-muted")
        password_form(account, accounts, session_token(request), guard)
        tokens = TokenList(account, accounts, store, guard)
        shares = shares_card(store, account, guard)
    await tokens.refresh()
    await shares.refresh()


def password_form(
    account: Account, accounts: Accounts, keep_session: str | None, guard: Guard = always_signed_in
) -> None:
    """The Change password card.

    Args:
        account: whose password changes.
        accounts: checks the current password and stores the new one.
        keep_session: the token of this browser's login session, which stays logged in.
        guard: checks that the page's login still holds before the change.
    """
    with ui.card().classes("w-full"):
        ui.label("Change password").classes("text-lg")
        current = ui.input("Current password", password=True).props("autocomplete=current-password outlined dense")
        current.classes("w-full").mark("current-password")
        new = ui.input("New password", password=True).props("autocomplete=new-password outlined dense")
        new.classes("w-full").mark("new-password")
        repeat = ui.input("Repeat the new password", password=True).props("autocomplete=new-password outlined dense")
        repeat.classes("w-full").mark("repeat-password")
        message = ui.label("").classes("text-sm").props("role=status").mark("password-message")

        def say(text: str, ok: bool) -> None:
            message.set_text(text)
            message.classes(replace=f"text-sm {'parley-success' if ok else 'parley-error'}")

        async def change() -> None:
            if not await guard():
                return
            if (new.value or "") != (repeat.value or ""):
                say("The new passwords do not match.", ok=False)
                return
            try:
                await asyncio.to_thread(
                    accounts.change_password, account, current.value or "", new.value or "", keep_session=keep_session
                )
            except LoginFailed:
                say("The current password is wrong.", ok=False)
                return
            except (WeakPassword, RateLimited) as error:
                say(str(error), ok=False)
                return
            except Exception as error:
                show_error(error)
                return
            for field in (current, new, repeat):
                field.set_value("")
            say("Password changed. Your other browsers and devices were logged out.", ok=True)

        ui.button("Change password", on_click=change).props("unelevated no-caps").mark("change-password")


class TokenList:
    """The API tokens card: the list (shown by ``refresh()``), Create token (secret shown once) and Revoke (confirmed).

    Args:
        account: whose tokens.
        accounts: creates and revokes them.
        store: lists them.
        guard: checks that the page's login still holds before each action.
    """

    def __init__(self, account: Account, accounts: Accounts, store: Store, guard: Guard = always_signed_in) -> None:
        assert account.user_id is not None
        self.account = account
        self.user_id: int = account.user_id
        self.accounts = accounts
        self.store = store
        self.guard = guard
        with ui.card().classes("w-full"):
            ui.label("API tokens").classes("text-lg")
            ui.label(
                "For scripts and other tools: send one as Authorization: Bearer … to /api or /v1 (any OpenAI client's "
                "api_key)."
            ).classes("parley-muted text-sm")
            with ui.row().classes("w-full items-end gap-2 no-wrap"):
                self.name = ui.input("Token name", placeholder="e.g. laptop script").props("outlined dense")
                self.name.classes("flex-grow").mark("token-name")
                self.name.on("keydown.enter", self.create)
                ui.button("Create token", icon="add", on_click=self.create).props("unelevated no-caps").mark(
                    "create-token"
                )
            self.list = ui.column().classes("w-full gap-0").mark("token-list")

    def render(self, tokens: list[ApiToken]) -> None:
        """Show ``tokens`` (newest first)."""
        self.list.clear()
        with self.list:
            if not tokens:
                ui.label("No API tokens.").classes("parley-muted text-sm py-2").mark("no-tokens")
            for token in tokens:
                with ui.row().classes("w-full items-center no-wrap gap-3 py-1 border-b").mark(f"token-{token.id}"):
                    with ui.column().classes("flex-grow gap-0"):
                        ui.label(token.name).classes("font-medium").mark("token-label")
                        ui.label(
                            f"{token.prefix}… · created {when(token.created_at)} · last used {when(token.last_used_at)}"
                        ).classes("text-xs parley-muted")
                    ui.button("Revoke", on_click=lambda token=token: self.revoke(token)).props(
                        "flat dense no-caps color=negative"
                    ).mark("revoke-token")

    async def refresh(self) -> None:
        """Read the tokens again and show them."""
        tokens = await asyncio.to_thread(self.store.api_tokens, self.user_id)
        if not self.list.is_deleted:
            self.render(tokens)

    async def create(self) -> None:
        """Create a token named as typed, show its secret once, list it."""
        if not await self.guard():
            return
        try:
            made = await asyncio.to_thread(self.accounts.create_token, self.account, self.name.value or "")
        except Exception as error:
            show_error(error)
            return
        self.name.set_value("")
        await self.refresh()
        with ui.dialog().props("persistent") as dialog, ui.card().classes("min-w-[480px] max-w-full"):
            ui.label(f"API token “{made.token.name}”").classes("text-lg")
            ui.label("Copy it now: it will not be shown again. Parley keeps only a hash of it.").classes(
                "parley-warning"
            ).mark("token-warning")
            with ui.row().classes("w-full items-center no-wrap gap-2"):
                ui.input(value=made.secret).props("readonly outlined dense").classes("flex-grow font-mono").mark(
                    "token-secret"
                )
                ui.button(
                    icon="content_copy",
                    on_click=lambda: (ui.clipboard.write(made.secret), ui.notify("Copied", type="positive")),
                ).props('flat round title="Copy" aria-label="Copy"').mark("copy-token")
            with ui.row().classes("w-full justify-end"):
                ui.button("Done", on_click=lambda: dialog.submit(None)).props("unelevated no-caps").mark("token-done")
        dialog.open()
        await dialog
        dialog.delete()  # the secret leaves the page with it

    async def revoke(self, token: ApiToken) -> None:
        """Ask for confirmation, then revoke ``token``: it stops working at once."""
        question = f"Revoke “{token.name}” ({token.prefix}…)?"
        consequence = "Scripts using it stop working. This cannot be undone."
        if not await confirm(question, consequence, "Revoke", mark="confirm-revoke") or not await self.guard():
            return
        assert token.id is not None
        try:
            await asyncio.to_thread(self.accounts.revoke_token, self.account, token.id)
        except NotFound:
            pass  # revoked meanwhile (another tab): the list shows it gone
        except Exception as error:
            show_error(error)
            return
        ui.notify("Token revoked", type="positive")
        await self.refresh()
