"""Reading a file a user attached: what it is (by its content, never its name), and what the model gets of it.

* **Images** (PNG, JPEG, GIF, WebP, BMP, TIFF) are decoded and re-encoded with Pillow: rotated as their EXIF
  orientation says, then written without any metadata (EXIF, GPS, XMP, ICC text chunks are not copied), scaled
  down so that their longest side is at most ``max_image_side`` pixels. A JPEG stays a JPEG (quality 90); anything
  else becomes a PNG (lossless; the first frame of an animation). Pillow's decompression-bomb guard is kept, and
  images over ``max_pixels`` are refused before they are decoded.
* **Documents**: a PDF's text through pypdf (page by page; an encrypted PDF or one with no text layer is refused),
  or text (UTF-8, or UTF-16/UTF-32 with a byte order mark): Markdown, source code, CSV, logs. Office files are not
  read (no well-kept small library does it without heavy dependencies; save as PDF).

Pure functions, no I/O besides the bytes given; CPU-bound: call them in a thread.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

from ..refusals import Refusal

Kind = Literal["image", "document"]

#: The image formats read (Pillow's names) and the type each is written as.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
#: Longest side of the thumbnail shown in the composer and in a message, pixels.
THUMBNAIL_SIDE = 320
#: The media types a text document is served as, by its name's extension (anything else: ``text/plain``).
TEXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv", ".html": "text/plain",
              ".json": "application/json"}  # fmt: skip


class AttachmentRefused(Refusal, ValueError):
    """A file Parley does not take: an unknown type, too large, unreadable. ``str(refusal)`` names the file and
    says what would work."""

    status = 422
    code = "attachment_refused"


class AttachmentTooLarge(AttachmentRefused):
    """A file (or a message's files together) over the configured size or count (HTTP 413)."""

    status = 413
    code = "attachment_too_large"


@dataclass(frozen=True, slots=True)
class FileLimits:
    """What a file may be.

    Attributes:
        max_bytes: most bytes of one file as uploaded.
        max_image_side: images are scaled down to this longest side, pixels.
        max_pixels: most pixels (width × height) of an image as uploaded (a larger one is refused undecoded).
        max_text_chars: most characters of a document's text (a longer one is refused: cut it first).
    """

    max_bytes: int = 20 * 1024 * 1024
    max_image_side: int = 2048
    max_pixels: int = 50_000_000
    max_text_chars: int = 2_000_000


@dataclass(frozen=True, slots=True)
class PreparedFile:
    """A file as Parley keeps it.

    Attributes:
        kind: ``"image"`` or ``"document"``.
        name: the file's name as given (only its last path component, at most 200 characters).
        media_type: what ``data`` is (``image/png``, ``image/jpeg``, ``application/pdf``, ``text/plain``, …).
        data: an image re-encoded (what the model gets), or a document's bytes as uploaded.
        text: a document's text (None for an image).
        width, height: an image's size after scaling, pixels (None for a document).
        thumbnail: a small JPEG or PNG of an image (None for a document).
    """

    kind: Kind
    name: str
    media_type: str
    data: bytes = field(repr=False)
    text: str | None = field(default=None, repr=False)
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of ``data``: the key it is stored under, once however often it is attached."""
        return hashlib.sha256(self.data).hexdigest()


def clean_name(name: str) -> str:
    """A file name as shown and stored: its last path component, control characters dropped, at most 200
    characters, ``file`` when nothing is left."""
    base = PurePath(name.replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:200] or "file"


def prepare(data: bytes, name: str, limits: FileLimits = FileLimits()) -> PreparedFile:
    """Read an attached file (see the module's docstring).

    Args:
        data: the file's bytes as uploaded.
        name: its name (shown; never used to decide the type).
        limits: the sizes allowed.

    Returns:
        The file as Parley keeps it.

    Raises:
        AttachmentTooLarge: over ``limits.max_bytes`` or ``max_pixels``, or a text over ``max_text_chars``.
        AttachmentRefused: empty, of a type Parley does not read, or unreadable (corrupt, encrypted, no text).
    """
    name = clean_name(name)
    if not data:
        raise AttachmentRefused(f"{name} is empty.")
    if len(data) > limits.max_bytes:
        raise AttachmentTooLarge(
            f"{name} is {megabytes(len(data))}; a file may be at most {megabytes(limits.max_bytes)}."
        )
    if data.startswith(b"%PDF-"):
        return _pdf(data, name, limits)
    image = _open_image(data, name, limits)
    if image is not None:
        return _reencode(image, name, limits)
    return _text(data, name, limits)


def megabytes(size: int) -> str:
    """``size`` bytes in words: ``"3.2 MB"``, ``"640 KB"``."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


# -- images -----------------------------------------------------------------------------------------------------------


def _open_image(data: bytes, name: str, limits: FileLimits) -> Image.Image | None:
    """The image in ``data`` (header read, pixels not yet decoded), or None when it is not one of ``IMAGE_FORMATS``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        if isinstance(error, UnidentifiedImageError):
            return None
        raise AttachmentTooLarge(f"{name} has too many pixels to read.") from error
    except OSError:
        return None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise AttachmentTooLarge(
            f"{name} is {width:,}×{height:,} pixels; an image may have at most {limits.max_pixels:,} pixels."
        )
    return image


def _reencode(image: Image.Image, name: str, limits: FileLimits) -> PreparedFile:
    """``image`` rotated upright, scaled to ``max_image_side`` and written without metadata."""
    source_format = image.format
    try:
        image.load()
        image = ImageOps.exif_transpose(image)  # the orientation is applied, then the EXIF goes with the rest
    except (OSError, ValueError, SyntaxError) as error:
        raise AttachmentRefused(f"{name} could not be read as an image ({error}).") from error
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if has_alpha else "RGB")
    if max(image.size) > limits.max_image_side:
        image.thumbnail((limits.max_image_side, limits.max_image_side), Image.Resampling.LANCZOS)
    as_jpeg = source_format == "JPEG" and not has_alpha
    data = _encode(image, as_jpeg)
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    return PreparedFile(
        kind="image",
        name=name,
        media_type="image/jpeg" if as_jpeg else "image/png",
        data=data,
        width=image.width,
        height=image.height,
        thumbnail=_encode(small, not has_alpha),
    )


def _encode(image: Image.Image, as_jpeg: bool) -> bytes:
    """``image`` as JPEG (quality 90) or PNG, with no metadata: Pillow writes EXIF, ICC or text chunks only when
    asked to (``exif=``, ``icc_profile=``, ``pnginfo=``), and they are not passed."""
    out = io.BytesIO()
    if as_jpeg:
        image.save(out, format="JPEG", quality=90, optimize=True)
    else:
        image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


# -- documents --------------------------------------------------------------------------------------------------------


def _pdf(data: bytes, name: str, limits: FileLimits) -> PreparedFile:
    """A PDF's text, page after page (pypdf's ``extract_text``), pages separated by a blank line."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise AttachmentRefused(f"{name} is protected by a password; save an unprotected copy and attach it.")
        pages = []
        total = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            total += len(text)
            if total > limits.max_text_chars:
                raise _too_much_text(name, limits)
            pages.append(text.strip())
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as error:
        if isinstance(error, Refusal):
            raise
        raise AttachmentRefused(f"{name} could not be read as a PDF ({error}).") from error
    text = "\n\n".join(page for page in pages if page)
    if not text.strip():
        raise AttachmentRefused(
            f"{name} has no text layer (a scanned PDF?): Parley reads the text of PDFs, it does not recognise "
            "scanned pages. Attach the pages as images instead."
        )
    return PreparedFile(kind="document", name=name, media_type="application/pdf", data=data, text=_clean(text))


def _text(data: bytes, name: str, limits: FileLimits) -> PreparedFile:
    """Text in UTF-8 (a BOM allowed), or in UTF-16/32 with a BOM; anything else is not a type Parley reads."""
    encoding = "utf-8-sig"
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if data.startswith(bom):
            encoding = codec
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text[:8192]:
        raise AttachmentRefused(
            f"{name} is not a file Parley reads: attach images (PNG, JPEG, GIF, WebP), PDFs, or text files "
            "(Markdown, source code, CSV; UTF-8)."
        )
    if len(text) > limits.max_text_chars:
        raise _too_much_text(name, limits)
    suffix = PurePath(name).suffix.lower()
    media_type = TEXT_TYPES.get(suffix, "text/plain")
    return PreparedFile(kind="document", name=name, media_type=media_type, data=data, text=_clean(text))


def _too_much_text(name: str, limits: FileLimits) -> AttachmentTooLarge:
    return AttachmentTooLarge(
        f"{name} has more than {limits.max_text_chars:,} characters of text; attach a part of it."
    )


def _clean(text: str) -> str:
    """Text as it is stored: NUL and lone surrogates dropped, line ends as ``\\n``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8") if any("\ud800" <= ch <= "\udfff" for ch in text) else text
