"""Several Parley processes on one database and one Redis: every answer followed, resumed and stopped from any of
them (``--redis-url``; without it none of this runs and Parley is one process, as before).

The replica that generates an answer writes its log to Redis as it grows (``relay.RedisRelay``: a stream per answer,
entry ids its sequence numbers) and holds a lease on it. Any other replica then:

* **follows** it (``follow``): the stream from the start (entries before the reader's position skipped, a delta cut
  at it), then live; when the stream is gone (expired, or a Redis restart lost it: a gap in its entry numbers) it
  waits for the answer's end in the database and replays it from there, so nothing is lost or doubled;
* **stops** it (``cancel``) and **decides** its tool calls (``decide``): a key the owner reads when it renews its
  leases, plus a notification for at once;
* **marks it interrupted** when its lease lapses (``reap``: the replica died), keeping its last checkpoint, and
  writes the end to its stream so that readers end.

Changes between tabs (a new conversation, a title, an answer that ended) go to every replica over pub/sub
(``publish_change``), and each replica tells its own watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ..refusals import Refusal
from ..relay.redis_relay import CHANGES, CONTROL, RedisRelay, call_key, cancel_key, decision_key
from ..store import Message, Status
from .changes import Change
from .events import (
    ApprovalRequired,
    ContentEvent,
    Event,
    Finished,
    Phase,
    PhaseChanged,
    TextDelta,
    ToolResult,
    UsageReported,
    after,
    from_json,
    is_content,
    replay,
    to_json,
)
from .generation import Decision, Generation

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

#: Why a replica marks an answer of a replica that died.
LOST = "The Parley process generating this answer stopped; its last saved text is kept."
#: Seconds between two looks at the database while waiting for an answer whose stream is gone.
POLL = 0.25


def encode(event: Event) -> dict[str, str]:
    """An answer's event as a stream entry's fields: ``t`` text, ``c`` another content event (JSON), ``p`` a phase,
    ``u`` usage (``[prompt, completion]``), ``e`` the end (its status)."""
    if isinstance(event, TextDelta):
        return {"t": event.text}
    if is_content(event):
        return {"c": json.dumps(to_json(event), ensure_ascii=False)}  # type: ignore[arg-type]
    if isinstance(event, PhaseChanged):
        return {"p": event.phase.value}
    if isinstance(event, UsageReported):
        return {"u": json.dumps([event.prompt_tokens, event.completion_tokens])}
    assert isinstance(event, Finished)
    return {"e": str(getattr(event.message.status, "value", event.message.status))}


def decode(seq: int, fields: dict[str, str]) -> Event | None:
    """The event of a stream entry (``encode``); None for the end (its message comes from the database)."""
    if "t" in fields:
        return TextDelta(fields["t"], seq)
    if "c" in fields:
        return from_json(json.loads(fields["c"]))
    if "p" in fields:
        return PhaseChanged(Phase(fields["p"]), seq)
    if "u" in fields:
        prompt, completion = json.loads(fields["u"])
        return UsageReported(prompt, completion, seq)
    return None


class ReplicaUnreachable(Refusal):
    """Raised when a Stop or a decision for another replica's answer cannot be passed on (Redis is unreachable)."""

    status = 503
    code = "replica_unreachable"


class StreamGone(Exception):
    """The answer's stream cannot serve the rest (missing, or entries lost): read the database instead."""


