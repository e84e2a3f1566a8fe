"""Files in a message: images re-encoded without metadata and sent as ``image_url`` parts, documents (text, a real
PDF) sent as their text and cut to fit the context window, models that take no images refused before anything is
sent, limits, and the ``/api`` and ``/v1`` shapes; on the fake upstream, which records what it receives."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fpdf import FPDF
from PIL import Image
from sqlmodel import select

from chat.attachments import AttachmentRefused, AttachmentTooLarge, FileLimits, decode_data_url, prepare
from chat.engine import Engine
from chat.engine.attaching import ImagesNotSupported
from chat.provider import Provider
from chat.store import Attachment, Blob, Status, Store
from chat.store import attachments as stored

from .browser import assert_no_errors, free_port, serve
from .fake_upstream import FakeUpstream, Script
from .helpers import read_answer

GPS_TAG = 0x8825  # EXIF's GPSInfo
ORIENTATION_TAG = 0x0112


def photo(size: tuple[int, int] = (64, 48), *, fmt: str = "JPEG", gps: bool = True, orientation: int = 1) -> bytes:
    """A picture as a phone writes one: EXIF with a GPS position and an orientation."""
    image = Image.new("RGB", size, (10, 120, 200))
    image.paste((250, 250, 0), (0, 0, size[0] // 2, size[1] // 2))  # a corner, to see rotations
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    if gps:
        exif[GPS_TAG] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x010F] = "PhoneMaker"  # Make
    out = io.BytesIO()
    image.save(out, format=fmt, exif=exif.tobytes())
    return out.getvalue()


def pdf(pages: list[str]) -> bytes:
    """A real PDF with one line of text per page (fpdf2)."""
    document = FPDF()
    document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 10, text)
    return bytes(document.output())


def last_user_content(upstream: FakeUpstream) -> Any:
    return upstream.requests[-1]["messages"][-1]["content"]


# -- reading files ---------------------------------------------------------------------------------


def test_a_photo_is_re_encoded_upright_without_its_exif() -> None:
    original = photo(orientation=6, gps=True)  # 6: the camera was turned, the viewer rotates 90°
    assert Image.open(io.BytesIO(original)).getexif().get(GPS_TAG) is not None
    file = prepare(original, "IMG_0001.JPG")
    assert file.kind == "image" and file.media_type == "image/jpeg"
    image = Image.open(io.BytesIO(file.data))
    assert image.format == "JPEG" and dict(image.getexif()) == {}  # no GPS, no maker, no orientation left
    assert (image.width, image.height) == (48, 64) == (file.width, file.height)  # turned upright
    assert b"PhoneMaker" not in file.data and b"Exif" not in file.data
    assert file.thumbnail is not None and Image.open(io.BytesIO(file.thumbnail)).size == (48, 64)


def test_a_png_stays_lossless_and_a_large_image_is_scaled_down() -> None:
    out = io.BytesIO()
    image = Image.new("RGBA", (3000, 1000), (1, 2, 3, 128))
    info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    info.add_text("Comment", "secret-location")
    image.save(out, format="PNG", pnginfo=info)
    file = prepare(out.getvalue(), "big.png", FileLimits(max_image_side=1500))
    assert file.media_type == "image/png" and (file.width, file.height) == (1500, 500)
    decoded = Image.open(io.BytesIO(file.data))
    assert decoded.mode == "RGBA" and b"secret-location" not in file.data and "Comment" not in decoded.info
    small = Image.new("RGBA", (40, 30), (1, 2, 3, 128))
    small.paste((200, 100, 50, 255), (5, 5, 20, 20))
    out = io.BytesIO()
    small.save(out, format="PNG", pnginfo=info)
    kept = Image.open(io.BytesIO(prepare(out.getvalue(), "small.png").data))
    assert kept.tobytes() == small.tobytes()  # not scaled: every pixel as it was


def test_types_are_read_from_the_content_and_bad_files_are_refused_clearly() -> None:
    assert prepare(b"print('hi')\n", "script.py").text == "print('hi')\n"
    assert prepare(photo(), "not-really.txt").kind == "image"  # a name says nothing
    assert prepare("# Título\r\nñ".encode("utf-16"), "notes.md").text == "# Título\nñ"  # a BOM'd UTF-16 file
    with pytest.raises(AttachmentRefused, match=r"archive.zip is not a file Parley reads.*PNG, JPEG"):
        prepare(b"PK\x03\x04\x00\x00\x00binary\x00\xff\xfe", "archive.zip")
    with pytest.raises(AttachmentRefused, match="empty"):
        prepare(b"", "empty.txt")
    with pytest.raises(AttachmentTooLarge, match=r"huge.txt is 2.0 MB; a file may be at most 1.0 MB"):
        prepare(b"a" * (2 * 1024 * 1024), "huge.txt", FileLimits(max_bytes=1024 * 1024))
    with pytest.raises(AttachmentTooLarge, match=r"4,000×3,000 pixels"):
        prepare(photo((4000, 3000), gps=False), "panorama.jpg", FileLimits(max_pixels=1_000_000))
    with pytest.raises(AttachmentRefused, match="could not be read as a PDF"):
        prepare(b"%PDF-1.7 and then nothing", "broken.pdf")
    assert prepare(b"x", "../../etc/passwd").name == "passwd"


def test_a_real_pdf_is_read_as_its_text() -> None:
    file = prepare(pdf(["The river Loire is long.", "Page two: 1,006 km."]), "rivers.pdf")
    assert file.kind == "document" and file.media_type == "application/pdf"
    assert "The river Loire is long." in (file.text or "") and "Page two: 1,006 km." in (file.text or "")


# -- through the engine ----------------------------------------------------------------------------


@pytest.fixture
async def vision(store: Store, upstream: FakeUpstream) -> AsyncIterator[Engine]:
    """An engine whose upstream takes images unless told otherwise (``text_only_models``: ``text-*``)."""
    provider = Provider(upstream.base_url, "test-key", connect_timeout=2, read_timeout=5, text_only_models=["text-*"])
    engine = Engine(store, provider, default_model="fake-model", max_attachments=3)
    yield engine
    await engine.shutdown()
    await provider.close()


async def finished(engine: Engine, message_id: int | None) -> Any:
    generation = engine.live(message_id)  # type: ignore[arg-type]
    return await generation.wait() if generation is not None else None


async def test_a_pasted_image_arrives_as_the_data_url_of_its_re_encoded_bytes(
    vision: Engine, upstream: FakeUpstream, store: Store
) -> None:
    row = await vision.attach(photo(), "pasted.jpg")
    _, answer = await vision.send(None, "What is in this picture?", attachments=[row.id])  # type: ignore[list-item]
    assert (await finished(vision, answer.id)).status == Status.complete
    text_part, image_part = last_user_content(upstream)
    assert text_part == {"type": "text", "text": "What is in this picture?"}
    media_type, data = decode_data_url(image_part["image_url"]["url"])
    _, kept = await asyncio.to_thread(stored.attachment_bytes, store, row.id)  # type: ignore[arg-type]
    assert media_type == "image/jpeg" and data == kept  # what the model saw is what is stored and shown
    assert dict(Image.open(io.BytesIO(data)).getexif()) == {}  # EXIF, GPS included, is gone
    history = await asyncio.to_thread(vision.request_messages, answer, "")
    assert history[-1]["content"][1] == image_part  # a regenerated answer sends it again


async def test_a_model_that_takes_no_images_is_refused_before_anything_is_sent(
    vision: Engine, upstream: FakeUpstream, store: Store
) -> None:
    row = await vision.attach(photo(), "pasted.jpg")
    with pytest.raises(ImagesNotSupported, match="text-model does not take images.*your text is kept"):
        await vision.send(None, "Describe it", model="text-model", attachments=[row.id])  # type: ignore[list-item]
    assert upstream.requests == [] and await asyncio.to_thread(store.count_messages) == 0
    still = await asyncio.to_thread(stored.get_attachment, store, row.id)  # type: ignore[arg-type]
    assert still.message_id is None  # still waiting in the composer, to send to another model


async def test_an_upstream_that_refuses_images_is_remembered(
    vision: Engine, upstream: FakeUpstream, store: Store
) -> None:
    upstream.script = Script(reject_images="Invalid content type. image_url is only supported by certain models.")
    first = await vision.attach(photo(), "a.jpg")
    _, answer = await vision.send(None, "Describe it", attachments=[first.id])  # type: ignore[list-item]
    failed = await finished(vision, answer.id)
    assert failed.status == Status.error and "fake-model does not take images" in failed.error
    assert "only supported by certain models" in failed.error and len(upstream.requests) == 1
    second = await vision.attach(photo(), "b.jpg")
    with pytest.raises(ImagesNotSupported):
        await vision.send(answer.conversation_id, "And this one?", attachments=[second.id])  # type: ignore[list-item]
    assert len(upstream.requests) == 1  # refused before sending, this time
    _, text_only = await vision.send(answer.conversation_id, "Just text, then.")
    assert (await finished(vision, text_only.id)).status == Status.complete
    sent = upstream.requests[-1]["messages"]
    assert sent[0]["content"].startswith("Describe it") and "the image a.jpg was attached here" in sent[0]["content"]


async def test_a_pdf_arrives_as_its_text_before_the_question(vision: Engine, upstream: FakeUpstream) -> None:
    row = await vision.attach(pdf(["Loire: 1,006 km.", "Rhône: 813 km."]), "rivers.pdf")
    assert row.kind == "document" and row.tokens and row.tokens > 5
    _, answer = await vision.send(None, "Which is longer?", attachments=[row.id])  # type: ignore[list-item]
    await finished(vision, answer.id)
    content = last_user_content(upstream)
    assert isinstance(content, str)  # no images: a plain string, which every server takes
    assert content.startswith('<document name="rivers.pdf">\n') and content.endswith("</document>\n\nWhich is longer?")
    assert "Loire: 1,006 km." in content and "Rhône: 813 km." in content


async def test_a_document_too_large_for_the_window_is_cut_and_says_so(store: Store, upstream: FakeUpstream) -> None:
    provider = Provider(upstream.base_url, "test-key", read_timeout=5, context_window=2000)
    engine = Engine(store, provider, default_model="fake-model")
    try:
        text = "".join(f"Line {i}: the river flows on and on.\n" for i in range(2000))  # ~ 20,000 tokens
        row = await engine.attach(text.encode(), "long.txt")
        _, answer = await engine.send(None, "Summarise it", attachments=[row.id])  # type: ignore[list-item]
        assert (await finished(engine, answer.id)).status == Status.complete
        cut = await asyncio.to_thread(stored.get_attachment, store, row.id)  # type: ignore[arg-type]
        assert cut.sent_chars is not None and 0 < cut.sent_chars < len(text) // 5
        content = last_user_content(upstream)
        assert text[: cut.sent_chars] in content and text[: cut.sent_chars + 100] not in content
        counted = provider.counters.get("fake-model").count(upstream.requests[-1]["messages"])
        assert counted + 500 <= 2000  # the answer's reserve (a quarter of the window) is kept free
    finally:
        await engine.shutdown()
        await provider.close()


async def test_limits_per_message_and_ids_that_are_not_pending(vision: Engine, store: Store) -> None:
    rows = [await vision.attach(f"note {i}".encode(), f"n{i}.txt") for i in range(4)]
    with pytest.raises(AttachmentTooLarge, match="at most 3 files"):
        await vision.send(None, "Four notes", attachments=[r.id for r in rows])  # type: ignore[misc]
    user, answer = await vision.send(None, "Three notes", attachments=[r.id for r in rows[:3]])  # type: ignore[misc]
    await finished(vision, answer.id)
    with pytest.raises(stored.NotFound):  # sent already: a file goes with one message
        await vision.send(user.conversation_id, "Again", attachments=[rows[0].id])  # type: ignore[list-item]
    sent = await asyncio.to_thread(stored.attachments_of, store, [user.id])
    assert [a.name for a in sent[user.id]] == ["n0.txt", "n1.txt", "n2.txt"]  # type: ignore[index]


async def test_files_go_with_their_conversation_and_one_blob_serves_many(vision: Engine, store: Store) -> None:
    same = photo()
    first, second = await vision.attach(same, "a.jpg"), await vision.attach(same, "b.jpg")
    assert first.sha256 == second.sha256  # stored once
    _, answer = await vision.send(None, "Look", attachments=[first.id])  # type: ignore[list-item]
    await finished(vision, answer.id)
    _, other = await vision.send(None, "Look again", attachments=[second.id])  # type: ignore[list-item]
    await finished(vision, other.id)

    def counts() -> tuple[int, int]:
        with store._session() as session:
            return len(session.exec(select(Attachment)).all()), len(session.exec(select(Blob)).all())

    blobs = len({first.sha256, first.thumbnail_sha256})  # a small image is its own thumbnail
    assert await asyncio.to_thread(counts) == (2, blobs)
    await vision.delete_conversation(answer.conversation_id)
    assert await asyncio.to_thread(counts) == (1, blobs)  # the other conversation still has it
    await vision.delete_conversation(other.conversation_id)
    assert await asyncio.to_thread(counts) == (0, 0)


# -- over HTTP -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: FakeUpstream) -> Iterator[str]:
    port = free_port()
    with serve(tmp_path_factory.mktemp("attachments"), fake_upstream_server, port,
               PARLEY_TEXT_ONLY_MODELS="text-*") as process:  # fmt: skip
        yield f"http://127.0.0.1:{port}"
        assert_no_errors(process)


@pytest.fixture
def client(app_url: str, upstream: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app_url, timeout=15) as client:
        yield client


def test_api_upload_send_and_serve_an_image_safely(client: httpx.Client, upstream: FakeUpstream) -> None:
    uploaded = client.post("/api/attachments", files={"file": ("photo.jpg", photo(), "image/jpeg")})
    assert uploaded.status_code == 201, uploaded.text
    described = uploaded.json()
    assert described["kind"] == "image" and described["message_id"] is None and described["width"] == 64
    conversation = client.post("/api/conversations").json()["id"]
    answer = read_answer(client, "POST", f"/api/conversations/{conversation}/messages",
                         {"content": "What is it?", "attachments": [described["id"]]})  # fmt: skip
    assert answer["text"]  # read_answer checks that it completed
    content = client.get(f"/api/attachments/{described['id']}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "image/jpeg"
    assert content.headers["cache-control"].startswith("private") and content.headers["x-content-type-options"] == (
        "nosniff"
    )
    assert "sandbox" in content.headers["content-security-policy"]
    sent = decode_data_url(last_user_content(upstream)[1]["image_url"]["url"])[1]
    assert sent == content.content
    thumbnail = client.get(f"/api/attachments/{described['id']}/thumbnail")
    assert thumbnail.status_code == 200 and Image.open(io.BytesIO(thumbnail.content)).size == (64, 48)
    detail = client.get(f"/api/conversations/{conversation}").json()
    assert [a["name"] for a in detail["messages"][0]["attachments"]] == ["photo.jpg"]


def test_api_inline_base64_files_and_clear_refusals(client: httpx.Client, upstream: FakeUpstream) -> None:
    conversation = client.post("/api/conversations").json()["id"]
    files = [{"name": "notes.md", "data": base64.b64encode(b"# Rivers\nThe Loire.").decode()}]
    answer = read_answer(client, "POST", f"/api/conversations/{conversation}/messages",
                         {"content": "Read my notes", "files": files})  # fmt: skip
    assert answer["text"]  # read_answer checks that it completed
    assert '<document name="notes.md">\n# Rivers\nThe Loire.\n</document>' in last_user_content(upstream)
    bad = client.post("/api/attachments", files={"file": ("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\xff")})
    assert bad.status_code == 422 and "not a file Parley reads" in bad.json()["detail"]
    image = client.post("/api/attachments", files={"file": ("p.jpg", photo(), "image/jpeg")}).json()
    body = {"content": "Describe", "model": "text-model", "attachments": [image["id"]]}
    refused = client.post(f"/api/conversations/{conversation}/messages", json=body)
    assert refused.status_code == 422 and "does not take images" in refused.text
    notes = client.get(f"/api/conversations/{conversation}").json()["messages"][0]["attachments"][0]
    document = client.get(f"/api/attachments/{notes['id']}/content")
    assert document.headers["content-type"] == "application/octet-stream"
    assert document.headers["content-disposition"].startswith("attachment;")


def test_v1_takes_openai_image_and_file_parts(client: httpx.Client, upstream: FakeUpstream) -> None:
    jpeg = photo()
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    document = "data:application/pdf;base64," + base64.b64encode(pdf(["The Seine: 777 km."])).decode()
    body = {"model": "fake-model", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What do these show?"},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "file", "file": {"filename": "seine.pdf", "file_data": document}},
    ]}]}  # fmt: skip
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    text, image = last_user_content(upstream)
    assert text["text"].startswith('<document name="seine.pdf">') and "The Seine: 777 km." in text["text"]
    sent = decode_data_url(image["image_url"]["url"])[1]
    assert sent != jpeg and dict(Image.open(io.BytesIO(sent)).getexif()) == {}  # re-encoded, EXIF gone
    conversation = response.headers["x-parley-conversation-id"]
    stored_files = client.get(f"/api/conversations/{conversation}").json()["messages"][0]["attachments"]
    assert sorted(a["kind"] for a in stored_files) == ["document", "image"]
    remote = {
        **body,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}},
                ],
            }
        ],
    }
    refused = client.post("/v1/chat/completions", json=remote)
    assert refused.status_code == 400 and "does not fetch URLs" in refused.json()["error"]["message"]
