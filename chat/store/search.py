"""Full-text search over conversation titles and message text, in the database's own index.

The index is built by migration ``0007``: on SQLite two FTS5 tables with the ``trigram`` tokenizer (any substring of
three characters or more, case-insensitive, CJK text included; https://sqlite.org/fts5.html, "The Trigram
Tokenizer"), kept by triggers; on PostgreSQL GIN trigram indexes of ``pg_trgm``, which ``ILIKE`` uses
(https://www.postgresql.org/docs/current/pgtrgm.html). Both find the same things: every term of the query (split on
white space) as a substring. A term shorter than three characters has no trigram: it is matched with ``LIKE`` alone (a
scan, so a query of short terms only is slower on a large database).

Every message is searched, those on branches that are not shown too (the hit's message id opens that branch), and the
conversations' titles. With ``owner`` only that user's conversations are; with None (personal mode) all of them.

Ranking: title hits first, then message hits; within each, SQLite's ``bm25`` (more occurrences, shorter text first) or
PostgreSQL's ``similarity``; ties: the newest first. Within one conversation (``conversation_id``, the page's own
search): its messages only, no title, the newest first (the order one reads them back in).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

if TYPE_CHECKING:
    from .store import Store

#: Tables and indexes of the search index, which the models do not declare (see ``include_name``).
SEARCH_TABLES = ("message_fts", "conversation_fts")
SEARCH_INDEXES = ("ix_message_content_trgm", "ix_conversation_title_trgm")
#: FTS5's shadow tables of each FTS table (https://sqlite.org/fts5.html, "FTS5 Shadow Tables" is not a section: they
#: are ``<name>_data``, ``_idx``, ``_docsize``, ``_config``; ``_content`` for a table with its own content).
FTS5_SHADOW_SUFFIXES = ("_data", "_idx", "_docsize", "_config", "_content")
#: Longest query, in characters; longer ones are cut.
MAX_QUERY = 200
#: Most terms of one query; the others are ignored.
MAX_TERMS = 8
#: Most hits on one page.
MAX_LIMIT = 100
#: Characters of a message's snippet around its first match.
SNIPPET_CHARS = 160
#: Characters shown before the first match in a snippet.
SNIPPET_BEFORE = 50
#: The fewest characters of a term the trigram index can find.
TRIGRAM = 3

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class SearchHit:
    """One thing found.

    Attributes:
        conversation_id: the conversation it is in.
        title: that conversation's title.
        message_id: the message found; None when the title matched.
        role: that message's role (``"user"``, ``"assistant"``, …); None for a title hit.
        snippet: plain text (never HTML) around the first match: white space collapsed, ``…`` where it was cut.
        spans: where the terms are in ``snippet``: ``(start, end)`` character offsets (code points), in order, not
            overlapping.
    """

    conversation_id: int
    title: str
    message_id: int | None
    role: str | None
    snippet: str
    spans: tuple[tuple[int, int], ...]

    def marked(self, start: str = "\x02", end: str = "\x03") -> str:
        """The snippet with each match between ``start`` and ``end`` (default STX/ETX)."""
        out, last = [], 0
        for begin, finish in self.spans:
            out += [self.snippet[last:begin], start, self.snippet[begin:finish], end]
            last = finish
        return "".join(out) + self.snippet[last:]


@dataclass(frozen=True)
class SearchPage:
    """One page of hits.

    Attributes:
        hits: at most ``limit`` hits, best first.
        next_offset: the ``offset`` of the next page, or None when this is the last.
        terms: the terms searched for (after cutting the query), for highlighting elsewhere.
    """

    hits: list[SearchHit]
    next_offset: int | None
    terms: tuple[str, ...] = field(default=())


def terms_of(q: str) -> tuple[str, ...]:
    """The query's terms: split on white space, at most ``MAX_TERMS`` of the first ``MAX_QUERY`` characters, each once
    (case-insensitively)."""
    seen: dict[str, str] = {}
    for term in q[:MAX_QUERY].split():
        seen.setdefault(term.casefold(), term)
    return tuple(seen.values())[:MAX_TERMS]


def search(
    store: Store, q: str, *, owner: int | None, limit: int = 20, offset: int = 0, conversation_id: int | None = None
) -> SearchPage:
    """Find ``q`` in conversation titles and message text (or in one conversation's messages).

    Blocking (a database query): call it in a thread from async code.

    Args:
        store: the database.
        q: the query; every term (split on white space) must occur, as a substring, case-insensitively.
        owner: only this user's conversations; None: every conversation (personal mode).
        limit: most hits on the page, 1 to ``MAX_LIMIT``.
        offset: hits to skip (the previous page's ``next_offset``), 0 or more.
        conversation_id: only this conversation's messages (every branch), newest first, and no title hits; it
            must be ``owner``'s too (another user's gives no hits).

    Returns:
        The page (empty for a blank query).

    Raises:
        ValueError: ``limit`` or ``offset`` out of range.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise ValueError("offset must be 0 or more")
    terms = terms_of(q)
    if not terms:
        return SearchPage([], None, terms)
    wanted = offset + limit + 1  # one more than the page: is there a next one?
    with store.engine.connect() as connection:
        finder = _SqliteFinder(connection) if connection.dialect.name == "sqlite" else _PostgresFinder(connection)
        titles = finder.titles(terms, owner, wanted) if conversation_id is None else []
        rows = titles[offset:wanted]
        if len(titles) < wanted:  # every title hit is known: messages follow them
            skip = max(0, offset - len(titles))
            rows += finder.messages(terms, owner, wanted - offset - len(rows), skip, conversation_id)
    more = len(rows) > limit
    hits = [_hit(row, terms) for row in rows[:limit]]
    return SearchPage(hits, offset + limit if more else None, terms)


def include_name(name: str | None, type_: str, _parent_names: Any = None) -> bool:
    """Alembic's ``include_name`` hook: False for the search index's tables (FTS5 and its shadow tables) and indexes,
    which the models do not declare, so a schema comparison (``compare_metadata``, autogenerate) leaves them out."""
    if name is None:
        return True
    if type_ == "table":
        return not any(name == t or name in {t + s for s in FTS5_SHADOW_SUFFIXES} for t in SEARCH_TABLES)
    if type_ == "index":
        return name not in SEARCH_INDEXES
    return True


# -- the two databases ---------------------------------------------------------------------------------------------


def _like(term: str) -> str:
    """A ``LIKE … ESCAPE '\\'`` pattern finding ``term`` anywhere."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _in_conversation(
    where: str, score: str, params: dict, conversation_id: int | None, column: str = "m.conversation_id"
) -> tuple[str, str]:
    """A messages query's ``WHERE`` and ``ORDER BY``: ranked across conversations, or only ``conversation_id``'s
    messages, newest first (``params`` gets its id; ``column`` is how the query names the conversation's id)."""
    if conversation_id is None:
        return where, f"{score}, m.id DESC"
    params["conversation"] = conversation_id
    return f"{where} AND {column} = :conversation", "m.id DESC"


class _SqliteFinder:
    """Queries of the FTS5 tables: ``MATCH`` with every term of three characters or more (a quoted string: any
    character is literal), ``LIKE`` for the shorter ones; ``bm25`` ranks."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _where(self, terms: tuple[str, ...], fts: str, column: str, owner: int | None) -> tuple[str, str, dict]:
        long = [t for t in terms if len(t) >= TRIGRAM]
        params: dict[str, Any] = {}
        where = []
        if long:
            params["match"] = " ".join('"' + t.replace('"', '""') + '"' for t in long)
            where.append(f"{fts} MATCH :match")
        for index, term in enumerate(t for t in terms if len(t) < TRIGRAM):
            params[f"p{index}"] = _like(term)
            where.append(f"{column} LIKE :p{index} ESCAPE '\\'")
        if owner is not None:
            params["owner"] = owner
            where.append("c.user_id = :owner")
        score = f"bm25({fts})" if long else "0.0"
        return " AND ".join(where), score, params

    def titles(self, terms: tuple[str, ...], owner: int | None, limit: int) -> list[dict]:
        where, score, params = self._where(terms, "conversation_fts", "c.title", owner)
        source = "conversation_fts JOIN conversation c ON c.id = conversation_fts.rowid" if "MATCH" in where else (
            "conversation c")  # fmt: skip
        sql = (f"SELECT c.id AS conversation_id, c.title AS title, NULL AS message_id, NULL AS role, "
               f"NULL AS content FROM {source} WHERE {where} ORDER BY {score}, c.updated_at DESC, c.id DESC "
               "LIMIT :limit")  # fmt: skip
        return [dict(row._mapping) for row in self.connection.execute(text(sql), {**params, "limit": limit})]

    def messages(self, terms: tuple[str, ...], owner: int | None, limit: int, offset: int,
                 conversation_id: int | None = None) -> list[dict]:  # fmt: skip
        where, score, params = self._where(terms, "message_fts", "m.content", owner)
        # ``+``: not through the conversation's index, which would make SQLite test the FTS match message by message
        # (1.3 s for a rare word in a 2,000-message conversation, against 5 ms from the FTS index first)
        where, order = _in_conversation(where, score, params, conversation_id, "+m.conversation_id")
        source = "message_fts JOIN message m ON m.id = message_fts.rowid" if "MATCH" in where else "message m"
        sql = (f"SELECT m.conversation_id AS conversation_id, c.title AS title, m.id AS message_id, m.role AS role, "
               f"m.content AS content FROM {source} JOIN conversation c ON c.id = m.conversation_id "
               f"WHERE {where} ORDER BY {order} LIMIT :limit OFFSET :offset")  # fmt: skip
        rows = self.connection.execute(text(sql), {**params, "limit": limit, "offset": offset})
        return [dict(row._mapping) for row in rows]


#: The schema holding pg_trgm per engine (None: not installed), looked up once.
_TRGM_SCHEMA: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


class _PostgresFinder:
    """Queries with ``ILIKE`` per term (the GIN trigram indexes serve it); ``similarity`` ranks when pg_trgm is
    installed (its functions named with their schema: it may be another than the tables')."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        engine = connection.engine
        if engine not in _TRGM_SCHEMA:
            _TRGM_SCHEMA[engine] = connection.exec_driver_sql(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                "WHERE e.extname = 'pg_trgm'"
            ).scalar()
        schema = _TRGM_SCHEMA[engine]
        self.similarity = None if schema is None else '"' + schema.replace('"', '""') + '".similarity'

    def _where(self, terms: tuple[str, ...], column: str, owner: int | None) -> tuple[str, str, dict]:
        params: dict[str, Any] = {"q": " ".join(terms)}
        where = []
        for index, term in enumerate(terms):
            params[f"p{index}"] = _like(term)
            where.append(f"{column} ILIKE :p{index}")
        if owner is not None:
            params["owner"] = owner
            where.append("c.user_id = :owner")
        score = f"{self.similarity}({column}, :q) DESC" if self.similarity else "1"
        return " AND ".join(where), score, params

    def titles(self, terms: tuple[str, ...], owner: int | None, limit: int) -> list[dict]:
        where, score, params = self._where(terms, "c.title", owner)
        sql = (f"SELECT c.id AS conversation_id, c.title AS title, NULL AS message_id, NULL AS role, "
               f"NULL AS content FROM conversation c WHERE {where} ORDER BY {score}, c.updated_at DESC, c.id DESC "
               "LIMIT :limit")  # fmt: skip
        return [dict(row._mapping) for row in self.connection.execute(text(sql), {**params, "limit": limit})]

    def messages(self, terms: tuple[str, ...], owner: int | None, limit: int, offset: int,
                 conversation_id: int | None = None) -> list[dict]:  # fmt: skip
        where, score, params = self._where(terms, "m.content", owner)
        where, order = _in_conversation(where, score, params, conversation_id)
        sql = (f"SELECT m.conversation_id AS conversation_id, c.title AS title, m.id AS message_id, m.role AS role, "
               f"m.content AS content FROM message m JOIN conversation c ON c.id = m.conversation_id "
               f"WHERE {where} ORDER BY {order} LIMIT :limit OFFSET :offset")  # fmt: skip
        rows = self.connection.execute(text(sql), {**params, "limit": limit, "offset": offset})
        return [dict(row._mapping) for row in rows]


# -- snippets --------------------------------------------------------------------------------------------------------


def _hit(row: dict, terms: tuple[str, ...]) -> SearchHit:
    """A hit from a result row (``conversation_id``, ``title``, ``message_id``, ``role``, ``content``)."""
    role = row["role"]
    source = row["title"] if row["message_id"] is None else row["content"]
    snippet_text, spans = snippet(source or "", terms)
    return SearchHit(row["conversation_id"], row["title"], row["message_id"],
                     None if role is None else str(getattr(role, "value", role)), snippet_text, spans)  # fmt: skip


def snippet(content: str, terms: tuple[str, ...], size: int = SNIPPET_CHARS) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The part of ``content`` around the first occurrence of any of ``terms`` (case-insensitive), and where the terms
    are in it.

    Args:
        content: the text searched (plain text; it stays plain).
        terms: what was searched for.
        size: about how many characters of ``content`` to keep.

    Returns:
        ``(snippet, spans)``: white space collapsed to single spaces, ``…`` where it was cut; ``spans`` as in
        ``SearchHit.spans``.
    """
    pattern = _pattern(terms)
    first = pattern.search(content) if pattern else None
    start = 0 if first is None or first.start() <= SNIPPET_BEFORE else first.start() - SNIPPET_BEFORE
    window = content[start : start + size + SNIPPET_BEFORE]
    text_ = _WHITESPACE.sub(" ", window).strip()
    cut_end = start + size + SNIPPET_BEFORE < len(content)
    if len(text_) > size:
        text_, cut_end = text_[:size].rstrip(), True
    text_ = ("…" if start > 0 else "") + text_ + ("…" if cut_end else "")
    spans = tuple((m.start(), m.end()) for m in pattern.finditer(text_)) if pattern else ()
    return text_, spans


def _pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """A case-insensitive pattern finding any of ``terms``, the longest first where they overlap."""
    if not terms:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE)
