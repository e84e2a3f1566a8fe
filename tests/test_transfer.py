"""Export and import: Parley JSON round trips (the same trees), Markdown, each foreign format from files built from
its public description (``tests/data/``), malformed files at several depths (nothing imported, the field named), the
same file twice, the limits; and the ``/api`` routes on uvicorn. Every store test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import io
import json
import logging
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fpdf import FPDF
from nicegui.elements.upload_files import SmallFileUpload
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation
from PIL import Image
from sqlmodel import Session, func, select

from chat.api.routes import register_api
from chat.attachments import FileLimits, prepare
from chat.auth import Accounts
from chat.engine import Account, Engine
from chat.engine.events import (
    ReasoningDelta,
    ReasoningEnded,
    TextDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolResult,
    ToolStatus,
    content_of,
    numbered_log,
    parts,
    to_json,
)
from chat.store import Attachment, Blob, Conversation, Message, Role, Status, Store
from chat.store.attachments import add_attachment, attachments_of, blobs, set_sent_chars
from chat.store.transfer import NewConversation, NewMessage, import_conversations, owned_conversations
from chat.transfer import ImportTooLarge, InvalidImport, Limits, import_file, markdown, markdown_zip, parley_document
from chat.transfer.export import json_bytes

from .browser import ROOT, free_port
from .helpers import PASSWORD, add_users, opened_store, wait_for

DATA = Path(__file__).parent / "data"
MESSAGE_FIELDS = ("role", "content", "status", "error", "error_status", "error_code", "model", "temperature",
                  "finish_reason", "prompt_tokens", "completion_tokens", "ttft", "duration", "omitted_messages",
                  "events", "created_at", "selected")  # fmt: skip
CONVERSATION_FIELDS = ("title", "system_prompt", "model", "temperature", "tools", "pinned", "archived", "created_at",
                       "updated_at")  # fmt: skip


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def count(store: Store, table: type = Conversation) -> int:
    with Session(store.engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


def tree(messages: list[Message]) -> list[dict[str, Any]]:
    """The messages as nested dicts of every field that matters, siblings in order (ids left out)."""
    children: dict[int | None, list[Message]] = {}
    for message in sorted(messages, key=lambda m: m.id or 0):
        children.setdefault(message.parent_id, []).append(message)

    def build(parent: int | None) -> list[dict[str, Any]]:
        return [
            {**{f: getattr(m, f) for f in MESSAGE_FIELDS}, "children": build(m.id)} for m in children.get(parent, [])
        ]

    return build(None)


def shown(store: Store, conversation_id: int) -> list[tuple[str, str]]:
    return [(m.role.value, m.content) for m in store.path(conversation_id)]


def by_title(store: Store, owner: int | None) -> dict[str, Conversation]:
    return {c.title: c for c in store.list_conversations(owner=owner)}


def rich_conversations(store: Store, owner: int) -> None:
    """Two conversations with what a lossless export must keep: settings, a regenerated (failed) variant not shown, a
    reasoning + tool call answer with usage and timings, a stopped answer."""
    first = store.create_conversation(user_id=owner, title="Rich one", system_prompt="Be exact.", model="fake-model",
                                      temperature=0.3, tools=["calculator"], pinned=True)  # fmt: skip
    user, answer = store.add_exchange(first.id, "6*7?", model="fake-model", temperature=0.3)
    events = numbered_log([
        ReasoningDelta("Multiply."), ReasoningEnded(1.5), ToolCallStarted("k1", "calculator", "builtin"),
        ToolCallReady("k1", "calculator", '{"expression": "6*7"}', {"expression": "6*7"}),
        ToolResult("k1", ToolStatus.succeeded, "42", duration=0.01), TextDelta("It is 42."),
    ])  # fmt: skip
    store.finish_message(answer.id, content="It is 42.", status=Status.complete, finish_reason="stop",
                         prompt_tokens=30, completion_tokens=9, ttft=0.25, duration=1.75, omitted_messages=0,
                         events=[to_json(e) for e in events])  # fmt: skip
    variant = store.add_variant(answer.id, model="other-model", temperature=1.2)
    store.finish_message(variant.id, content="Forty", status=Status.error, error="The upstream failed (502).",
                         error_status=502, error_code="bad_gateway")  # fmt: skip
    store.select_variant(answer.id)
    _, second_answer = store.add_exchange(first.id, "And 7*8?", model="fake-model", temperature=0.3)
    store.finish_message(second_answer.id, content="It is", status=Status.cancelled)
    other = store.create_conversation(user_id=owner, title="Plain", archived=True)
    _, reply = store.add_exchange(other.id, "Hello", model=None, temperature=None)
    store.finish_message(reply.id, content="Hi!", status=Status.complete, finish_reason="stop")


def user_id(store: Store, name: str) -> int:
    return store.create_user(name, "$argon2id$v=19$m=65536,t=3,p=4$x$y").id  # type: ignore[return-value]


# -- Parley JSON and Markdown ------------------------------------------------------------------------------------------


def test_parley_json_round_trip_gives_the_same_trees(store: Store) -> None:
    ann, bob = user_id(store, "ann"), user_id(store, "bob")
    rich_conversations(store, ann)
    exported = owned_conversations(store, ann)
    raw = json_bytes(parley_document(exported))
    name, result = import_file(store, bob, raw)
    assert (name, result.imported, result.skipped, result.messages) == ("parley", 2, 0, 7)
    imported = owned_conversations(store, bob)
    assert len(imported) == 2
    for (original, old), (copy_, new) in zip(exported, imported, strict=True):
        assert {f: getattr(copy_, f) for f in CONVERSATION_FIELDS} == {f: getattr(original, f) for f in
                                                                       CONVERSATION_FIELDS}  # fmt: skip
        assert copy_.user_id == bob and copy_.source_id.startswith("parley:")
        assert tree(new) == tree(old)
        assert shown(store, copy_.id) == shown(store, original.id)
    rich = imported[0][1]
    answer = next(m for m in rich if m.content == "It is 42.")
    assert [p.kind for p in parts(content_of(answer))] == ["reasoning", "tool_calls", "text"]
    # the same file again: nothing new; into the exporting user: new copies (the originals have no source id)
    again = import_file(store, bob, raw)[1]
    assert (again.imported, again.skipped) == (0, 2) and count(store) == 4
    # an export of the copies imports as the same conversations (their source ids go with them)
    assert import_file(store, bob, json_bytes(parley_document(imported)))[1].skipped == 2


def test_markdown_is_the_shown_path_readable(store: Store) -> None:
    ann = user_id(store, "ann")
    rich_conversations(store, ann)
    conversation, messages = owned_conversations(store, ann)[0]
    text = markdown(conversation, messages)
    assert text.startswith("# Rich one\n")
    assert "## System prompt\n\nBe exact." in text
    assert text.count("## User") == 2 and text.count("## Assistant") == 2
    assert "> **Reasoning** (2 s)" in text and "> Multiply." in text
    assert "> **Tool call** `calculator` — succeeded" in text and "Result: `42`" in text
    assert "It is 42." in text and "*Stopped.*" in text
    assert "Forty" not in text  # the variant not shown stays out
    assert text.index("6*7?") < text.index("It is 42.") < text.index("And 7*8?")


# -- attachments -------------------------------------------------------------------------------------------------------

ATTACHMENT_FIELDS = ("kind", "name", "media_type", "size", "width", "height", "text", "tokens", "sent_chars",
                     "created_at")  # fmt: skip


def picture(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    """A small image with two colours, as a camera or a screenshot tool writes it."""
    image = Image.new("RGB", size, (10, 120, 200))
    image.paste((250, 250, 0), (0, 0, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def pdf(text: str) -> bytes:
    """A real one-page PDF with ``text`` (fpdf2)."""
    document = FPDF()
    document.set_font("helvetica", size=12)
    document.add_page()
    document.multi_cell(0, 10, text)
    return bytes(document.output())


def with_files(store: Store, owner: int) -> tuple[Conversation, dict[str, Attachment]]:
    """A conversation of ``owner`` whose first user message carries a JPEG, a PNG and a PDF (its text cut to 10
    characters when sent), and whose second carries a Markdown file and the same JPEG again; by file name."""
    files = {name: prepare(data, name) for name, data in (
        ("p.jpg", picture("JPEG")), ("q.png", picture("PNG")), ("rivers.pdf", pdf("The river Loire is long.")),
        ("notes.md", "# Notes\n\nCafé: *ok*.\n".encode()))}  # fmt: skip
    rows = {name: add_attachment(store, file, user_id=owner, tokens=7) for name, file in files.items()}
    new = Conversation(user_id=owner, title="Files")
    first, answer = store.add_exchange(None, "Look at these", model="m", temperature=0.5, new_conversation=new,
                                       attachments=[rows[n].id for n in ("p.jpg", "q.png", "rivers.pdf")],
                                       owner=owner)  # fmt: skip
    store.finish_message(answer.id, content="Seen.", status=Status.complete)
    set_sent_chars(store, {rows["rivers.pdf"].id: 10})  # type: ignore[dict-item]
    again = add_attachment(store, files["p.jpg"], user_id=owner, tokens=1)
    store.add_exchange(first.conversation_id, "And these", model="m", temperature=0.5,
                       attachments=[again.id, rows["notes.md"].id], owner=owner)  # type: ignore[list-item]  # fmt: skip
    conversation = store.get_conversation(first.conversation_id)
    by_message = attachments_of(store, [first.id])  # type: ignore[list-item]
    return conversation, {row.name: row for row in by_message[first.id]} | {"notes.md": rows["notes.md"]}  # type: ignore[index]


def stored_files(store: Store, conversation_id: int) -> list[list[tuple[Attachment, bytes, bytes | None]]]:
    """The attachments of each user message of a conversation (oldest first), with their bytes and thumbnails'."""
    users = [m for m in store.messages(conversation_id) if m.role == Role.user]
    found = attachments_of(store, [m.id for m in users])  # type: ignore[misc]
    data = blobs(store, [sha for rows in found.values() for r in rows for sha in (r.sha256, r.thumbnail_sha256) if sha])
    return [[(r, data[r.sha256], data.get(r.thumbnail_sha256 or "")) for r in found.get(m.id, [])]  # type: ignore[call-overload]
            for m in users]  # fmt: skip


