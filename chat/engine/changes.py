"""What views subscribe to: the changes of one conversation (a page showing it) or of one user's list (the drawer).

A ``Change`` carries what a view needs to update without reading the database again: the conversation, its owner
and, when the title is new, the title. Watchers are called synchronously, inside whichever task made the change:
they must only schedule their work (a page does it in its own context).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

Kind = Literal["created", "updated", "deleted", "message", "finished"]


@dataclass(frozen=True, slots=True)
class Change:
    """Something changed in a conversation.

    Attributes:
        conversation_id: the conversation.
        kind: ``created`` (a new conversation), ``updated`` (title or settings), ``deleted``, ``message`` (a message
            was added, or another variant selected: what the conversation shows changed), ``finished`` (an answer
            ended and is stored).
        user_id: the conversation's owner (None: personal mode's conversations).
        title: the conversation's title, for ``created`` and ``updated``.
    """

    conversation_id: int
    kind: Kind
    user_id: int | None = None
    title: str | None = None


Watcher = Callable[[Change], None]

#: The owner key that receives every conversation's changes (personal mode's drawer: ``Account.owner`` is None).
EVERYONE = None


class Watchers:
    """Who is told about which changes: watchers of one conversation, and watchers of one owner's conversations."""

    def __init__(self) -> None:
        self._of_conversation: defaultdict[int, list[Watcher]] = defaultdict(list)
        self._of_owner: defaultdict[int | None, list[Watcher]] = defaultdict(list)

    def conversation(self, conversation_id: int, watcher: Watcher) -> Callable[[], None]:
        """Tell ``watcher`` every change of one conversation; returns the function that stops it."""
        return self._add(self._of_conversation, conversation_id, watcher)

    def owner(self, owner: int | None, watcher: Watcher) -> Callable[[], None]:
        """Tell ``watcher`` every change of the conversations of user ``owner`` (``EVERYONE``, None: of every
        conversation); returns the function that stops it."""
        return self._add(self._of_owner, owner, watcher)

    @staticmethod
    def _add(registry: defaultdict, key: int | None, watcher: Watcher) -> Callable[[], None]:
        registry[key].append(watcher)

        def stop() -> None:
            watchers = registry.get(key)
            if watchers is not None and watcher in watchers:
                watchers.remove(watcher)
                if not watchers:
                    del registry[key]

        return stop

    def __len__(self) -> int:
        """How many watchers there are (for tests and metrics)."""
        return sum(map(len, self._of_conversation.values())) + sum(map(len, self._of_owner.values()))

    def notify(self, change: Change) -> None:
        """Call the watchers of ``change``'s conversation, of its owner and of ``EVERYONE``."""
        watchers = list(self._of_conversation.get(change.conversation_id, ()))
        watchers += self._of_owner.get(EVERYONE, ())
        if change.user_id is not EVERYONE:
            watchers += self._of_owner.get(change.user_id, ())
        for watcher in watchers:
            try:
                watcher(change)
            except Exception:
                log.exception("conversation watcher failed")
