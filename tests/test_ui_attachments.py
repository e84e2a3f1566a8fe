"""Files in the composer and in sent messages, with NiceGUI's simulated user on the real app.py and the fake upstream
(the browser's upload is ``attach_files.js``: here its "attached" event is given what ``POST /api/attachments``
answers; the Chromium story in ``test_attachments_browser.py`` uploads for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nicegui.testing import User

from chat.attachments import prepare
from chat.store import attachments as stored

from .fake_upstream import FakeUpstream
from .helpers import opened_store, send, stored_path, wait_for
from .test_attachments import pdf, photo


@pytest.fixture
def text_only(monkeypatch: pytest.MonkeyPatch, app_env: Path) -> None:
    monkeypatch.setenv("PARLEY_TEXT_ONLY_MODELS", "other-*")


def upload(app_env: Path, data: bytes, name: str) -> dict:
    """What ``POST /api/attachments`` answers for a file (stored the same way)."""
    with opened_store(app_env) as store:
        file = prepare(data, name)
        row = stored.add_attachment(store, file, user_id=None, tokens=42 if file.kind == "document" else 765)
    return {"id": row.id, "kind": row.kind, "name": row.name, "tokens": row.tokens, "sent_chars": None,
            "text_chars": len(row.text) if row.text else None}  # fmt: skip


async def test_files_wait_in_the_tray_go_with_the_message_and_show_in_it(
    text_only: None, user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await user.open("/")
    await user.should_not_see(marker="tray-1")
    image, document = upload(app_env, photo(), "beach.jpg"), upload(app_env, pdf(["Tide tables."]), "tides.pdf")
    user.find(marker="attach").trigger("attached", image)
    user.find(marker="attach").trigger("attached", document)
    await user.should_see(marker=f"tray-{image['id']}")
    await user.should_see("tides.pdf · 42 tokens")
    await send(user, "What time is high tide here?")
    await wait_for(lambda: len(stored_path(app_env)) == 2 and stored_path(app_env)[1].content, what="the answer")
    with opened_store(app_env) as store:
        files = stored.attachments_of(store, [stored_path(app_env)[0].id])
    assert [f.name for f in next(iter(files.values()))] == ["beach.jpg", "tides.pdf"]
    content = upstream.requests[-1]["messages"][-1]["content"]
    assert content[0]["text"].startswith('<document name="tides.pdf">') and content[1]["type"] == "image_url"
    await user.should_see(marker="message-files")
    await user.should_see(marker="attachment-image")
    await user.should_not_see(marker=f"tray-{image['id']}")  # the tray is empty again


async def test_a_model_without_images_refuses_before_sending_and_keeps_text_and_files(
    text_only: None, user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    with opened_store(app_env) as store:
        conversation = store.create_conversation(model="other-model")
    await user.open(f"/c/{conversation.id}")
    image = upload(app_env, photo(), "beach.jpg")
    user.find(marker="attach").trigger("attached", image)
    await user.should_see(marker=f"tray-{image['id']}")
    await send(user, "Describe this photo")
    await user.should_see("other-model does not take images")
    assert user.find(marker="composer").elements.pop().value == "Describe this photo"
    await user.should_see(marker=f"tray-{image['id']}")  # still there: remove it, or change the model
    assert upstream.requests == []
    user.find(marker="remove-attachment").click()
    await user.should_not_see(marker=f"tray-{image['id']}")

    def deleted() -> bool:
        with opened_store(app_env) as store:
            try:
                stored.get_attachment(store, image["id"])
            except stored.NotFound:
                return True
        return False

    await wait_for(deleted, what="the removed file deleted")
    user.find(marker="attach").trigger("refused", {"name": "tool.exe", "detail": "tool.exe is not a file Parley reads"})
    await user.should_see("tool.exe is not a file Parley reads")
    assert user.find(marker="composer").elements.pop().value == "Describe this photo"  # still the text typed


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch, app_env: Path) -> None:
    monkeypatch.setenv("PARLEY_CONTEXT_WINDOW", "2000")


async def test_a_document_cut_to_fit_says_so_under_the_message(
    small_window: None, user: User, app_env: Path, upstream: FakeUpstream
) -> None:
    await user.open("/")
    text = "".join(f"Line {i}: the tide comes in and goes out.\n" for i in range(2000))
    document = upload(app_env, text.encode(), "tides.txt")
    user.find(marker="attach").trigger("attached", document)
    await user.should_see("tides.txt")
    await send(user, "Summarise the tides")
    await user.should_see(marker="attachment-cut")
    await user.should_see("cut to fit the model's context window")
    with opened_store(app_env) as store:
        row = stored.get_attachment(store, document["id"])
    assert row.sent_chars is not None and row.sent_chars < len(text)
    assert text[: row.sent_chars] in upstream.requests[-1]["messages"][-1]["content"]
