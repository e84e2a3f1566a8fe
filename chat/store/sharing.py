"""Read-only share links: a snapshot of a conversation's shown path behind an unguessable, revocable token.

A share link (``models.ShareLink``) holds a copy of the conversation's shown path *as it was when shared*: messages
written later, other branches, the conversation's settings and its system prompt are never in it, so the shared page
(``chat/ui/share_page.py``) can show nothing else of the owner's. The token (``secrets.token_urlsafe(24)``: 24 random
bytes, 32 URL-safe characters) is given to the owner once, inside the link's path ``/s/<token>``; the database keeps
only its hex SHA-256, like API tokens and login sessions (``chat/auth/accounts.py``): a 192-bit random token needs no
slow hash, there is nothing to guess.

Every function takes a ``Store`` and opens its own short session, so it may be called from any thread (the views call
them through ``asyncio.to_thread``). ``owner`` is ``Account.owner``: a user id in team mode, None in personal mode,
where it matches every link (as ``Store``'s ``owner=`` does).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from ..refusals import InvalidRequest
from .models import Conversation, Message, Role, ShareLink, Status, utcnow
from .store import NotFound, Store, selected_path

#: Who may open a link: anyone logged in to this Parley, or anyone who has the link.
AUDIENCES = ("users", "anyone")
#: Random bytes in a share token (``secrets.token_urlsafe``): 192 bits.
TOKEN_BYTES = 24
#: The URL path of a shared page; ``{token}`` is the token.
SHARE_PATH = "/s/{token}"
#: A token longer than this is not one of ours (``token_urlsafe(24)`` is 32 characters); not even hashed.
MAX_TOKEN_LENGTH = 100


def share_token_hash(token: str) -> str:
    """The hex SHA-256 of a share token: what the database stores instead of the token (the same hash as
    ``chat.auth.accounts.token_hash``)."""
    return hashlib.sha256(token.encode()).hexdigest()


def share_path(token: str) -> str:
    """The URL path of the shared page of ``token``: ``/s/<token>``."""
    return SHARE_PATH.format(token=token)


def _iso(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC (a naive time, as SQLite gives back, is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def snapshot_of(conversation: Conversation, path: list[Message]) -> dict[str, Any]:
    """What a share link keeps of a conversation: its title and the shown path's user and assistant messages.

    Left out: system messages, an answer still being written (status ``streaming``: its text is not final and its
    steps may wait for an approval only the owner can give), and everything that is not on the path or not a message
    (other branches, the system prompt, model settings, token usage, errors).

    Args:
        conversation: the conversation (its ``title``).
        path: its shown path, oldest first (``store.selected_path``).

    Returns:
        ``{"title": str, "messages": [{"role": "user"|"assistant", "content": str, "events": list[dict] | None,
        "model": str | None, "created_at": ISO 8601 str, "status": str}]}`` (JSON-safe).
    """
    messages = [
        {
            "role": message.role.value,
            "content": message.content,
            "events": message.events or None,
            "model": message.model if message.role == Role.assistant else None,
            "created_at": _iso(message.created_at),
            "status": message.status.value,
        }
        for message in path
        if message.role in (Role.user, Role.assistant) and message.status != Status.streaming
    ]
    return {"title": conversation.title, "messages": messages}


def _session(store: Store) -> Session:
    return store._session()  # the store package's own short session (see ``Store``)


def create_share(store: Store, conversation_id: int, owner: int | None, audience: str) -> tuple[str, ShareLink]:
    """Share a conversation as it is now: a new link holding the snapshot of its shown path (``snapshot_of``), read
    and written in one transaction.

    Args:
        store: the database.
        conversation_id: the conversation to share.
        owner: who shares it (``Account.owner``; None in personal mode: any conversation).
        audience: ``"users"`` (people logged in to this Parley) or ``"anyone"`` (anyone with the link).

    Returns:
        ``(token, link)``: the token, which is shown to the owner once and stored nowhere (only its SHA-256 is), and
        the stored link (its ``user_id`` is the conversation's owner).

    Raises:
        NotFound: no such conversation, or ``owner`` is given and it is another user's.
        InvalidRequest: ``audience`` is not one of ``AUDIENCES`` (field ``audience``).
    """
    if audience not in AUDIENCES:
        raise InvalidRequest("audience must be 'users' or 'anyone'", field="audience")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with _session(store) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None or (owner is not None and conversation.user_id != owner):
            raise NotFound(f"conversation {conversation_id} not found")
        path = selected_path(session.exec(select(Message).where(Message.conversation_id == conversation_id)))
        link = ShareLink(
            token_hash=share_token_hash(token),
            conversation_id=conversation_id,
            user_id=conversation.user_id,
            audience=audience,
            snapshot=snapshot_of(conversation, path),
        )
        session.add(link)
        session.commit()
        return token, link


def list_shares(store: Store, owner: int | None, *, conversation_id: int | None = None) -> list[ShareLink]:
    """The links that still work (not revoked), newest first.

    Args:
        store: the database.
        owner: whose links (``Account.owner``); None in personal mode: every link.
        conversation_id: only the links of this conversation, when given.

    Returns:
        The links; their ``snapshot["title"]`` is the conversation's title when it was shared.
    """
    with _session(store) as session:
        query = select(ShareLink).where(col(ShareLink.revoked_at).is_(None))
        if owner is not None:
            query = query.where(ShareLink.user_id == owner)
        if conversation_id is not None:
            query = query.where(ShareLink.conversation_id == conversation_id)
        return list(session.exec(query.order_by(col(ShareLink.created_at).desc(), col(ShareLink.id).desc())))


def revoke_share(store: Store, share_id: int, owner: int | None) -> ShareLink:
    """Revoke a link: its page answers 404 from now on (the row stays, with ``revoked_at`` set).

    Args:
        store: the database.
        share_id: the link's id.
        owner: who revokes it (``Account.owner``; None in personal mode: any link).

    Returns:
        The revoked link.

    Raises:
        NotFound: no such link, already revoked, or ``owner`` is given and it is another user's (the same answer, so
            other people's link ids cannot be probed).
    """
    with _session(store) as session:
        link = session.get(ShareLink, share_id)
        if link is None or link.revoked_at is not None or (owner is not None and link.user_id != owner):
            raise NotFound(f"share link {share_id} not found")
        link.revoked_at = utcnow()
        session.add(link)
        session.commit()
        return link


def shared(store: Store, token: str) -> ShareLink | None:
    """The link whose token is ``token``, or None when there is none or it was revoked.

    Args:
        store: the database.
        token: the token from the URL (untrusted: any string).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    with _session(store) as session:
        query = select(ShareLink).where(
            ShareLink.token_hash == share_token_hash(token), col(ShareLink.revoked_at).is_(None)
        )
        return session.exec(query).first()
