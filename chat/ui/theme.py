"""The pages' shared look: Parley's stylesheet, the tab's icon and name, and the colour theme (light, dark or auto),
chosen per browser with the header's ``ThemeToggle``.

The theme choice lives in the browser's ``localStorage`` (``THEME_KEY``: ``"light"``, ``"dark"``, or absent for auto,
which follows the system's ``prefers-color-scheme``, live), so choosing needs no server round trip, survives a reload
and holds in every tab of that browser. It is applied before anything is drawn, twice: a head script marks
``<html class="parley-dark">`` for the first paint, and a line added to NiceGUI's Vue start-up script hands the choice
to Quasar's dark mode (``setDark`` → ``Quasar.Dark.set``, which puts ``body--dark`` on the body) before the page mounts.
"""

from __future__ import annotations

from pathlib import Path

from nicegui import app, ui
from nicegui.element import Element
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

#: Where ``STATIC`` is served (``/parley/parley.css``, ``/parley/login.js``, ``/parley/favicon.svg``, …).
STATIC_PATH = "/parley"

#: The tab's icon (also given to ``ui.run(favicon=…)``).
FAVICON = STATIC / "favicon.svg"

#: Quasar's brand colours, darker than NiceGUI's defaults so that white text on them has a contrast of at least 4.5:1
#: (WCAG AA): primary 5.2:1, positive 5.9:1, negative 6.3:1. As text colours on a dark page they are lightened in
#: ``parley.css``.
BRAND_COLORS = {"primary": "#1f6fc5", "positive": "#1a7336", "negative": "#b42318"}

#: The ``localStorage`` key of the theme choice.
THEME_KEY = "parley-theme"

#: JavaScript: the stored choice as NiceGUI's ``setDark`` takes it (true, false, or None for auto).
_STORED_DARK = (
    f'(() => {{ let c = null; try {{ c = localStorage.getItem("{THEME_KEY}"); }} catch (e) {{}} '
    'return c === "dark" ? true : c === "light" ? false : None; })()'
)

#: Added to NiceGUI's start-up script, after its own ``setDark(dark)``: the browser's choice wins over the default.
START_SCRIPT = f"\nsetDark({_STORED_DARK});\n"

HEAD_HTML = f"""
<link rel="stylesheet" href="{STATIC_PATH}/parley.css">
<meta name="application-name" content="Parley">
<meta name="apple-mobile-web-app-title" content="Parley">
<meta name="theme-color" media="(prefers-color-scheme: light)" content="#ffffff">
<meta name="theme-color" media="(prefers-color-scheme: dark)" content="#1b1c1f">
<script>(() => {{
  let choice = null;
  try {{ choice = localStorage.getItem("{THEME_KEY}"); }} catch (error) {{}}
  const dark = choice === "dark" || (choice !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.classList.toggle("parley-dark", dark);
}})();</script>
"""


def install_theme() -> None:
    """Serve ``STATIC`` at ``STATIC_PATH`` and give every page the stylesheet, the app name and the stored theme.

    Call once per app, before the pages are visited (``register_pages`` does).
    """
    files = StaticFiles(directory=STATIC)

    @app.get(STATIC_PATH + "/{path:path}", include_in_schema=False)  # the pages' assets, not part of the API
    async def static_file(request: Request, path: str) -> Response:
        return await files.get_response(path, request.scope)

    app.colors(**BRAND_COLORS)
    ui.add_head_html(HEAD_HTML, shared=True)
    if START_SCRIPT not in app.config.vue_config_script:
        app.config.vue_config_script += START_SCRIPT


class ThemeToggle(Element, component="theme_toggle.js"):
    """The header's theme button: a menu of Light, Dark and Auto (the system's setting), the current one checked.

    Entirely in the browser (``theme_toggle.js``): choosing stores the choice in ``localStorage`` and applies it at
    once, in this tab and in the browser's other open tabs; the server is not told.
    """

    def __init__(self) -> None:
        super().__init__()
        self._props["storageKey"] = THEME_KEY
