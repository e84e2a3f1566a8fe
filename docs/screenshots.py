"""The README's screenshots, made anew: ``.venv/bin/python docs/screenshots.py`` (after ``make test`` has installed
everything; about half a minute).

It starts ``app.py`` on the embedded model (SmolLM2 135M Instruct, the default) with a throwaway data folder, sends one
of the start page's example prompts from headless Chromium, waits for the real answer, and saves
``docs/screenshot-desktop-light.png``, ``docs/screenshot-desktop-dark.png`` and ``docs/screenshot-phone.png``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect  # noqa: E402

from tests.browser import chromium, clean_env, free_port, server_process  # noqa: E402

PROMPT = "Write a Python function that reverses a string, with an example."
DOCS = ROOT / "docs"


def main() -> None:
    """Serve, ask, wait for the answer, save the three screenshots."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = clean_env(PARLEY_DATA_DIR=data)
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PARLEY_MODEL", "DATABASE_URL"):
            env.pop(name, None)
        with server_process(["app.py", "--port", str(port)], url + "/", env), chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="light")
            page.goto(url + "/")
            page.screenshot(path=DOCS / "screenshot-start.png")
            page.get_by_role("button", name=PROMPT).click()
            page.wait_for_url("**/c/1")
            expect(page.locator(".parley-message-footer").last).to_contain_text("tokens/s", timeout=120_000)
            page.mouse.move(0, 0)
            page.screenshot(path=DOCS / "screenshot-desktop-light.png")
            dark = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="dark")
            dark.goto(url + "/c/1")
            expect(dark.locator(".parley-message-footer").last).to_contain_text("tokens/s")
            dark.screenshot(path=DOCS / "screenshot-desktop-dark.png")
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            phone.goto(url + "/c/1")
            expect(phone.locator(".parley-message-footer").last).to_contain_text("tokens/s")
            phone.screenshot(path=DOCS / "screenshot-phone.png")
    print("saved", *sorted(p.name for p in DOCS.glob("screenshot-*.png")))


if __name__ == "__main__":
    main()
