"""``/admin`` (admins, team mode): the users, what they may use, and how much they used.

* **Users**: name, admin, disabled, created, last login; Disable/Enable (disabling logs the user out, stops their
  running answers and stops their API tokens from working), Models (which models the user may use, or every
  model), Tools (which tools the user may use, or every tool: ``User.tools``), Delete (confirmed: their
  conversations, sessions, tokens and usage go too). An admin cannot disable or delete themselves.
* **Add user**: name, password, admin.
* **Usage**: tokens (prompt + completion) and answers per user per day, over the last 14 days (UTC).

Anyone else (and personal mode, which has no users) sees the same "does not exist" notice as for a missing page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import cast

from nicegui import ui

from ..auth import Accounts, WeakPassword
from ..engine import LOCAL, Account, Engine
from ..store import DailyUsage, NameTaken, NotFound, Store, User
from ..store.models import utcnow
from .access import Guard, always_signed_in, not_found_notice, plain_header
from .account_page import when
from .confirm import confirm
from .notices import show_error

#: Days shown in the usage table, today included.
USAGE_DAYS = 14


async def admin_page(
    account: Account,
    accounts: Accounts,
    engine: Engine,
    store: Store,
    list_models: object,
    *,
    guard: Guard = always_signed_in,
) -> None:
    """Build the admin page, or the not-found notice for anyone but an admin of team mode.

    Args:
        account: who is signed in.
        accounts: adds users, disables them, sets their models.
        engine: stops a user's running answers before they are disabled or deleted.
        store: lists and deletes users, reads the usage.
        list_models: async function returning the upstream's model ids (for the Models dialog).
        guard: checks that the page's login still holds before each action.
    """
    plain_header("Admin", account, accounts)
    if not accounts.enabled or not account.is_admin or account.user_id is None:
        not_found_notice()
        return
    page = AdminPage(account, accounts, engine, store, list_models, guard=guard)
    await page.refresh()


def usage_cell(tokens: int, answers: int, cost: float) -> str:
    """One cell of the usage table: ``"<tokens> · <answers>"``, and `` · $<cost>`` when it cost anything."""
    cell = f"{tokens:,} · {answers}"
    return f"{cell} · ${cost:.4f}" if cost else cell


def usage_table(users: list[User], usage: list[DailyUsage], days: int = USAGE_DAYS) -> tuple[list[dict], list[dict]]:
    """The usage table as ``(columns, rows)`` for ``ui.table``: one row per user with any usage, one column per day
    (newest first) with ``"<tokens> · <answers>"`` (and `` · $<cost>`` when it cost anything), and a total column.

    Args:
        users: every user (for their names).
        usage: ``Store.usage`` rows.
        days: how many days, today (UTC) included.
    """
    today = utcnow().date()
    dates = [today - timedelta(days=n) for n in range(days)]
    names = {user.id: user.name for user in users}
    cells: dict[int, dict[str, str]] = {}
    totals: dict[int, list[float]] = {}
    for row in usage:
        tokens = row.prompt_tokens + row.completion_tokens
        cells.setdefault(row.user_id, {})[row.day.isoformat()] = usage_cell(tokens, row.answers, row.cost)
        total = totals.setdefault(row.user_id, [0, 0, 0.0])
        total[0] += tokens
        total[1] += row.answers
        total[2] += row.cost
    columns = [{"name": "user", "label": "User", "field": "user", "align": "left"}]
    columns += [{"name": d.isoformat(), "label": d.strftime("%b %d"), "field": d.isoformat()} for d in dates]
    columns.append({"name": "total", "label": f"{days} days", "field": "total"})
    rows = []
    for user_id in sorted(cells, key=lambda i: names.get(i, "")):
        tokens, answers, cost = totals[user_id]
        row = {"user": names.get(user_id, f"user {user_id}"), "total": usage_cell(int(tokens), int(answers), cost)}
        row.update({d.isoformat(): cells[user_id].get(d.isoformat(), "") for d in dates})
        rows.append(row)
    return columns, rows


class AdminPage:
    """The admin page's content (see the module docstring); ``refresh()`` reads and shows the users and the usage.

    Args:
        account: the admin signed in.
        accounts: adds users, disables them, sets their models.
        engine: stops a user's running answers before they are disabled or deleted.
        store: lists and deletes users, reads the usage.
        list_models: async function returning the upstream's model ids.
        guard: checks that the page's login still holds before each action.
    """

    def __init__(
        self,
        account: Account,
        accounts: Accounts,
        engine: Engine,
        store: Store,
        list_models: object,
        *,
        guard: Guard = always_signed_in,
    ) -> None:
        self.account = account
        self.guard = guard
        self.accounts = accounts
        self.engine = engine
        self.store = store
        self.list_models = cast(Callable[[], Awaitable[list[str]]], list_models)
        with ui.column().classes("w-full max-w-5xl mx-auto gap-6 p-4"):
            with ui.card().classes("w-full"):
                ui.label("Users").classes("text-lg")
                # on a narrow screen the table scrolls sideways inside its card, not the page
                self.users = ui.column().classes("w-full gap-0 overflow-x-auto").mark("users")
            self._add_user_form()
            with ui.card().classes("w-full"):
                ui.label(f"Usage, last {USAGE_DAYS} days (UTC)").classes("text-lg")
                ui.label("Each cell: tokens (prompt + completion) · answers.").classes("parley-muted text-sm")
                self.usage = ui.column().classes("w-full").mark("usage")

    # -- users ------------------------------------------------------------------------------------------

    def render(self, users: list[User], usage: list[DailyUsage]) -> None:
        """Show ``users`` and ``usage``."""
        self.users.clear()
        with self.users:
            with ui.row().classes("w-full min-w-max no-wrap gap-2 text-xs parley-muted border-b py-1"):
                for title, width in (("Name", "w-40"), ("Admin", "w-14"), ("Disabled", "w-16"), ("Models", "w-40"),
                                     ("Tools", "w-40"), ("Created", "w-36"), ("Last login", "w-36")):  # fmt: skip
                    ui.label(title).classes(width)
            for user in users:
                self._user_row(user)
        self.usage.clear()
        columns, rows = usage_table(users, usage)
        with self.usage:
            if rows:
                ui.table(columns=columns, rows=rows, row_key="user").props("dense flat").classes("w-full").mark(
                    "usage-table"
                )
            else:
                ui.label("No answers yet.").classes("parley-muted text-sm").mark("no-usage")

    def _user_row(self, user: User) -> None:
        assert user.id is not None
        me = user.id == self.account.user_id
        models = "all" if user.allowed_models is None else ", ".join(sorted(user.allowed_models)) or "none"
        with ui.row().classes("w-full min-w-max items-center no-wrap gap-2 border-b py-1").mark(f"user-{user.name}"):
            ui.label(user.name + (" (you)" if me else "")).classes("w-40 truncate font-medium")
            ui.label("yes" if user.is_admin else "").classes("w-14")
            ui.label("disabled" if user.disabled else "").classes("w-16 parley-error").mark("user-disabled")
            ui.label(models).classes("w-40 truncate text-sm").mark("user-models")
            tools = "all" if user.allowed_tools is None else ", ".join(sorted(user.allowed_tools)) or "none"
            ui.label(tools).classes("w-40 truncate text-sm").mark("user-tools")
            ui.label(when(user.created_at)).classes("w-36 text-sm")
            ui.label(when(user.last_login_at)).classes("w-36 text-sm")
            with ui.row().classes("gap-1 no-wrap ml-auto"):
                label = "Enable" if user.disabled else "Disable"
                toggle = ui.button(label, on_click=lambda: self.set_disabled(user, not user.disabled))
                toggle.props("flat dense no-caps")
                toggle.mark("enable-user" if user.disabled else "disable-user").set_enabled(not me)
                ui.button("Models", on_click=lambda: self.edit_models(user)).props("flat dense no-caps").mark(
                    "user-models-edit"
                )
                ui.button("Tools", on_click=lambda: self.edit_tools(user)).props("flat dense no-caps").mark(
                    "user-tools-edit"
                )
                delete = ui.button("Delete", on_click=lambda: self.delete(user)).props(
                    "flat dense no-caps color=negative"
                )
                delete.mark("delete-user").set_enabled(not me)

    async def refresh(self) -> None:
        """Read the users and the usage again and show them."""
        users, usage = await asyncio.to_thread(lambda: (self.store.list_users(), self.store.usage(USAGE_DAYS)))
        if not self.users.is_deleted:
            self.render(users, usage)

    async def set_disabled(self, user: User, disabled: bool) -> None:
        """Disable a user (logged out, answers stopped, tokens refused) or enable them again."""
        assert user.id is not None
        if user.id == self.account.user_id:
            ui.notify("You cannot disable yourself.", type="warning")
            return
        if not await self.guard():
            return
        try:
            await asyncio.to_thread(self.accounts.set_disabled, user.id, disabled)
            if disabled:
                await self.engine.cancel_user(user.id)
        except Exception as error:
            show_error(error)
            return
        ui.notify(f"{user.name} {'disabled' if disabled else 'enabled'}", type="positive")
        await self.refresh()

    async def delete(self, user: User) -> None:
        """Ask for confirmation, then stop the user's answers and delete them with everything they own."""
        assert user.id is not None
        if user.id == self.account.user_id:
            ui.notify("You cannot delete yourself.", type="warning")
            return
        question = f"Delete the user “{user.name}”?"
        consequence = "Their conversations, API tokens and usage are deleted too. This cannot be undone."
        if not await confirm(question, consequence, "Delete", mark="confirm-delete-user") or not await self.guard():
            return
        try:
            await self.engine.cancel_user(user.id)
            await asyncio.to_thread(self.store.delete_user, user.id)
        except NotFound:
            pass  # deleted meanwhile
        except Exception as error:
            show_error(error)
            return
        ui.notify(f"{user.name} deleted", type="positive")
        await self.refresh()

    async def edit_models(self, user: User) -> None:
        """Ask which models the user may use (every model, or a chosen few) and save it."""
        assert user.id is not None
        try:
            served = await self.list_models()
        except Exception:  # an unreachable upstream: the models already allowed can still be edited
            served = []
        choice = await self._ask_allowed(user, "models", served, user.allowed_models)
        if choice is None:
            return
        try:
            await asyncio.to_thread(self.accounts.set_models, user.id, choice["models"])
        except Exception as error:
            show_error(error)
            return
        ui.notify(f"Models of {user.name} saved", type="positive")
        await self.refresh()

    async def edit_tools(self, user: User) -> None:
        """Ask which tools the user may use (every tool, or a chosen few, by the name the model sees) and save it as
        ``User.tools`` (one name per line; None: every tool)."""
        assert user.id is not None
        try:
            served = [tool.name for tool in await self.engine.available_tools(LOCAL)]
        except Exception:  # a broken toolbox: the tools already allowed can still be edited
            served = []
        choice = await self._ask_allowed(user, "tools", served, user.allowed_tools)
        if choice is None:
            return
        tools = (
            None
            if choice["tools"] is None
            else "\n".join(sorted({str(name).strip() for name in choice["tools"]} - {""}))
        )
        try:
            await asyncio.to_thread(self.store.update_user, user.id, tools=tools)
        except Exception as error:
            show_error(error)
            return
        ui.notify(f"Tools of {user.name} saved", type="positive")
        await self.refresh()

    async def _ask_allowed(
        self, user: User, kind: str, served: list[str], allowed: frozenset[str] | None
    ) -> dict[str, list[str] | None] | None:
        """The dialog "<Kind> <user> may use": every one (also those added later), or a chosen few of ``served`` and
        ``allowed``. Returns ``{kind: None (every one) | [names]}``, or None when cancelled or no longer signed in.
        ``kind`` is ``"models"`` or ``"tools"``: it names the dialog and its markers (``all-models``,
        ``allowed-models``, ``save-models``)."""
        options = sorted(set(served) | set(allowed or ()))
        with ui.dialog() as dialog, ui.card().classes("min-w-[420px]"):
            ui.label(f"{kind.capitalize()} {user.name} may use").classes("text-lg")
            every = ui.checkbox(f"All {kind} (also those added later)", value=allowed is None).mark(f"all-{kind}")
            chosen = (
                ui.select(
                    options,
                    value=sorted(allowed or ()),
                    multiple=True,
                    label=kind.capitalize(),
                    with_input=True,
                    new_value_mode="add-unique",
                )
                .props("use-chips outlined dense")
                .classes("w-full")
                .mark(f"allowed-{kind}")
            )
            chosen.bind_enabled_from(every, "value", backward=lambda value: not value)
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")
                ui.button(
                    "Save", on_click=lambda: dialog.submit({kind: None if every.value else list(chosen.value)})
                ).mark(f"save-{kind}")
        choice = await dialog
        dialog.delete()
        if choice is None or not await self.guard():
            return None
        return choice

    # -- adding a user ----------------------------------------------------------------------------------

    def _add_user_form(self) -> None:
        with ui.card().classes("w-full"):
            ui.label("Add user").classes("text-lg")
            with ui.row().classes("w-full items-end gap-2"):
                name = ui.input("Name").props("outlined dense autocomplete=off").mark("new-user-name")
                password = ui.input("Password", password=True).props("outlined dense autocomplete=new-password")
                password.mark("new-user-password")
                admin = ui.checkbox("Admin").mark("new-user-admin")

                async def add() -> None:
                    if not await self.guard():
                        return
                    try:
                        await asyncio.to_thread(
                            self.accounts.add_user, name.value or "", password.value or "", is_admin=bool(admin.value)
                        )
                    except (WeakPassword, NameTaken) as error:
                        say(str(error), ok=False)
                        return
                    except Exception as error:
                        show_error(error)
                        return
                    say(f"{(name.value or '').strip()} can log in now.", ok=True)
                    for field in (name, password):
                        field.set_value("")
                    admin.set_value(False)
                    await self.refresh()

                ui.button("Add user", icon="person_add", on_click=add).props("unelevated no-caps").mark("add-user")
            message = ui.label("").classes("text-sm").props("role=status").mark("add-user-message")

            def say(text: str, ok: bool) -> None:
                message.set_text(text)
                message.classes(replace=f"text-sm {'parley-success' if ok else 'parley-error'}")
