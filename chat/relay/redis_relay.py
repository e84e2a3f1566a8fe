"""What is live, shared between Parley replicas through Redis (redis-py's asyncio client).

PostgreSQL stays the source of truth; Redis carries only what is live, and everything here survives Redis going
away (a write that fails is logged and given up; readers fall back to the database):

* **An answer's log** is a Redis Stream per answer, ``parley:answer:<message id>``, written by the replica that
  generates it. Entry ids are ``<seq>-<n>``: ``seq`` the event's sequence number (``engine/events.py``), so an offset
  means the same on every replica, and ``n`` the entry's number in the stream from 1, so a reader sees a gap (a
  Redis that restarted mid-answer) as a jump in ``n``. Entries are written in one pipeline per event-loop turn. A
  stream expires ``stream_ttl`` seconds after its answer's end.
* **Leases**: ``parley:lease:<message id>`` holds the generating replica's id and expires after ``lease_ttl``
  seconds unless renewed (every third of it); a lapsed lease is a dead replica.
* **Requests to the owner** (Stop, a tool call's decision) are a key that outlives a lost message
  (``parley:cancel:<id>``, ``parley:decision:<call id>``) plus a notification on ``parley:control``; the owner also
  looks at the keys each time it renews its leases, so a notification lost while a listener reconnected loses
  nothing.
* **Pub/sub**: channels with handlers (the conversations' changes between tabs, the control channel). The listener
  reconnects with backoff after a Redis restart; its reads have a timeout of their own, never a socket timeout that
  would end it silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: Prefix of every key and channel.
PREFIX = "parley:"
CHANGES = PREFIX + "changes"
CONTROL = PREFIX + "control"

Handler = Callable[[dict[str, Any]], None]
Entry = tuple[int, int, dict[str, str]]  # (seq, n, fields)


def stream_key(message_id: int) -> str:
    """The Redis Stream of an answer's log."""
    return f"{PREFIX}answer:{message_id}"


def lease_key(message_id: int) -> str:
    """The lease of the replica generating an answer."""
    return f"{PREFIX}lease:{message_id}"


def cancel_key(message_id: int) -> str:
    """Set when someone pressed Stop for an answer (on any replica)."""
    return f"{PREFIX}cancel:{message_id}"


def call_key(call_id: str) -> str:
    """A tool call waiting for its owner's decision: ``{"message_id", "user_id", "replica"}``."""
    return f"{PREFIX}call:{call_id}"


def decision_key(call_id: str) -> str:
    """A decision given on another replica than the owner's: ``{"approve", "always"}``."""
    return f"{PREFIX}decision:{call_id}"


