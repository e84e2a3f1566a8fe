"""Parley's own refusals: one base class, ``Refusal``, for everything Parley declines to do on purpose (a busy
conversation, an empty message, an id that is not yours, a limit reached, a model not allowed, a failed login, …),
carrying how HTTP says it.

Each layer raises its own subclass (``store.NotFound``, ``engine.ConversationBusy``, ``auth.LoginFailed``, …); the
views turn any ``Refusal`` into a response in one place each: ``/api`` into ``{"detail": …}`` with ``status``
(``api/errors.py``), ``/v1`` into OpenAI's error shape (``api/openai_compat.py``), the pages into a warning toast
(``ui/notices.py``). Anything else that escapes is a bug: logged with its traceback, shown as "Something went
wrong". The status codes are HTTP's (RFC 9110 §15); ``Retry-After`` is §10.2.3.
"""

from __future__ import annotations

from typing import ClassVar


class Refusal(Exception):
    """Something Parley declines to do, said in a sentence a person can act on.

    Class attributes (each subclass sets its own):
        status: the HTTP status that says it (400 by default).
        code: a short machine-readable name (``"conversation_busy"``), for logs and clients.

    Args:
        message: the sentence shown to the user (``str(refusal)``).
        retry_after: whole seconds after which the same request may succeed (``Retry-After``), or None.
        field: the name of the input that is wrong (``"content"``, ``"temperature"``, ``"message_id"``), or None;
            ``/api`` answers such a refusal in FastAPI's own 422 shape, located in the path or the body.
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"

    def __init__(self, message: str, *, retry_after: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.field = field

    @property
    def headers(self) -> dict[str, str]:
        """The HTTP headers that go with it: ``Retry-After`` when there is one."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class InvalidRequest(Refusal, ValueError):
    """A value the request may not have (a temperature out of 0..2, a user message where an answer is needed)."""

    status = 422
    code = "invalid_value"
