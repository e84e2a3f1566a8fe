"""One story in Chromium on the whole app: paste an image from the clipboard into the message box, see its thumbnail,
send, see it in the sent message and enlarged; the model received it (the fake upstream records the image part)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from chat.attachments import decode_data_url

from .browser import assert_no_errors, chromium, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import wait_until

pytestmark = pytest.mark.browser

#: Puts a PNG on the system clipboard (the async Clipboard API), as a screenshot tool does.
COPY_PNG = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  await navigator.clipboard.write([new ClipboardItem({"image/png": new Blob([bytes], {type: "image/png"})})]);
}"""


def screenshot_png() -> bytes:
    image = Image.new("RGB", (300, 200), (30, 90, 160))
    image.paste((240, 200, 40), (20, 20, 150, 100))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_paste_an_image_see_it_send_it_and_the_model_gets_it(tmp_path: Path, upstream: FakeUpstream) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    png = screenshot_png()
    upstream.script = Script(pieces=["A blue picture with a yellow box."])
    with serve(tmp_path, upstream, port) as app, chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        page = context.new_page()
        page.goto(url + "/")
        composer = page.get_by_placeholder("Message Parley")
        expect(composer).to_be_visible()
        page.evaluate(COPY_PNG, base64.b64encode(png).decode())
        composer.click()
        composer.press("Control+V")
        thumbnail = page.locator(".parley-tray img")
        expect(thumbnail).to_be_visible()
        wait_until(lambda: thumbnail.evaluate("(img) => img.complete && img.naturalWidth") == 300,
                   what="the thumbnail loaded")  # fmt: skip
        composer.fill("What is in this screenshot?")
        composer.press("Enter")
        page.wait_for_url("**/c/1")
        expect(page.locator(".parley-message-body").last).to_have_text("A blue picture with a yellow box.")
        sent = page.locator(".parley-message-files img")
        expect(sent).to_be_visible()
        expect(page.locator(".parley-tray img")).to_have_count(0)  # the tray emptied on Send
        sent.click()
        whole = page.locator(".parley-image-whole img")
        expect(whole).to_be_visible()
        wait_until(lambda: whole.evaluate("(img) => img.naturalWidth") == 300, what="the whole image")

        image_part = upstream.requests[-1]["messages"][-1]["content"][1]
        media_type, data = decode_data_url(image_part["image_url"]["url"])
        received = Image.open(io.BytesIO(data))
        assert media_type == "image/png" and received.size == (300, 200)
        assert received.convert("RGB").tobytes() == Image.open(io.BytesIO(png)).convert("RGB").tobytes()
        assert_no_errors(app)
