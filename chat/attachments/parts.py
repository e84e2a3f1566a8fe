"""How attachments go into a chat completion request: OpenAI's content parts.

A user message with attachments is sent as (OpenAI, "Images and vision" and the Chat Completions reference,
``ChatCompletionContentPartImageParam``):

* its documents as text before what the user typed, each in a ``<document name="…">`` block (the way chat UIs
  give a model a file; the model sees where each file starts and ends and what it is called);
* its images as ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}`` parts after the text.

Without images the content stays a string (every OpenAI-compatible server takes one; not every one takes parts).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Tokens counted for one image when fitting a request to a context window: OpenAI's count for a high-detail
#: 1024×768 image (85 + 4 tiles × 170), about what a 2048-pixel image scaled by the upstream costs. Servers count
#: images their own way; this keeps room for them.
IMAGE_TOKENS = 765

_DATA_URL = re.compile(
    r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)", re.S
)


@dataclass(frozen=True, slots=True)
class DocumentText:
    """A document as the model gets it: its name and its text (as sent: cut when it did not fit the context window)."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class ImageData:
    """An image as the model gets it: its media type (``image/png``, ``image/jpeg``) and bytes."""

    media_type: str
    data: bytes


def data_url(media_type: str, data: bytes) -> str:
    """``data:<media_type>;base64,<data>`` (RFC 2397)."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def decode_data_url(url: str) -> tuple[str, bytes]:
    """The media type and bytes of a ``data:`` URL (RFC 2397; base64 or percent-encoded).

    Raises:
        ValueError: not a ``data:`` URL, or its base64 is broken.
    """
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        raise ValueError("not a data: URL")
    media_type = match.group("type") or "text/plain"
    payload = match.group("data")
    if match.group("b64"):
        try:
            return media_type, base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as error:
            raise ValueError(f"broken base64 in a data: URL ({error})") from error
    from urllib.parse import unquote_to_bytes

    return media_type, unquote_to_bytes(payload)


def document_block(document: DocumentText) -> str:
    """One document as text for the model: ``<document name="report.pdf">`` … ``</document>`` (quotes and angle
    brackets in the name escaped, so a name cannot close the block)."""
    name = document.name.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    return f'<document name="{name}">\n{document.text}\n</document>'


def user_content(
    text: str, documents: Sequence[DocumentText] = (), images: Sequence[ImageData] = ()
) -> str | list[dict[str, Any]]:
    """A user message's ``content``: ``text`` with ``documents`` before it, and ``images`` as parts after it (see
    the module's docstring). A string when there are no images."""
    blocks = [document_block(document) for document in documents]
    combined = "\n\n".join([*blocks, text]) if blocks else text
    if not images:
        return combined
    parts: list[dict[str, Any]] = [{"type": "text", "text": combined}] if combined else []
    parts += [{"type": "image_url", "image_url": {"url": data_url(i.media_type, i.data)}} for i in images]
    return parts


def image_parts(content: object) -> int:
    """How many ``image_url`` parts a message's ``content`` has (0 for a string)."""
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")


def without_images(content: object, note: str = "[an image was attached here]") -> object:
    """``content`` with its ``image_url`` parts replaced by ``note`` in the text (for a model that takes no images:
    earlier turns' images are left out and the model is told where they were); a string when only text is left."""
    if not image_parts(content):
        return content
    assert isinstance(content, list)
    texts = [str(part.get("text") or "") for part in content if part.get("type") == "text"]
    count = image_parts(content)
    notes = [note] * count
    return "\n\n".join([*texts, *notes])
