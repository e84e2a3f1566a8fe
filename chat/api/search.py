"""``GET /api/search``: full-text search over the caller's conversation titles and messages (``chat/store/search.py``).

Authenticated like every ``/api`` route (the router's ``current_account``); with accounts a user finds only their own
conversations. The query runs in a thread: no database call on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from ..store.search import MAX_LIMIT, MAX_QUERY, SearchHit, search
from .dependencies import CurrentAccount, StoreDep, current_account
from .errors import ApiRoute
from .rest import UNAUTHORIZED

router = APIRouter(
    prefix="/api",
    tags=["search"],
    route_class=ApiRoute,
    dependencies=[Depends(current_account)],
    responses={401: UNAUTHORIZED},
)


class SearchHitOut(BaseModel):
    """One hit: a message (``message_id``, ``role``) or a conversation's title (both null)."""

    conversation_id: int
    title: str = Field(description="The conversation's title.")
    message_id: int | None = Field(description="The message found; null for a title hit.")
    role: str | None = Field(description="The message's role; null for a title hit.")
    snippet: str = Field(description="Plain text around the first match (not HTML): escape it before showing it.")
    spans: list[tuple[int, int]] = Field(
        description="Where the terms are in `snippet`: [start, end) offsets in Unicode code points."
    )
    url: str = Field(description="The page showing it: /c/{conversation_id}?message={message_id}, or /c/{id}.")


class SearchOut(BaseModel):
    """A page of hits, best first."""

    hits: list[SearchHitOut]
    next_offset: int | None = Field(description="The `offset` of the next page; null on the last one.")


def _out(hit: SearchHit) -> SearchHitOut:
    url = f"/c/{hit.conversation_id}" + ("" if hit.message_id is None else f"?message={hit.message_id}")
    return SearchHitOut(conversation_id=hit.conversation_id, title=hit.title, message_id=hit.message_id,
                        role=hit.role, snippet=hit.snippet, spans=list(hit.spans), url=url)  # fmt: skip


@router.get("/search", tags=["search"], response_model=SearchOut)
async def search_route(
    store: StoreDep,
    account: CurrentAccount,
    q: Annotated[str, Query(max_length=1000, description=f"The words to find (the first {MAX_QUERY} characters).")],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most hits on the page.")] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Hits to skip: the previous page's `next_offset`.")] = 0,
) -> SearchOut:
    """Find every word of ``q`` (split on white space; each a substring, case-insensitively; CJK text too) in the
    titles and messages of the caller's conversations, every branch included. Title hits come first, then messages,
    ranked. 422 for a ``limit`` out of 1..100 or a negative ``offset``."""
    page = await asyncio.to_thread(search, store, q, owner=account.owner, limit=limit, offset=offset)
    return SearchOut(hits=[_out(hit) for hit in page.hits], next_offset=page.next_offset)