def test_attachments_go_with_a_parley_json_export_and_import(store: Store) -> None:
    ann, bob = user_id(store, "ann"), user_id(store, "bob")
    conversation, originals = with_files(store, ann)
    document = parley_document(owned_conversations(store, ann))
    raw = json_bytes(document)
    messages = document["conversations"][0]["messages"]
    assert [len(m.get("attachments", [])) for m in messages] == [3, 0, 2, 0]  # only messages with files have the key
    jpeg = messages[0]["attachments"][0]
    assert set(jpeg) == {"kind", "name", "media_type", "width", "height", "text", "tokens", "sent_chars",
                         "created_at", "data", "thumbnail"}  # fmt: skip
    assert (jpeg["kind"], jpeg["name"], jpeg["media_type"], jpeg["width"], jpeg["height"]) == (
        "image", "p.jpg", "image/jpeg", 40, 30)  # fmt: skip
    original = dict(blobs(store, [originals["p.jpg"].sha256]))[originals["p.jpg"].sha256]
    assert base64.b64decode(jpeg["data"]) == original and base64.b64decode(jpeg["thumbnail"])[:2] == b"\xff\xd8"
    assert messages[0]["attachments"][2]["text"] == "The river Loire is long." and (
        messages[0]["attachments"][2]["thumbnail"] is None)  # fmt: skip
    assert messages[2]["attachments"][1]["data"] == jpeg["data"]  # the same file attached again

    name, result = import_file(store, bob, raw)
    assert (name, result.imported, result.messages) == ("parley", 1, 4)
    assert (result.attachments, result.attachments_skipped, result.warnings) == (5, 0, [])
    [(copy_, _)] = owned_conversations(store, bob)
    before, after = stored_files(store, conversation.id), stored_files(store, copy_.id)  # type: ignore[arg-type]
    assert [[r.name for r, _, _ in files] for files in after] == [["p.jpg", "q.png", "rivers.pdf"],
                                                                   ["notes.md", "p.jpg"]]  # fmt: skip
    for old_files, new_files in zip(before, after, strict=True):
        for (old, old_data, old_thumb), (new, new_data, new_thumb) in zip(old_files, new_files, strict=True):
            assert {f: getattr(new, f) for f in ATTACHMENT_FIELDS if f != "size"} == {
                f: getattr(old, f) for f in ATTACHMENT_FIELDS if f != "size"}  # fmt: skip
            assert new.user_id == bob and new.id != old.id and new_data and (new_thumb is None) == (old_thumb is None)
            if new.media_type == "image/jpeg":  # read again as an upload is: re-encoded once more (JPEG is lossy)
                assert new_data == prepare(old_data, old.name).data
                assert Image.open(io.BytesIO(new_data)).size == (40, 30)
            else:  # a PNG, a PDF, a text file: the same bytes, the same blob
                assert new_data == old_data and new.sha256 == old.sha256 == hashlib.sha256(new_data).hexdigest()
    assert after[0][2][0].sent_chars == 10 and after[0][2][0].text == "The river Loire is long."
    assert after[1][0][0].text == "# Notes\n\nCafé: *ok*.\n" and after[1][0][0].media_type == "text/markdown"
    with Session(store.engine) as session:  # every blob once, each one used
        hashes = {sha for row in session.exec(select(Attachment)) for sha in (row.sha256, row.thumbnail_sha256) if sha}
        assert {blob.sha256 for blob in session.exec(select(Blob))} == hashes
    # the same file again: nothing new, no warnings of conversations skipped
    again = import_file(store, bob, raw)[1]
    assert (again.imported, again.skipped, again.attachments, again.warnings) == (0, 1, 0, [])
    assert count(store, Attachment) == 10
    # an export of the copy imports for a third user with the same files
    carl = user_id(store, "carl")
    third = import_file(store, carl, json_bytes(parley_document(owned_conversations(store, bob))))[1]
    assert third.attachments == 5 and stored_files(store, third.conversation_ids[0])[0][1][1] == after[0][1][1]


