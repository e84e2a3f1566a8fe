"""One boundary for upstream failures: the openai SDK's errors become a ``ProviderError`` with a
short reason a person understands. Nothing above the provider imports openai's errors.

The SDK's hierarchy (openai-python ``_exceptions.py``): ``APIError`` → ``APIConnectionError``
(→ ``APITimeoutError``) and ``APIStatusError`` (→ ``AuthenticationError`` 401,
``PermissionDeniedError`` 403, ``NotFoundError`` 404, ``RateLimitError`` 429,
``InternalServerError`` 5xx, ...).
"""

from __future__ import annotations

import json
import re
import socket
from urllib.parse import urlsplit

import openai
import pydantic

from .tokens import window_from_error

#: Longest upstream error text quoted in a reason, in characters.
MAX_QUOTED = 200


class ProviderError(Exception):
    """An upstream failure, with a reason fit to show on the page.

    Attributes:
        reason: one or two short sentences, no traceback.
        status: the upstream's HTTP status, when it answered with one.
        retry_after: seconds the upstream asked to wait (``Retry-After``), when it said.
        retryable: True when sending the same request again later may work (429, 5xx, connection).
        context_window: the context window in tokens, when the upstream refused the request as too long and said
            how long it may be (``tokens.window_from_error``).
        connection_lost: True when the connection failed or broke (nothing answered, or the stream was cut).
        code: ``"context_length_exceeded"`` when the request does not fit the model's context window (OpenAI's
            error code for it), else None.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
        context_window: int | None = None,
        connection_lost: bool = False,
        code: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.connection_lost = connection_lost
        self.code = code
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable
        self.context_window = context_window


#: OpenAI's error code for a request longer than the model's context window.
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
#: Parley's code for a request whose images the model does not take (``refuses_images``).
IMAGES_REFUSED = "images_not_supported"

#: What a refusal of images says: a word for images and a word for "not supported". Seen: OpenAI ``Invalid content
#: type. image_url is only supported by certain models.``; llama.cpp's server without a projector ``image input is not
#: supported - hint: if this is unexpected, you may need to provide the mmproj``; vLLM ``... is not a multimodal
#: model``; others ``Unsupported content part type: image_url``, ``model does not support images``.
_IMAGE_WORD = re.compile(r"images?|image_url|vision|multi-?modal", re.I)
_IMAGE_REFUSAL = re.compile(
    r"does ?n[o']t support|not supported|unsupported|only supported|is not a|invalid content|not enabled|"
    r"not available|cannot|can't", re.I,
)  # fmt: skip


def refuses_images(status: int | None, message: str) -> bool:
    """Whether an upstream's error answer refuses the request's images (the model or server takes none).

    Args:
        status: the HTTP status (400, 422 and 5xx are considered: llama.cpp answers 500).
        message: the error's text (its ``message`` and body).
    """
    if status not in (400, 422) and not (status is not None and 500 <= status < 600):
        return False
    return bool(_IMAGE_WORD.search(message) and _IMAGE_REFUSAL.search(message))


#: A masked key as upstreams quote one back ("sk-proj-****...1a2b"): a word with three or more asterisks.
_MASKED_KEY = re.compile(r"[A-Za-z0-9_.-]*\*{3,}[A-Za-z0-9_.-]*")
REDACTED = "[redacted]"


def redact(text: str, api_key: str | None) -> str:
    """``text`` without any part of an API key: the key itself, any word that starts with its first 8 characters,
    and masked keys (OpenAI's 401 says "Incorrect API key provided: sk-proj-****…1a2b": the first 8 and the last 4).
    Used on every upstream message Parley quotes, and on every log line (``server.RedactingFormatter``)."""
    if api_key and len(api_key) >= 8:
        text = text.replace(api_key, REDACTED)
        text = re.sub(re.escape(api_key[:8]) + r"\S*", REDACTED, text)
    return _MASKED_KEY.sub(REDACTED, text) if "***" in text else text


def _upstream_message(error: openai.APIStatusError) -> str:
    body = error.body
    message = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message", "") if isinstance(inner, dict) else str(inner)
    elif body:
        message = str(body)
    message = " ".join(str(message or "").split())
    return message[:MAX_QUOTED] + ("…" if len(message) > MAX_QUOTED else "")


def _retry_after(error: openai.APIStatusError) -> float | None:
    value = error.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``error`` or anything in its ``__cause__`` / ``__context__`` chain is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def describe(
    error: BaseException,
    *,
    base_url: str,
    model: str,
    read_timeout: float,
    streamed: bool,
    api_key: str | None = None,
) -> ProviderError:
    """Turn an exception raised while requesting or reading a chat completion into a ProviderError.

    Args:
        error: what the SDK (or the JSON decoder, for a malformed chunk) raised.
        base_url: the upstream's base URL, named in connection reasons.
        model: the model requested, named in a 404 reason.
        read_timeout: the read timeout in seconds, named in timeout reasons.
        streamed: whether some of the answer had already arrived (the stream broke mid-way).
        api_key: the upstream's API key, never quoted back (see ``redact``).

    Returns:
        The ProviderError to raise in its place.
    """
    host = urlsplit(base_url).netloc or base_url
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, openai.APITimeoutError):
        if streamed:
            return ProviderError(
                f"The model server stopped sending for {read_timeout:g} s in the middle of the answer."
            )
        return ProviderError(f"The model server at {host} did not answer within {read_timeout:g} s.", retryable=True)
    if isinstance(error, openai.APIConnectionError):
        if streamed:
            return ProviderError(
                "The connection to the model server broke in the middle of the answer.", connection_lost=True
            )
        if _caused_by(error, socket.gaierror):  # DNS: the name itself is wrong (or there is no network)
            return ProviderError(
                f"Could not reach the model server at {host}: its host name does not resolve. Check OPENAI_BASE_URL.",
                retryable=True,
                connection_lost=True,
            )
        return ProviderError(
            f"Could not reach the model server at {host}: is it running?", retryable=True, connection_lost=True
        )
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        quoted = redact(_upstream_message(error), api_key)
        detail = f": {quoted}" if quoted else "."
        if isinstance(error, openai.AuthenticationError):
            return ProviderError(
                f"The model server rejected the API key (401). Check OPENAI_API_KEY{detail}", status=status
            )
        if isinstance(error, openai.PermissionDeniedError):
            return ProviderError(f"The API key may not use this model or endpoint (403){detail}", status=status)
        if isinstance(error, openai.NotFoundError):
            return ProviderError(f"The model server does not know the model “{model}” (404){detail}", status=status)
        if isinstance(error, openai.RateLimitError):
            wait = _retry_after(error)
            later = f" Try again in {wait:g} s." if wait is not None else " Try again shortly."
            return ProviderError(
                f"The model server is limiting requests (429).{later}", status=status, retry_after=wait, retryable=True
            )
        if status >= 500:
            return ProviderError(
                f"The model server failed ({status}){detail}",
                status=status,
                retry_after=_retry_after(error),
                retryable=True,
            )
        window = window_from_error(f"{error.message} {error.body}") if status in (400, 413, 422) else None
        return ProviderError(
            f"The model server refused the request ({status}){detail}",
            status=status,
            context_window=window,
            code=CONTEXT_LENGTH_EXCEEDED if window is not None else None,
        )
    if isinstance(error, json.JSONDecodeError | pydantic.ValidationError):
        return ProviderError("The model server sent a malformed chunk; the answer stops here.")
    if isinstance(error, openai.APIError):
        return ProviderError(f"The model server reported an error: {redact(error.message, api_key)[:MAX_QUOTED]}")
    return ProviderError(f"Unexpected error while talking to the model server: {type(error).__name__}: {error}"[:300])
