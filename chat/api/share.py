"""Read-only share links over REST, under ``/api`` (``chat/store/sharing.py`` holds the rules).

* ``POST /api/conversations/{id}/share`` with ``{"audience": "users" | "anyone"}`` (default ``users``: people logged
  in to this Parley) shares your conversation as it is now and answers 201 with the link, whose ``url`` (the page's
  path, ``/s/<token>``) is given this once: Parley keeps only the token's SHA-256.
* ``GET /api/shares`` (``?conversation_id=`` for one conversation's) lists your links that still work, newest first.
* ``DELETE /api/shares/{id}`` revokes one (204); its page answers 404 from then on.

Owner-checked like every ``/api`` route: another user's conversation or link is the same 404 as a missing one; in
team mode a request without a login or API token is 401 (the router's ``current_account``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from ..store import ShareLink
from ..store.sharing import create_share, list_shares, revoke_share, share_path
from .dependencies import CurrentAccount, StoreDep, current_account
from .errors import ApiRoute
from .rest import NOT_FOUND, UNAUTHORIZED, OwnedConversation

ShareId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A share link's id.")]


class ShareCreate(BaseModel):
    """Who may open the new link."""

    model_config = ConfigDict(extra="forbid")

    audience: Literal["users", "anyone"] = Field(
        "users", description="`users`: people logged in to this Parley (the default); `anyone`: anyone with the link."
    )


class ShareOut(BaseModel):
    """A share link (without its token, which only its creation answers)."""

    id: int
    conversation_id: int
    title: str = Field(description="The conversation's title when it was shared.")
    audience: str
    messages: int = Field(description="How many messages the snapshot shows.")
    created_at: datetime


class ShareCreated(ShareOut):
    """A new share link, with the path of its page: shown this once."""

    url: str = Field(description="The shared page's path, `/s/<token>`; put it after this Parley's address.")


def share_out(link: ShareLink) -> dict[str, Any]:
    """``link`` as ``ShareOut``'s fields."""
    return {
        "id": link.id,
        "conversation_id": link.conversation_id,
        "title": link.snapshot.get("title", ""),
        "audience": link.audience,
        "messages": len(link.snapshot.get("messages", ())),
        "created_at": link.created_at,
    }


router = APIRouter(
    prefix="/api",
    tags=["share links"],
    route_class=ApiRoute,
    dependencies=[Depends(current_account)],
    responses={401: UNAUTHORIZED},
)


@router.post(
    "/conversations/{conversation_id}/share", response_model=ShareCreated, status_code=201, responses=NOT_FOUND
)
async def share_conversation(
    conversation: OwnedConversation, account: CurrentAccount, store: StoreDep, body: ShareCreate | None = None
) -> Any:
    """Share your conversation's shown path as it is now (later messages are not shown) behind a new read-only link;
    its `url` is answered this once."""
    assert conversation.id is not None
    audience = body.audience if body is not None else "users"
    token, link = await asyncio.to_thread(create_share, store, conversation.id, account.owner, audience)
    return {**share_out(link), "url": share_path(token)}


@router.get("/shares", response_model=list[ShareOut])
async def get_shares(
    account: CurrentAccount,
    store: StoreDep,
    conversation_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only this conversation's.")] = None,
) -> Any:
    """Your share links that still work, newest first."""
    links = await asyncio.to_thread(list_shares, store, account.owner, conversation_id=conversation_id)
    return [share_out(link) for link in links]


@router.delete("/shares/{share_id}", status_code=204, responses=NOT_FOUND)
async def delete_share(share_id: ShareId, account: CurrentAccount, store: StoreDep) -> Response:
    """Revoke a share link of yours: its page answers 404 from now on."""
    await asyncio.to_thread(revoke_share, store, share_id, account.owner)
    return Response(status_code=204)