def test_an_imported_file_is_read_again_and_a_refused_one_is_left_out(store: Store) -> None:
    ann = user_id(store, "ann")
    with_files(store, ann)
    document = parley_document(owned_conversations(store, ann))
    bob = user_id(store, "bob")
    messages = document["conversations"][0]["messages"]
    jpeg, png, pdf_file = messages[0]["attachments"]
    jpeg["data"] = base64.b64encode(base64.b64decode(jpeg["data"])[:60]).decode()  # a corrupted image
    png |= {"kind": "document", "media_type": "text/html", "width": 1, "height": 1, "text": "<script>",
            "tokens": "many", "created_at": "not a time"}  # claims that are not taken  # fmt: skip
    pdf_file["sent_chars"] = 10_000  # more than its text
    messages[2]["attachments"][0]["data"] = "not base64 at all!"
    messages[2]["attachments"][1] = {"name": "../../etc/empty.txt"}  # no data
    messages[1]["attachments"] = [dict(png)]  # on an answer: only a user message carries files
    result = import_file(store, bob, json_bytes(document))[1]
    assert (result.imported, result.messages, result.attachments, result.attachments_skipped) == (1, 4, 2, 4)
    label = 'conversation 0 ("Files")'
    first, answer, second = (str(messages[i]["id"]) for i in range(3))
    assert len(result.warnings) == 4
    assert result.warnings[0].startswith(f'{label}, message {first}: the attached file "p.jpg" was left out: p.jpg ')
    assert result.warnings[1] == (f"{label}, message {answer}: 1 attached file of an assistant message left out "
                                  "(only a user message carries files).")  # fmt: skip
    assert result.warnings[2] == (f'{label}, message {second}: the attached file "notes.md" was left out: notes.md: '
                                  "its data is not base64.")  # fmt: skip
    assert result.warnings[3] == f'{label}, message {second}: the attached file "empty.txt" was left out: empty.txt ' \
                                 "has no data."  # fmt: skip
    files = stored_files(store, result.conversation_ids[0])
    [(png_row, png_data, png_thumb), (pdf_row, _, _)] = files[0]
    assert (png_row.kind, png_row.media_type, png_row.width, png_row.height, png_row.text) == (
        "image", "image/png", 40, 30, None)  # what the bytes are, not what the file said  # fmt: skip
    assert png_row.tokens == 765 and png_row.created_at is not None and png_thumb is not None
    assert Image.open(io.BytesIO(png_data)).size == (40, 30)
    assert pdf_row.sent_chars is None and pdf_row.text == "The river Loire is long."
    assert files[1] == []


