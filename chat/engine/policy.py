"""Who asks for an answer, and what they may ask: ownership, the models a user may use, and per-user limits.

Every view (the pages, ``/api``, ``/v1``) passes the ``Account`` it authenticated to the engine, which applies the
same rules for all of them. In personal mode (no users in the database) the account is ``LOCAL``: it owns every
conversation, may use every model and has no limits.

Limits (team mode only), counted with the ``limits`` library's moving window in this process's memory:

* messages per user per minute (``--messages-per-minute``): sends and regenerations both count;
* answers running at once per user (``--concurrent-answers``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ..refusals import Refusal

log = logging.getLogger(__name__)

#: Seconds a client refused for having too many answers running is told to wait (``Retry-After``): answers have no
#: known end, so this is a polling interval.
CONCURRENCY_RETRY_AFTER = 5


@dataclass(frozen=True, slots=True)
class Account:
    """The person an engine call is made for.

    Attributes:
        user_id: the user's id; None in personal mode (no accounts), where every conversation is visible.
        name: the user's name, as shown.
        is_admin: may open the admin page.
        models: the model ids this user may use; None for every model.
        tools: the tools (by the name a model sees) this user may use; None for every tool.
    """

    user_id: int | None
    name: str = "local"
    is_admin: bool = True
    models: frozenset[str] | None = None
    tools: frozenset[str] | None = None

    @property
    def owner(self) -> int | None:
        """The owner id to filter conversations by (``Store``'s ``owner=``): None in personal mode (all of them)."""
        return self.user_id

    def may_use(self, model: str) -> bool:
        """True when this account may send requests to ``model``."""
        return self.models is None or model in self.models

    def may_call(self, tool: str) -> bool:
        """True when this account may have a model call ``tool``."""
        return self.tools is None or tool in self.tools


#: The one person of personal mode: owns everything, every model, no limits.
LOCAL = Account(user_id=None)


class RateLimited(Refusal, RuntimeError):
    """Raised when an account is over one of its limits.

    Args:
        message: what the user reads ("… Try again in 12 s.").
        retry_after: whole seconds until a new request may succeed (for ``Retry-After``, RFC 9110 §10.2.3).
    """

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)


class ModelNotAllowed(Refusal, PermissionError):
    """Raised when an account asks for a model an admin has not allowed it."""

    status = 403
    code = "model_not_allowed"


class Limits:
    """Per-user limits on messages per minute and answers running at once (none for ``LOCAL``).

    Args:
        messages_per_minute: most messages (sends and regenerations) per user in any 60-second window; None: no
            limit.
        concurrent_answers: most answers of one user generating at once; None: no limit.
        storage: the ``limits`` library's storage URI (``redis://host:port``: counted across replicas); None: this
            process's memory. While that storage cannot be reached, messages are let through (logged): a Redis
            restart must not stop every conversation; logins fail closed instead (``auth.Accounts``).
    """

    def __init__(
        self, messages_per_minute: int | None = None, concurrent_answers: int | None = None, storage: str | None = None
    ) -> None:
        self.messages = RateLimitItemPerMinute(messages_per_minute) if messages_per_minute else None
        self.concurrent_answers = concurrent_answers
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage) if storage else MemoryStorage())

    def admit(self, account: Account, running: int, answers: int = 1) -> None:
        """Count ``answers`` new messages of ``account`` (a side-by-side comparison counts one per model), or refuse
        them all.

        Args:
            account: who sends.
            running: how many of the account's answers are generating now.
            answers: how many answers the message starts.

        Raises:
            RateLimited: ``running + answers`` is over the concurrency limit, or the account sent its
                messages-per-minute already (that refusal is not counted).
        """
        if account.user_id is None:
            return
        if self.concurrent_answers is not None and running + answers > self.concurrent_answers:
            if answers > 1 and answers > self.concurrent_answers:
                raise RateLimited(
                    f"You may have {self.concurrent_answers} answers running at once: compare at most "
                    f"{self.concurrent_answers} models.",
                    CONCURRENCY_RETRY_AFTER,
                )
            raise RateLimited(
                f"You have {running} answers running, the most at once. Wait for one to finish, or stop one.",
                CONCURRENCY_RETRY_AFTER,
            )
        if self.messages is None:
            return
        key = str(account.user_id)
        try:
            admitted = self._limiter.hit(self.messages, "messages", key, cost=answers)
        except Exception as error:  # the shared storage (Redis) is down: let the message through
            log.warning("cannot count messages per minute (%s); letting this one through", error)
            return
        if not admitted:
            reset = self._limiter.get_window_stats(self.messages, "messages", key).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            raise RateLimited(
                f"You sent {self.messages.amount} messages in the last minute, the most allowed. "
                f"Try again in {wait} s.",
                wait,
            )
