"""Saving the partial text (and, for answers with tool calls or reasoning, the events) of the answers that are
streaming, all in one transaction per interval."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from ..store import Store
from .generation import Generation

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves the partial text of the growing stored answers, each at most once per ``interval`` seconds and never in
    its first interval, all due ones in one transaction (one thread hop, one commit, however many answers stream).
    Generation tasks never wait for it; its task ends when no answer is left and starts again with the next one. A
    late save cannot overwrite a final text (``Store.checkpoint_many``).

    Writes per answer: 1 (the exchange) + at most ⌊duration / interval⌋ checkpoints + 1 (the final text).

    Args:
        store: where the texts are saved.
        generations: the engine's running stored answers, by message id (read, never changed).
        interval: seconds between two saves of one answer.
    """

    def __init__(self, store: Store, generations: Mapping[int, Generation], interval: float) -> None:
        self.store = store
        self.generations = generations
        self.interval = interval
        self.transactions = 0
        """Transactions that saved partial text since start (for benchmarks)."""
        self.saved = 0
        """Answers' partial texts saved since start, summed over the transactions (for benchmarks and tests)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run, unless running already (call after adding a generation)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="checkpoints")

    async def stop(self) -> None:
        """Stop saving (at shut-down; the final texts are written by the answers themselves)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        saved: dict[int, tuple[float, int]] = {}  # message id -> (monotonic time, size) of the last save or start
        while self.generations:
            await asyncio.sleep(self.interval / 2)
            now = time.monotonic()
            due = []
            for message_id, generation in list(self.generations.items()):
                when, size = saved.setdefault(message_id, (now, 0))
                if not generation.done and generation.size != size and now - when >= self.interval:
                    due.append((message_id, generation))
            saved = {key: value for key, value in saved.items() if key in self.generations}
            if not due:
                continue
            contents = {message_id: generation.text for message_id, generation in due}
            events = {message_id: generation.events_json() for message_id, generation in due if generation.rich}
            sizes = {message_id: generation.size for message_id, generation in due}
            try:
                await asyncio.to_thread(self.store.checkpoint_many, contents, events)  # type: ignore[arg-type]
            except Exception:  # the final write still stores the text; keep streaming
                log.exception("checkpoint of %d answer(s) failed", len(contents))
                continue
            self.transactions += 1
            self.saved += len(contents)
            saved.update({key: (now, size) for key, size in sizes.items() if key in self.generations})