def test_a_parley_json_file_of_hostile_attachments_imports_its_messages(store: Store) -> None:
    message = {"id": 1, "role": "user", "content": "hi", "attachments": [
        {"name": "bomb.png", "data": base64.b64encode(picture("PNG", (3000, 3000))).decode()},
        {"name": "a.txt", "data": base64.b64encode(b"plain text").decode(), "sent_chars": True},
        {"name": "b.bin", "data": base64.b64encode(bytes(range(256)) * 4).decode()},
    ]}  # fmt: skip
    document = {"format": "parley", "version": 1, "conversations": [{"id": 1, "title": "T", "messages": [message]}]}
    limits = Limits(files=FileLimits(max_pixels=1_000_000))
    result = import_file(store, None, json.dumps(document).encode(), limits=limits)[1]
    assert (result.imported, result.attachments, result.attachments_skipped) == (1, 1, 2)
    assert "bomb.png is 3,000×3,000 pixels" in result.warnings[0] and "b.bin is not a file Parley reads" in (
        result.warnings[1])  # fmt: skip
    [[(row, data, _)]] = stored_files(store, result.conversation_ids[0])
    assert (row.name, row.kind, row.text, row.sent_chars, row.tokens, data) == (
        "a.txt", "document", "plain text", None, None, b"plain text")  # fmt: skip
    # the structure is still checked: attachments must be a list of objects
    message["attachments"] = [5]
    with pytest.raises(InvalidImport, match=r"messages\[0\]\.attachments\[0\]: expected an object"):
        import_file(store, None, json.dumps(document).encode())


def test_markdown_lists_a_messages_files_by_name(store: Store) -> None:
    ann = user_id(store, "ann")
    with_files(store, ann)
    [(conversation, messages)] = owned_conversations(store, ann)
    text = markdown(conversation, messages)
    assert "Look at these\n\nAttached: `p.jpg` (image), `q.png` (image), `rivers.pdf` (document)\n" in text
    assert "And these\n\nAttached: `notes.md` (document), `p.jpg` (image)\n" in text
    assert text.count("Attached:") == 2 and "base64" not in text and len(text) < 1000
    archive = zipfile.ZipFile(io.BytesIO(markdown_zip([(conversation, messages)])))
    assert "Attached: `p.jpg` (image)" in archive.read(archive.namelist()[0]).decode()


