"""``/login`` (team mode): a name and password form that ``static/login.js`` posts as JSON to ``POST /login``
(``chat/auth/http.py``) with ``fetch``, so whatever the answer, what was typed stays in the form; a refusal (wrong
name or password, too many attempts) is shown above the button. On success the browser goes to ``next``, a local
path only (``safe_next``)."""

from __future__ import annotations

from nicegui import ui

from .access import safe_next
from .theme import STATIC_PATH, ThemeToggle

#: Where ``static/login.js`` is served.
LOGIN_SCRIPT_PATH = f"{STATIC_PATH}/login.js"


def login_page(next_path: str | None) -> None:
    """Build the login form.

    Args:
        next_path: where to go once logged in (the ``next`` query parameter); anything but a local path becomes ``/``.
    """
    ui.add_head_html(f'<script src="{LOGIN_SCRIPT_PATH}" defer></script>')
    target = safe_next(next_path)
    with ui.row().classes("w-full justify-end"):
        ThemeToggle()
    with ui.column().classes("w-full items-center mt-16"):
        with ui.card().classes("w-[360px] max-w-full p-6"):
            ui.label("Parley").classes("text-2xl font-semibold parley-heading")
            ui.label("Log in to continue.").classes("parley-muted")
            form = ui.element("form").props("method=post action=/login novalidate")
            form.classes("w-full flex flex-col gap-3 parley-login-form").mark("login-form")
            form._props["data-next"] = target  # set as is: a path is no props string
            with form:
                ui.input("Name").props("name=name autocomplete=username autofocus outlined dense").classes(
                    "w-full"
                ).mark("login-name")
                ui.input("Password", password=True).props(
                    "name=password autocomplete=current-password outlined dense"
                ).classes("w-full").mark("login-password")
                ui.label("").classes("parley-error text-sm parley-login-error").props("role=alert").mark("login-error")
                ui.button("Log in").props("type=submit unelevated no-caps").classes("w-full").mark("login-submit")