class RedisRelay:
    """The connection to Redis of one replica, and what it writes and listens to there.

    Args:
        url: ``redis://host:port/db``.
        replica_id: this process's name in leases (default: host, pid and a random suffix).
        lease_ttl: seconds a lease lasts without renewal.
        stream_ttl: seconds an answer's stream is kept after its end.
    """

    def __init__(self, url: str, *, replica_id: str | None = None, lease_ttl: float = 5.0,
                 stream_ttl: float = 300.0) -> None:  # fmt: skip
        self.url = url
        self.replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.lease_ttl = lease_ttl
        self.stream_ttl = stream_ttl
        self.redis = aioredis.from_url(url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=10)
        self._handlers: dict[str, Handler] = {}
        self._buffer: dict[int, list[tuple[str, dict[str, str]]]] = {}  # message id -> entries to write
        self._counters: dict[int, int] = {}  # message id -> entries written or buffered
        self._ending: set[int] = set()  # answers whose end entry is buffered: expire and release after writing
        self._broken: set[int] = set()  # answers whose stream lost entries: nothing more is written
        self._flush: asyncio.Task[None] | None = None
        self.leases: set[int] = set()
        self.on_renew: Callable[[], Any] | None = None  # called after each renewal (the owner's checks)
        self._tasks: list[asyncio.Task[None]] = []
        self.writes = 0  # pipelines sent (for benchmarks)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with each JSON message published on ``channel`` (before ``start``)."""
        self._handlers[channel] = handler

    async def start(self) -> None:
        """Start listening and renewing leases (Redis may be down: both keep trying)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen(), name="relay-listen"),
                       loop.create_task(self._renew(), name="relay-leases")]  # fmt: skip

    async def close(self) -> None:
        """Write what is buffered, stop the tasks, close the connections."""
        if self._flush is not None:
            with contextlib.suppress(Exception):
                await self._flush
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    # -- an answer's stream ------------------------------------------------------------------------------------

    def emit(self, message_id: int, seq: int, fields: dict[str, str], *, end: bool = False) -> None:
        """Add an entry to an answer's stream (written with the others of this event-loop turn). ``end``: the last
        one; the stream then expires after ``stream_ttl`` and the lease is released."""
        if message_id in self._broken:
            return
        number = self._counters.get(message_id, 0) + 1
        self._counters[message_id] = number
        self._buffer.setdefault(message_id, []).append((f"{seq}-{number}", fields))
        if end:
            self._ending.add(message_id)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._write(), name="relay-write")

    async def _write(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's events join the pipeline
        while self._buffer:
            buffer, self._buffer = self._buffer, {}
            ending, self._ending = self._ending & set(buffer), self._ending - set(buffer)
            pipe = self.redis.pipeline(transaction=False)
            for message_id, entries in buffer.items():
                for entry_id, fields in entries:
                    pipe.xadd(stream_key(message_id), fields, id=entry_id)  # type: ignore[arg-type]
            for message_id in ending:
                pipe.expire(stream_key(message_id), int(self.stream_ttl))
                pipe.delete(lease_key(message_id))
            try:
                await pipe.execute()
                self.writes += 1
            except (RedisError, OSError) as error:
                log.warning("Redis refused an answer's events (%s); readers elsewhere fall back to the database",
                            error)  # fmt: skip
                self._broken.update(buffer.keys() - ending)
            for message_id in ending:
                self._counters.pop(message_id, None)
                self._broken.discard(message_id)
                self.leases.discard(message_id)

    async def read(self, message_id: int, after: str, block: float = 1.0, count: int = 1000) -> list[Entry] | None:
        """The entries of an answer's stream after the entry id ``after`` (``"0-0"``: from the start), waiting up
        to ``block`` seconds for one.

        Returns:
            ``[(seq, n, fields)]`` (empty: nothing new yet), or None when the stream does not exist.

        Raises:
            RedisError, OSError: Redis cannot be reached.
        """
        key = stream_key(message_id)
        answer = await self.redis.xread({key: after}, count=count, block=max(1, int(block * 1000)))
        if not answer:
            return [] if await self.redis.exists(key) else None
        entries: list[Entry] = []
        for _key, items in answer:
            for entry_id, fields in items:
                seq, number = (int(part) for part in entry_id.decode().split("-"))
                entries.append((seq, number, {k.decode(): v.decode() for k, v in fields.items()}))
        return entries

    # -- leases ------------------------------------------------------------------------------------------------

    async def claim(self, message_id: int) -> None:
        """Hold the lease of an answer this replica generates (renewed until its end entry is written)."""
        self.leases.add(message_id)
        try:
            await self.redis.set(lease_key(message_id), self.replica_id, px=int(self.lease_ttl * 1000))
        except (RedisError, OSError) as error:
            log.warning("could not take the lease of answer %d in Redis (%s); renewing it later", message_id, error)

    async def holders(self, message_ids: Iterable[int]) -> dict[int, str | None]:
        """Who holds each answer's lease (None: nobody: its replica died, or it ended). Raises RedisError, OSError."""
        ids = list(message_ids)
        if not ids:
            return {}
        values = await self.redis.mget([lease_key(i) for i in ids])
        return {key: (value.decode() if value is not None else None) for key, value in zip(ids, values, strict=True)}

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                if self.leases:
                    pipe = self.redis.pipeline(transaction=False)
                    for message_id in self.leases:
                        pipe.set(lease_key(message_id), self.replica_id, px=int(self.lease_ttl * 1000))
                    await pipe.execute()
                if self.on_renew is not None:
                    await self.on_renew()
            except (RedisError, OSError) as error:
                log.warning("could not renew the answers' leases in Redis (%s)", error)
            except Exception:
                log.exception("the relay's periodic checks failed")

    # -- keys and notifications ----------------------------------------------------------------------------------

    async def set_json(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Set ``key`` to ``value`` as JSON for ``ttl`` seconds. Raises RedisError, OSError."""
        await self.redis.set(key, json.dumps(value), px=int(ttl * 1000))

    async def get_json(self, keys: list[str]) -> list[dict[str, Any] | None]:
        """The JSON values of ``keys`` (None where missing). Raises RedisError, OSError."""
        if not keys:
            return []
        return [json.loads(value) if value is not None else None for value in await self.redis.mget(keys)]

    async def delete(self, *keys: str) -> None:
        """Delete ``keys`` (errors logged, not raised: a key left expires by itself)."""
        try:
            await self.redis.delete(*keys)
        except (RedisError, OSError) as error:
            log.warning("could not delete %s in Redis (%s)", keys, error)

    async def publish(self, channel: str, message: dict[str, Any]) -> bool:
        """Publish ``message`` (JSON) on ``channel``; False when Redis could not be reached (logged)."""
        try:
            await self.redis.publish(channel, json.dumps({**message, "origin": self.replica_id}))
            return True
        except (RedisError, OSError) as error:
            log.warning("could not publish on %s (%s)", channel, error)
            return False

    async def _listen(self) -> None:
        """Deliver the subscribed channels' messages to their handlers, reconnecting after any failure."""
        delay = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._handlers)
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)  # a timeout of its own: never a silent end
                    if message is None or message.get("type") != "message":
                        continue
                    data = json.loads(message["data"])
                    if data.get("origin") == self.replica_id:
                        continue
                    handler = self._handlers.get(message["channel"].decode())
                    if handler is not None:
                        try:
                            handler(data)
                        except Exception:
                            log.exception("a relay handler failed on %s", message["channel"])
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis restarted or unreachable: listen again
                log.warning("lost the Redis subscription (%s); reconnecting in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