def test_an_open_comparison_goes_with_the_export(store: Store) -> None:
    ann, bob = user_id(store, "ann"), user_id(store, "bob")
    _, answers = store.add_comparison(None, "Which?", ["a", "b"], temperature=0.5,
                                      new_conversation=Conversation(user_id=ann))  # fmt: skip
    assert [a.comparing for a in answers] == [True, True]
    document = parley_document(owned_conversations(store, ann))
    assert [m["comparing"] for m in document["conversations"][0]["messages"]] == [False, True, True]
    imported = import_file(store, bob, json_bytes(document))[1].conversation_ids[0]
    assert [(m.role, m.comparing, m.selected) for m in store.messages(imported)] == [
        (Role.user, False, True), (Role.assistant, True, True), (Role.assistant, True, False)]  # fmt: skip
    # where no comparison can be open (a user message, one answer alone, one continued from) it is not
    hostile = copy.deepcopy(document)
    rows = hostile["conversations"][0]["messages"]
    rows[0]["comparing"] = True
    rows.append({"id": 99, "parent_id": rows[1]["id"], "role": "user", "content": "go on", "comparing": True})
    hostile["conversations"][0]["source_id"] = "other"
    imported = import_file(store, bob, json_bytes(hostile))[1].conversation_ids[0]
    assert not any(m.comparing for m in store.messages(imported))


# -- foreign formats ---------------------------------------------------------------------------------------------------


def test_chatgpt_keeps_branches_and_selects_current_node(store: Store) -> None:
    name, result = import_file(store, None, fixture("chatgpt_conversations.json"))
    assert (name, result.imported, result.skipped) == ("chatgpt", 2, 0)
    titles = by_title(store, None)
    trip = titles["Trip plans"]
    assert trip.source_id == "chatgpt:c0ffee00-0000-4000-8000-000000000001"
    assert trip.created_at.timestamp() == 1714000000.0
    # current_node a3 is on the June branch; the tool call and its output are left out, the answer joined
    assert shown(store, trip.id) == [
        ("user", "Where should I go in June?"), ("assistant", "Try Oslo."),
        ("user", "And the food there?"), ("assistant", "Let me search.\n\nEat fish."),
    ]  # fmt: skip
    messages = store.messages(trip.id)
    assert len(messages) == 7  # u1, a1, a1b, u1b, a2, u3, a3pre+a3
    may = next(m for m in messages if m.content == "Where should I go in May?")
    assert may.parent_id is None and not may.selected
    variants = [m for m in messages if m.parent_id == may.id]
    assert [(m.content, m.selected) for m in variants] == [("Try Lisbon.", False), ("Try Porto.", True)]
    oslo = next(m for m in messages if m.content == "Try Oslo.")
    assert (oslo.model, oslo.finish_reason) == ("gpt-4o", "length")
    # no title: from the first message; an image part is marked; the thoughts become the answer's reasoning
    maths = titles["[image] What is 2+2 in this picture?"]
    assert shown(store, maths.id) == [("user", "[image]\nWhat is 2+2 in this picture?"), ("assistant", "It is 4.")]
    answer = store.path(maths.id)[-1]
    assert [(p.kind, p.text) for p in parts(content_of(answer))] == [
        ("reasoning", "Adding\n\nTwo plus two is four."), ("text", "It is 4.")]  # fmt: skip


def test_claude_with_parent_uuids_and_without(store: Store) -> None:
    name, result = import_file(store, None, fixture("claude_conversations.json"))
    assert (name, result.imported) == ("claude", 2)
    titles = by_title(store, None)
    jokes = titles["Jokes"]
    assert jokes.source_id == "claude:aaaaaaaa-0000-4000-8000-000000000001"
    # two answers to the same question are variants; the newest one's branch is shown
    assert shown(store, jokes.id) == [("user", "Hi there"), ("assistant", "Hello! How can I help?"),
                                      ("user", "Tell me a joke\n\n[file: notes.txt]"),
                                      ("assistant", "I would tell a UDP joke, but you might not get it.")]  # fmt: skip
    answer = store.path(jokes.id)[-1]
    assert [p.kind for p in parts(content_of(answer))] == ["reasoning", "text"]
    assert len(store.variants(answer.id)) == 2
    rust = titles["What is Rust?"]  # no name: titled from its first message; no parents: one straight line
    assert shown(store, rust.id) == [("user", "What is Rust?"), ("assistant", "A systems programming language."),
                                     ("user", "Is it fast?"), ("assistant", "Yes.")]  # fmt: skip
    assert len(store.messages(rust.id)) == 4


def test_open_webui_keeps_branches_errors_and_settings(store: Store) -> None:
    name, result = import_file(store, None, fixture("openwebui_export.json"))
    assert (name, result.imported) == ("openwebui", 1)
    colours = by_title(store, None)["Colours"]
    assert (colours.source_id, colours.system_prompt, colours.pinned) == (
        "openwebui:bbbbbbbb-0000-4000-8000-000000000001", "You answer in one word.", True)  # fmt: skip
    # currentId is on the older answer's branch, not the newest
    assert shown(store, colours.id) == [("user", "Name a colour."), ("assistant", "Blue."), ("user", "Another one?"),
                                        ("assistant", "Green.")]  # fmt: skip
    blue = store.path(colours.id)[1]
    assert (blue.model, blue.prompt_tokens, blue.completion_tokens) == ("llama3:8b", 12, 2)
    failed = next(m for m in store.variants(blue.id) if m.id != blue.id)
    assert (failed.status, failed.error, failed.selected) == (Status.error, "Ollama: model not found", False)