class Replicas:
    """The engine's part in running as one of several replicas.

    Args:
        engine: the engine of this replica.
        relay: its connection to Redis.
        reap_interval: seconds between two looks for answers whose replica died.
    """

    def __init__(self, engine: Engine, relay: RedisRelay, *, reap_interval: float | None = None) -> None:
        self.engine = engine
        self.relay = relay
        self.reap_interval = reap_interval or relay.lease_ttl / 3
        self._reaper: asyncio.Task[None] | None = None
        relay.subscribe(CHANGES, self._on_change)
        relay.subscribe(CONTROL, self._on_control)
        relay.on_renew = self._check_requests
        self.reaped = 0
        self._suspects: dict[int, float] = {}  # answers seen without a lease: since when (monotonic seconds)

    async def start(self) -> None:
        """Connect (listening, renewing leases) and start looking for answers of dead replicas."""
        await self.relay.start()
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever(), name="reaper")

    async def close(self) -> None:
        """Stop looking, write what is buffered and disconnect."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        await self.relay.close()

    # -- the owner's side ------------------------------------------------------------------------------------------

    def started(self, generation: Generation) -> None:
        """Publish ``generation``'s log (what it has so far, then every event) and hold its lease."""
        message_id = generation.message_id
        assert message_id is not None
        asyncio.get_running_loop().create_task(self.relay.claim(message_id), name="lease")

        def forward(event: Event) -> None:
            if isinstance(event, ApprovalRequired):
                payload = {"message_id": message_id, "user_id": generation.user_id, "replica": self.relay.replica_id}
                ttl = max(event.deadline - time.time(), 1.0)
                self._spawn(self.relay.set_json(call_key(event.call_id), payload, ttl=ttl))
            elif isinstance(event, ToolResult):
                self._spawn(self.relay.delete(call_key(event.call_id), decision_key(event.call_id)))
            self.relay.emit(message_id, event.seq, encode(event), end=isinstance(event, Finished))

        content, _ = generation.subscribe(forward)
        for event in content:  # a seeded answer's start (a /v1 client's tool rounds)
            self.relay.emit(message_id, event.seq, encode(event))
        self.relay.emit(message_id, generation.position, encode(PhaseChanged(generation.phase, generation.position)))

    def _spawn(self, work: Any) -> None:
        async def run() -> None:
            try:
                await work
            except (RedisError, OSError) as error:
                log.warning("a Redis write failed (%s)", error)

        asyncio.get_running_loop().create_task(run())

    async def _check_requests(self) -> None:
        """At each lease renewal: Stop pressed elsewhere for one of our answers, decisions given elsewhere."""
        running = [g for g in self.engine.generations.values() if g.message_id in self.relay.leases]
        if not running:
            return
        flags = await self.relay.redis.mget([cancel_key(g.message_id) for g in running])  # type: ignore[arg-type]
        for generation, flag in zip(running, flags, strict=True):
            if flag is not None:
                await self._stop_here(generation.message_id)  # type: ignore[arg-type]
        calls = [(g, call_id) for g in running for call_id in g.pending]
        decisions = await self.relay.get_json([decision_key(call_id) for _, call_id in calls])
        for (generation, call_id), decision in zip(calls, decisions, strict=True):
            if decision is not None:
                generation.decide(call_id, Decision(bool(decision.get("approve")), bool(decision.get("always"))))

    async def _stop_here(self, message_id: int) -> None:
        generation = self.engine.generations.get(message_id)
        if generation is not None and not generation.done:
            await self.engine._stop(generation)
        await self.relay.delete(cancel_key(message_id))

    def _on_control(self, data: dict[str, Any]) -> None:
        if data.get("op") == "cancel" and isinstance(data.get("message_id"), int):
            if data["message_id"] in self.engine.generations:
                asyncio.get_running_loop().create_task(self._stop_here(data["message_id"]))
        elif data.get("op") == "decide" and isinstance(data.get("call_id"), str):
            for generation in self.engine.generations.values():
                if data["call_id"] in generation.pending:
                    generation.decide(data["call_id"], Decision(bool(data.get("approve")), bool(data.get("always"))))

    # -- another replica's answers -------------------------------------------------------------------------------

    async def follow(self, message: Message, position: int = 0) -> AsyncIterator[Event]:
        """Follow ``message`` (a stored answer that is ``streaming`` in the database, generated by another replica)
        after ``position``: from its stream, else from the database once it ended (see the module docstring). Yields
        what ``Generation.follow`` yields."""
        assert message.id is not None
        have = position
        try:
            async for event in self._from_stream(message.id, position):
                if isinstance(event, Finished):
                    yield event
                    return
                if is_content(event):
                    have = event.seq
                yield event
        except StreamGone:
            pass
        ended = await self._ended(message.id)
        for event in replay(ended, have):
            yield event

    async def _from_stream(self, message_id: int, position: int) -> AsyncIterator[Event]:
        last, number, have = "0-0", 0, position
        missing_since: float | None = None
        first_batch = True
        while True:
            try:
                entries = await self.relay.read(message_id, last)
            except (RedisError, OSError) as error:
                log.info("cannot read answer %d's stream (%s); waiting for it in the database", message_id, error)
                raise StreamGone from error
            if entries is None:  # not written yet (the first turn of the owner), or gone
                missing_since = missing_since or time.monotonic()
                if time.monotonic() - missing_since > 2 * self.relay.lease_ttl or await self._is_over(message_id):
                    raise StreamGone
                await asyncio.sleep(POLL)
                continue
            if not entries:
                if await self._is_over(message_id):  # ended by a reaper that could not write its end
                    raise StreamGone
                continue
            batch: list[ContentEvent] = []
            phase: PhaseChanged | None = None
            for seq, n, fields in entries:
                if n != number + 1:  # entries lost (Redis restarted mid-answer)
                    raise StreamGone
                number, last = n, f"{seq}-{n}"
                event = decode(seq, fields)
                if event is None:  # the end
                    for content in after(batch, have):
                        yield content
                    ended = await self._ended(message_id)
                    yield UsageReported(ended.prompt_tokens, ended.completion_tokens, seq)
                    yield Finished(ended, seq)
                    return
                if is_content(event):
                    batch.append(event)  # type: ignore[arg-type]
                elif isinstance(event, PhaseChanged):
                    phase = event
                    if not first_batch:
                        for content in after(batch, have):
                            have = max(have, content.seq)
                            yield content
                        batch = []
                        yield event
                        phase = None
            for content in after(batch, have):
                have = max(have, content.seq)
                yield content
            if phase is not None and first_batch and phase.phase != Phase.streaming:
                yield phase  # where it is now (catching up: only the last phase)
            first_batch = False

    async def _is_over(self, message_id: int) -> bool:
        message = await asyncio.to_thread(self.engine.store.get_message, message_id)
        return message.status != Status.streaming

    async def _ended(self, message_id: int) -> Message:
        """The answer once it is no longer ``streaming`` in the database (looked at every ``POLL`` seconds)."""
        while True:
            message = await asyncio.to_thread(self.engine.store.get_message, message_id)
            if message.status != Status.streaming:
                return message
            await asyncio.sleep(POLL)

    async def cancel(self, message: Message) -> bool:
        """Stop an answer another replica generates: the request outlives a lost notification (the owner looks at it
        at its next lease renewal). Returns once it ended (True), or False when it was not streaming."""
        assert message.id is not None
        if message.status != Status.streaming:
            return False
        try:
            await self.relay.set_json(cancel_key(message.id), {"by": self.relay.replica_id}, ttl=60)
        except (RedisError, OSError) as error:
            raise ReplicaUnreachable("Stop could not reach the Parley process generating this answer (Redis cannot "
                                     "be reached). Try again in a moment.") from error  # fmt: skip
        await self.relay.publish(CONTROL, {"op": "cancel", "message_id": message.id})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(4 * self.relay.lease_ttl):
                await self._ended(message.id)
        return True

    async def decide(self, call_id: str, approve: bool, always: bool, user_id: int | None) -> bool:
        """Give a decision on a tool call waiting on another replica; False when no call of ``user_id``'s waits."""
        try:
            (waiting,) = await self.relay.get_json([call_key(call_id)])
            if waiting is None or waiting.get("user_id") != user_id:
                return False
            await self.relay.set_json(decision_key(call_id), {"approve": approve, "always": always}, ttl=600)
        except (RedisError, OSError) as error:
            raise ReplicaUnreachable("The decision could not reach the Parley process running this answer (Redis "
                                     "cannot be reached). Try again in a moment.") from error  # fmt: skip
        await self.relay.publish(CONTROL, {"op": "decide", "call_id": call_id, "approve": approve, "always": always})
        return True

    # -- changes between tabs --------------------------------------------------------------------------------------

    def publish_change(self, change: Change) -> None:
        """Tell the other replicas' watchers about ``change``."""
        payload = {"conversation_id": change.conversation_id, "kind": change.kind, "user_id": change.user_id,
                   "title": change.title}  # fmt: skip
        asyncio.get_running_loop().create_task(self.relay.publish(CHANGES, payload))

    def _on_change(self, data: dict[str, Any]) -> None:
        try:
            change = Change(int(data["conversation_id"]), data["kind"], data.get("user_id"), data.get("title"))
        except (KeyError, TypeError, ValueError):
            return
        self.engine.watchers.notify(change)

    # -- dead replicas -----------------------------------------------------------------------------------------

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                await self.reap()
            except (RedisError, OSError) as error:  # Redis down: nobody can be told dead; try again
                log.warning("cannot look for answers of stopped replicas (%s)", error)
            except Exception:
                log.exception("looking for answers of stopped replicas failed")

    async def reap(self) -> list[int]:
        """Mark ``interrupted`` (keeping their last checkpoint) the answers ``streaming`` in the database that no
        replica has held a lease on for a whole lease (seen at two looks) and that started more than a lease ago; write
        their end to their streams and tell the watchers. Returns their ids. Raises RedisError, OSError (Redis
        down)."""
        grace = datetime.now(UTC) - timedelta(seconds=self.relay.lease_ttl)
        candidates = await asyncio.to_thread(self.engine.store.streaming_answers, grace)
        candidates = [row for row in candidates if row[0] not in self.engine.generations]
        if not candidates:
            self._suspects = {}
            return []
        holders = await self.relay.holders(row[0] for row in candidates)
        now = time.monotonic()
        missing = {row[0] for row in candidates if holders.get(row[0]) is None}
        self._suspects = {key: self._suspects.get(key, now) for key in missing}
        # missing for a whole lease: a live owner would have set it again by then (e.g. after a Redis restart)
        dead = [row for row in candidates if row[0] in missing and now - self._suspects[row[0]] >= self.relay.lease_ttl]
        if not dead:
            return []
        marked = await asyncio.to_thread(self.engine.store.interrupt, [row[0] for row in dead], LOST)
        for message_id, conversation_id, user_id in dead:
            if message_id in marked:
                self.relay.emit(message_id, 2**62, {"e": Status.interrupted.value}, end=True)  # past any entry
                self.engine.notify(conversation_id, "finished", user_id)
        self.reaped += len(marked)
        if marked:
            log.warning("marked %d answer(s) of a stopped replica as interrupted", len(marked))
        return marked


def make_replicas(engine: Engine, url: str, *, lease_ttl: float = 5.0) -> Replicas:
    """The ``Replicas`` of ``engine`` on the Redis at ``url``."""
    return Replicas(engine, RedisRelay(url, lease_ttl=lease_ttl))