# -- malformed files, the same file twice, limits ---------------------------------------------------------------------


def _chatgpt(change: Callable[[list], None]) -> bytes:
    data = json.loads(fixture("chatgpt_conversations.json"))
    change(data)
    return json.dumps(data).encode()


def _set(path: list, value: Any) -> Callable[[Any], None]:
    def change(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        if value is KeyError:
            del data[path[-1]]
        else:
            data[path[-1]] = value

    return change


def _parley_bad_event(data: dict) -> None:
    data["conversations"][1]["messages"][1]["events"] = [{"kind": "nonsense"}]


MALFORMED = [
    (b"{not json", 400, "not JSON"),
    (b'{"hello": 1}', 400, "not a Parley JSON export"),
    (b"[1, 2]", 422, "conversation 0: not a conversation"),
    (_chatgpt(_set([1, "mapping"], KeyError)), 422, "conversation 1: mapping: missing"),
    (_chatgpt(_set([1, "mapping", "q", "message", "author", "role"], 5)), 422,
     'conversation 1: mapping.q.message.author.role: expected a string, got a number'),
    (_chatgpt(_set([0, "mapping", "a2", "parent"], "nowhere")), 422,
     'conversation 0 ("Trip plans"): mapping.a2.parent: no node "nowhere"'),
    (_chatgpt(_set([0, "current_node"], "gone")), 422, 'conversation 0 ("Trip plans"): current_node: no node "gone"'),
    (_chatgpt(_set([0, "mapping", "root", "parent"], "u1")), 422, "its parents form a cycle"),
    (_chatgpt(_set([1, "mapping", "ans", "message", "content", "parts"], "It is 4.")), 422,
     "conversation 1: mapping.ans.message.content.parts: expected a list or null, got a string"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "status", "words"), MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_file_imports_nothing_and_names_the_field(store: Store, raw: bytes, status: int,
                                                              words: str) -> None:  # fmt: skip
    with pytest.raises(InvalidImport) as raised:
        import_file(store, None, raw)
    assert words in str(raised.value) and raised.value.status == status
    assert count(store) == 0 and count(store, Message) == 0


def test_malformed_foreign_and_parley_files_name_the_field(store: Store) -> None:
    claude = json.loads(fixture("claude_conversations.json"))
    claude[0]["chat_messages"][2]["sender"] = "robot"
    openwebui = json.loads(fixture("openwebui_export.json"))
    openwebui[0]["chat"]["history"]["messages"]["w3"]["parentId"] = "w9"
    ann = user_id(store, "ann")
    rich_conversations(store, ann)
    parley = parley_document(owned_conversations(store, ann))
    bad_event, bad_role = copy.deepcopy(parley), copy.deepcopy(parley)
    _parley_bad_event(bad_event)
    bad_role["conversations"][0]["messages"][0]["role"] = "wizard"
    cases = [
        (claude, 'conversation 0 ("Jokes"): chat_messages[2].sender: expected one of "human", "assistant"'),
        (openwebui, 'conversation 0 ("Colours"): chat.history.messages.w3.parentId: no message "w9"'),
        (bad_event, 'conversation 1 ("Plain"): messages[1].events[0]: not an answer event'),
        (bad_role, 'conversation 0 ("Rich one"): messages[0].role: expected one of'),
    ]
    before = count(store)
    for document, words in cases:
        with pytest.raises(InvalidImport, match=None) as raised:
            import_file(store, ann, json.dumps(document).encode())
        assert words in str(raised.value), (words, str(raised.value))
    assert count(store) == before


def test_a_failure_while_writing_rolls_back_everything(store: Store) -> None:
    good = NewConversation("test:1", [NewMessage("a", None, Role.user, fields={"content": "kept?"})])
    broken = NewConversation("test:2", [NewMessage("b", "missing", Role.user)])
    with pytest.raises(KeyError):
        import_conversations(store, None, [good, broken])
    assert count(store) == 0 and count(store, Message) == 0


def test_the_same_file_twice_does_not_duplicate(store: Store) -> None:
    ann, bob = user_id(store, "ann"), user_id(store, "bob")
    raw = fixture("chatgpt_conversations.json")
    seen: list[tuple[str, int, int]] = []
    first = import_file(store, ann, raw, stages=lambda *step: seen.append(step))[1]
    assert (first.imported, first.skipped) == (2, 0) and seen[-1] == ("writing", 2, 2)
    assert ("reading", 2, 2) in seen
    second = import_file(store, ann, raw)[1]
    assert (second.imported, second.skipped, second.messages) == (0, 2, 0)
    assert len(store.list_conversations(owner=ann)) == 2
    assert import_file(store, bob, raw)[1].imported == 2  # source ids are per user
    # a file holding one conversation twice imports it once
    data = json.loads(raw)
    assert import_file(store, None, json.dumps([data[0], data[0]]).encode())[1].imported == 1


def test_limits(store: Store) -> None:
    raw = fixture("chatgpt_conversations.json")
    with pytest.raises(ImportTooLarge, match="larger than the limit of 100 bytes"):
        import_file(store, None, raw, limits=Limits(max_bytes=100))
    with pytest.raises(ImportTooLarge, match="2 conversations, more than the limit of 1"):
        import_file(store, None, raw, limits=Limits(max_conversations=1))
    with pytest.raises(ImportTooLarge, match=r'conversation 0 \("Trip plans"\): 12 messages, more than the limit of 8'):
        import_file(store, None, raw, limits=Limits(max_messages=8))
    assert count(store) == 0


def test_a_zip_export_is_read(store: Store) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("chat.html", "<html></html>")
        archive.writestr("conversations.json", fixture("claude_conversations.json"))
    assert import_file(store, None, buffer.getvalue())[1].imported == 2


# -- the API -----------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(engine: Engine, store: Store, accounts: Accounts) -> AsyncIterator[str]:
    """``/api`` on uvicorn on the test's loop; yields its base URL."""
    app = FastAPI()
    register_api(app, engine, store, accounts)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or serving.done(), what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def test_api_export_and_import_are_the_owners(engine: Engine, store: Store) -> None:
    accounts = Accounts(store, enabled=True)
    ann_user, bob_user = accounts.add_user("ann", PASSWORD), accounts.add_user("bob", PASSWORD)
    ann = Account(user_id=ann_user.id, name="ann")
    bob = Account(user_id=bob_user.id, name="bob")
    rich_conversations(store, ann_user.id)  # type: ignore[arg-type]
    ann_ids = [c.id for c in store.list_conversations(owner=ann.user_id)]
    tokens = {who.name: accounts.create_token(who, "t").secret for who in (ann, bob)}
    async with served(engine, store, accounts) as base:
        as_ann = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {tokens['ann']}"}, timeout=30)
        as_bob = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {tokens['bob']}"}, timeout=30)
        async with as_ann, as_bob, httpx.AsyncClient(base_url=base) as nobody:
            assert (await nobody.get("/api/export")).status_code == 401
            assert (await nobody.post("/api/import", content=b"[]")).status_code == 401
            one = await as_ann.get(f"/api/conversations/{min(ann_ids)}/export", params={"format": "markdown"})
            assert one.status_code == 200 and one.headers["content-type"].startswith("text/markdown")
            assert "attachment" in one.headers["content-disposition"] and one.text.startswith("# Rich one")
            assert (await as_bob.get(f"/api/conversations/{min(ann_ids)}/export")).status_code == 404
            assert (await as_ann.get("/api/export", params={"format": "xml"})).status_code == 422
            everything = await as_ann.get("/api/export")
            assert everything.status_code == 200 and len(everything.json()["conversations"]) == 2
            zipped = await as_ann.get("/api/export", params={"format": "markdown"})
            names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
            assert sorted(names) == sorted(
                f"{i}-{s}.md" for i, s in zip(sorted(ann_ids), ["rich-one", "plain"], strict=True)
            )
            assert (await as_bob.get("/api/export")).json()["conversations"] == []
            # bob imports ann's export (a multipart upload), then again as a raw body: skipped
            files = {"file": ("parley.json", everything.content, "application/json")}
            imported = await as_bob.post("/api/import", files=files)
            assert imported.status_code == 200, imported.text
            assert imported.json() | {"conversation_ids": []} == {"format": "parley", "imported": 2, "skipped": 0,
                                                                  "messages": 7, "conversation_ids": [],
                                                                  "attachments": 0, "attachments_skipped": 0,
                                                                  "warnings": []}  # fmt: skip
            again = await as_bob.post("/api/import", content=everything.content,
                                      headers={"Content-Type": "application/json"})  # fmt: skip
            assert again.json()["skipped"] == 2 and again.json()["imported"] == 0
            listed = (await as_bob.get("/api/conversations")).json()
            assert sorted(c["id"] for c in listed) == sorted(imported.json()["conversation_ids"])
            # refusals say why, and nothing is written
            bad = await as_bob.post("/api/import", content=b"{oops")
            assert bad.status_code == 400 and "not JSON" in bad.json()["detail"]
            broken = json.loads(fixture("chatgpt_conversations.json"))
            broken[1]["mapping"]["ans"]["parent"] = "lost"
            refused = await as_bob.post("/api/import", files={"file": ("c.json", json.dumps(broken).encode())})
            assert refused.status_code == 422
            assert refused.json()["detail"] == 'conversation 1: mapping.ans.parent: no node "lost"'
            assert (await as_bob.post("/api/import", files={"other": ("x", b"[]")})).status_code == 400
            assert len((await as_bob.get("/api/conversations")).json()) == 2
            schema = (await as_ann.get("/openapi.json")).json()
            assert "multipart/form-data" in schema["paths"]["/api/import"]["post"]["requestBody"]["content"]


async def test_api_export_and_import_carry_attachments(engine: Engine, store: Store) -> None:
    accounts = Accounts(store, enabled=True)
    ann_user, bob_user = accounts.add_user("ann", PASSWORD), accounts.add_user("bob", PASSWORD)
    conversation, _ = with_files(store, ann_user.id)  # type: ignore[arg-type]
    ann, bob = Account(user_id=ann_user.id, name="ann"), Account(user_id=bob_user.id, name="bob")
    tokens = {who.name: accounts.create_token(who, "t").secret for who in (ann, bob)}
    async with served(engine, store, accounts) as base:
        as_ann = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {tokens['ann']}"}, timeout=30)
        as_bob = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {tokens['bob']}"}, timeout=30)
        async with as_ann, as_bob:
            one = await as_ann.get(f"/api/conversations/{conversation.id}/export", params={"format": "markdown"})
            assert "Attached: `p.jpg` (image), `q.png` (image), `rivers.pdf` (document)" in one.text
            everything = await as_ann.get("/api/export")
            files = everything.json()["conversations"][0]["messages"][0]["attachments"]
            assert [f["name"] for f in files] == ["p.jpg", "q.png", "rivers.pdf"] and all(f["data"] for f in files)
            imported = await as_bob.post("/api/import", files={"file": ("p.json", everything.content)})
            assert imported.status_code == 200, imported.text
    copied = stored_files(store, imported.json()["conversation_ids"][0])
    assert [[row.name for row, _, _ in files] for files in copied] == [["p.jpg", "q.png", "rivers.pdf"],
                                                                        ["notes.md", "p.jpg"]]  # fmt: skip
    assert all(row.user_id == bob.user_id for files in copied for row, _, _ in files)


# -- the page ----------------------------------------------------------------------------------------------------------


@pytest.fixture
async def team(app_env: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[User]:
    """The simulated user on app.py in team mode, logged in as ann (bob exists too)."""
    app_env.mkdir(parents=True, exist_ok=True)
    add_users(app_env, "ann", "bob")
    async with user_simulation(main_file=ROOT / "app.py") as simulated:
        response = await simulated.http_client.post("/login", json={"name": "ann", "password": PASSWORD})
        assert response.status_code == 200, response.text
        yield simulated
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail(f"unexpected ERROR logs: {[r.getMessage() for r in errors]}", pytrace=False)


async def upload(user: User, name: str, raw: bytes) -> None:
    picker = user.find(marker="import-upload").elements.pop()
    await picker.handle_uploads([SmallFileUpload(name=name, content_type="application/json", _data=raw)])


async def test_import_from_the_user_menu(team: User, app_env: Path) -> None:
    await team.open("/")
    team.find(marker="menu-import").click()
    await team.should_see(marker="import-dialog")
    broken = json.loads(fixture("openwebui_export.json"))
    del broken[0]["chat"]["history"]["messages"]["w2"]["role"]
    await upload(team, "broken.json", json.dumps(broken).encode())
    await team.should_see('Nothing was imported: conversation 0 ("Colours"): chat.history.messages.w2.role: missing')
    with opened_store(app_env) as store:
        assert store.list_conversations() == []
    await upload(team, "conversations.json", fixture("chatgpt_conversations.json"))
    await team.should_see("Imported 2 conversations (ChatGPT).", retries=100)
    await team.should_see("Trip plans")  # the drawer lists it
    with opened_store(app_env) as store:
        ann = store.user_by_name("ann")
        assert {c.title for c in store.list_conversations(owner=ann.id)} == {  # type: ignore[union-attr]
            "Trip plans", "[image] What is 2+2 in this picture?"}  # fmt: skip
    await upload(team, "conversations.json", fixture("chatgpt_conversations.json"))
    await team.should_see("Imported 0 conversations (ChatGPT); 2 already here, skipped.", retries=100)


def test_what_a_database_cannot_hold_is_refused_or_cleaned(store: Store) -> None:
    document = {"format": "parley", "version": 1, "conversations": [{"id": 1, "title": "T\u0000itle", "messages": [
        {"id": 1, "role": "user", "content": "a\u0000b"}]}]}  # fmt: skip
    conversation_id = import_file(store, None, json.dumps(document).encode())[1].conversation_ids[0]
    assert store.get_conversation(conversation_id).title == "Title"
    assert shown(store, conversation_id) == [("user", "ab")]
    huge = copy.deepcopy(document)
    huge["conversations"][0]["messages"][0]["prompt_tokens"] = 2**40
    nan = json.dumps(document).replace('"id": 1, "title"', '"id": 2, "temperature": NaN, "title"')
    bad_event = copy.deepcopy(document)
    bad_event["conversations"][0]["messages"][0]["events"] = [{"kind": "text_delta", "text": 5, "seq": 5}]
    for raw in (json.dumps(huge).encode(), nan.encode(), json.dumps(bad_event).encode()):
        with pytest.raises(InvalidImport):
            import_file(store, None, raw)
    assert count(store) == 1
