"""The engine: sends messages, runs one generation per assistant message, stops them.

Each generation is an asyncio task owned by the engine, so it outlives any browser tab. Its
partial text is checkpointed to the database at most once per ``checkpoint_interval`` seconds
and at the end; every delta is fanned out to the generation's subscribers. Cancel closes the
upstream stream (ending token generation upstream) and stores the partial text as ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from ..provider import ChatStream, Provider, ProviderError
from ..store import Conversation, Message, NotFound, Role, Status, Store
from .generation import Event, Generation, Phase, replay
from .policy import LOCAL, Account, Limits, ModelNotAllowed

log = logging.getLogger(__name__)

#: Longest conversation title made from a first message, in characters.
TITLE_LENGTH = 48
DEFAULT_TITLE = "New chat"


class ConversationBusy(RuntimeError):
    """Raised when a conversation is already answering and another answer is asked for."""


class EmptyMessage(ValueError):
    """Raised when a message to send is empty or only whitespace."""


class MessageTooLong(ValueError):
    """Raised when a message to send is longer than the configured limit (``max_message_length`` characters)."""


#: What no database and no page can hold as text: NUL (PostgreSQL refuses it in text) and lone UTF-16 surrogates
#: (not encodable as UTF-8; a browser's JSON may carry them). Each becomes U+FFFD, as a UTF-8 decoder would do.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with every NUL and lone surrogate replaced by U+FFFD REPLACEMENT CHARACTER; all else is kept exactly
    (other control characters, ``\r``, emoji, combining marks, right-to-left text). Returns ``text`` itself when
    there is nothing to replace (a regex search, ~0.2 µs for a short delta)."""
    return _UNSTORABLE.sub("\ufffd", text) if _UNSTORABLE.search(text) else text


@dataclass(frozen=True, slots=True)
class Change:
    """Something changed in a conversation (for views to refresh): ``kind`` is one of
    ``created``, ``updated``, ``deleted``, ``message``, ``finished``."""

    conversation_id: int
    kind: str


def clean_title(title: object) -> str:
    """A title as stored: whitespace collapsed, at most 200 characters, blank: ``DEFAULT_TITLE``."""
    return clean_text(" ".join(str(title).split()))[:200] or DEFAULT_TITLE


def make_title(content: str) -> str:
    """A conversation title from its first message: the first line, cut at a word near ``TITLE_LENGTH``."""
    words = " ".join(content.split())
    if len(words) <= TITLE_LENGTH:
        return words or DEFAULT_TITLE
    cut = words[:TITLE_LENGTH].rsplit(" ", 1)[0] or words[:TITLE_LENGTH]
    return cut.rstrip(",.;:") + "…"


class Engine:
    """Runs the generations of assistant messages.

    Args:
        store: where conversations and messages are kept.
        provider: the upstream that streams chat completions.
        default_model: the model used when a conversation names none.
        default_temperature: the temperature of new conversations, 0 to 2.
        checkpoint_interval: seconds between two saves of a streaming answer's partial text.
        max_message_length: the longest message ``send`` accepts, in characters.
        limits: per-user limits on messages per minute and concurrent answers (default: none).

    Every method that names a conversation or message takes the ``account`` it is done for (default ``LOCAL``, the
    one person of personal mode): another user's conversation is ``NotFound``, as if it did not exist.
    """

    def __init__(
        self,
        store: Store,
        provider: Provider,
        *,
        default_model: str,
        default_temperature: float = 0.7,
        checkpoint_interval: float = 0.5,
        max_message_length: int = 100_000,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.max_message_length = max_message_length
        self.provider = provider
        self.default_model = default_model
        self.default_temperature = default_temperature
        self.checkpoint_interval = checkpoint_interval
        self.generations: dict[int, Generation] = {}
        self._claimed: set[int] = set()  # conversations whose new answer is being stored (see ``_claim``)
        self._unstored: Counter[int | None] = Counter()  # answers streaming outside the engine, per user (``running``)
        self._watchers: list[Callable[[Change], None]] = []
        self.checkpoints = 0  # transactions saving partial text since start (for benchmarks)
        self._checkpointer: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def recover(self) -> int:
        """Mark answers left ``streaming`` by an earlier run as ``interrupted``; return how many.

        Call once before serving: no answer can be streaming before this process started it.
        """
        count = self.store.interrupt_streaming()
        if count:
            log.warning("marked %d answer(s) from an earlier run as interrupted", count)
        return count

    async def shutdown(self) -> None:
        """Stop every running answer, storing each as ``interrupted`` with its partial text."""
        generations = list(self.generations.values())
        for generation in generations:
            if generation.task is not None:
                generation.task.cancel()
        for generation in generations:
            with contextlib.suppress(BaseException):
                await generation.wait()
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(BaseException):
                await self._checkpointer

    # -- watching --------------------------------------------------------------------------------

    def watch(self, watcher: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``watcher`` on every Change; returns the function that stops it."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher) if watcher in self._watchers else None

    def notify(self, conversation_id: int, kind: str) -> None:
        """Tell the watchers that a conversation changed."""
        for watcher in list(self._watchers):
            try:
                watcher(Change(conversation_id, kind))
            except Exception:
                log.exception("conversation watcher failed")

    # -- conversations ---------------------------------------------------------------------------

    def create_conversation(self, account: Account = LOCAL, **fields: object) -> int:
        """Create a conversation of ``account`` with the default temperature; return its id. The title is cleaned as
        in ``update_conversation`` (whitespace collapsed, at most 200 characters, blank: "New chat"). Raises
        ModelNotAllowed for a ``model`` the account may not use."""
        fields.setdefault("temperature", self.default_temperature)
        fields["user_id"] = account.user_id
        if fields.get("model"):
            self.check_model(account, self.model_for(fields["model"]))  # type: ignore[arg-type]
        if "title" in fields:
            fields["title"] = clean_title(fields["title"])
        conversation = self.store.create_conversation(**fields)
        assert conversation.id is not None
        self.notify(conversation.id, "created")
        return conversation.id

    def update_conversation(self, conversation_id: int, account: Account = LOCAL, **fields: object) -> None:
        """Change a conversation's title, system prompt, model or temperature. Raises NotFound, ValueError,
        ModelNotAllowed."""
        if "title" in fields:
            fields["title"] = clean_title(fields["title"])
        if "temperature" in fields and not 0 <= float(fields["temperature"]) <= 2:  # type: ignore[arg-type]
            raise ValueError("temperature must be between 0 and 2")
        if "model" in fields:
            fields["model"] = (str(fields["model"] or "").strip()) or None
            self.check_model(account, self.model_for(fields["model"]))  # type: ignore[arg-type]
        self.store.get_conversation(conversation_id, owner=account.owner)
        self.store.update_conversation(conversation_id, **fields)
        self.notify(conversation_id, "updated")

    async def delete_conversation(self, conversation_id: int, account: Account = LOCAL) -> None:
        """Stop its running answer, if any, then delete the conversation. Raises NotFound."""
        await asyncio.to_thread(self.store.get_conversation, conversation_id, owner=account.owner)
        await self.cancel_conversation(conversation_id)
        self.store.delete_conversation(conversation_id)
        self.notify(conversation_id, "deleted")

    def busy(self, conversation_id: int) -> bool:
        """True while the conversation has an answer being generated (or being stored, about to be)."""
        return conversation_id in self._claimed or any(
            g.conversation_id == conversation_id for g in self.generations.values()
        )

    @contextlib.contextmanager
    def _claim(self, conversation_id: int | None, refusal: str) -> Iterator[None]:
        """Hold ``conversation_id`` as busy while a new answer is stored in a thread (the loop serves meanwhile, so
        a second Send must see it busy). Raises ConversationBusy with ``refusal`` when it is busy already."""
        if conversation_id is None:
            yield
            return
        if self.busy(conversation_id):
            raise ConversationBusy(refusal)
        self._claimed.add(conversation_id)
        try:
            yield
        finally:
            self._claimed.discard(conversation_id)

    def live(self, message_id: int, account: Account = LOCAL) -> Generation | None:
        """The running generation of this message, or None when it is not streaming (or not ``account``'s)."""
        generation = self.generations.get(message_id)
        if generation is None or (account.owner is not None and generation.user_id != account.owner):
            return None
        return generation

    def running_answers(self, account: Account) -> int:
        """How many answers of ``account`` are generating now (the engine's and those marked ``running``)."""
        mine = sum(1 for generation in self.generations.values() if generation.user_id == account.user_id)
        return mine + self._unstored[account.user_id]

    @contextlib.contextmanager
    def running(self, account: Account) -> Iterator[None]:
        """Count an answer streamed outside the engine (``/v1`` with ``store: false``) among ``account``'s running
        answers while the block runs, for the concurrent-answers limit."""
        self._unstored[account.user_id] += 1
        try:
            yield
        finally:
            self._unstored[account.user_id] -= 1

    def check_model(self, account: Account, model: str) -> None:
        """Raise ModelNotAllowed unless ``account`` may use ``model``."""
        if not account.may_use(model):
            raise ModelNotAllowed(f"You may not use the model {model!r}; ask an admin, or choose another model.")

    def record_usage(self, account: Account, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        """Add an answer's tokens to ``account``'s daily usage (nothing in personal mode). Blocking: call it in a
        thread."""
        if account.user_id is not None:
            self.store.add_usage(account.user_id, prompt_tokens or 0, completion_tokens or 0)

    async def follow(self, message_id: int, offset: int = 0, account: Account = LOCAL) -> AsyncIterator[Event]:
        """Follow an assistant message from character ``offset`` on, live or stored: the one source for every stream
        a view serves (the page's per-answer WebSocket, the HTTP API's SSE).

        Yields, in order: ``PhaseChanged`` (a live answer with no text yet: loading, queued, thinking), a ``Delta``
        with the text from ``offset`` to what exists now (when there is any), then each later ``PhaseChanged`` and
        ``Delta`` as the answer grows, and last ``Finished`` with the stored message (see ``Generation.follow``).
        A stored (finished) message yields its remaining text and ``Finished``.

        Args:
            message_id: the assistant message.
            offset: how many characters (Python ``str`` code points, not bytes or UTF-16 units) the consumer
                already has; clamped to the text's length.
            account: who follows it.

        Raises:
            NotFound: no such message (or not ``account``'s).
        """
        generation = self.generations.get(message_id)
        if generation is not None and (account.owner is None or generation.user_id == account.owner):
            async for event in generation.follow(offset):
                yield event
            return
        message = await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)
        for event in replay(message, offset):
            yield event

    def model_for(self, conversation_model: str | None) -> str:
        """The model an answer uses: the conversation's, else the default."""
        return conversation_model or self.default_model

    # -- answers ---------------------------------------------------------------------------------

    async def send(
        self,
        conversation_id: int | None,
        content: str,
        *,
        temperature: float | None = None,
        model: str | None = None,
        account: Account = LOCAL,
        max_tokens: int | None = None,
    ) -> tuple[Message, Message]:
        """Store a user message and start generating the answer to it.

        Args:
            conversation_id: the conversation, or None to start a new one with this message (created in the same
                transaction as the message, titled from it, with the default temperature).
            content: what the user wrote, kept exactly but for NUL and lone surrogates (see ``clean_text``).
            temperature: overrides the conversation's temperature for this answer.
            model: overrides the conversation's model for this answer.
            account: who sends it: the owner of a new conversation; another user's conversation is NotFound.
            max_tokens: most tokens of this answer (a ``/v1`` request's ``max_tokens``; ``--max-tokens`` caps it).

        Returns:
            ``(user_message, assistant_message)``; the assistant message is ``streaming``; both carry the
            conversation's id.

        Raises:
            EmptyMessage: nothing but whitespace.
            MessageTooLong: longer than ``max_message_length`` characters.
            ConversationBusy: the conversation is already answering.
            NotFound: no such conversation (or not ``account``'s).
            ModelNotAllowed: ``account`` may not use the answer's model.
            RateLimited: ``account`` is over its messages per minute or its concurrent answers (``Limits``).
        """
        if not content.strip():
            raise EmptyMessage("Type a message first.")
        if len(content) > self.max_message_length:
            raise MessageTooLong(
                f"This message is {len(content):,} characters long; the limit is {self.max_message_length:,}. "
                "Shorten it or send it in parts."
            )
        content = clean_text(content)
        running = self.running_answers(account)

        def store_exchange() -> tuple[Message, Message, list[dict[str, str]], str | None]:
            """In a thread, in one hop: read the conversation, check the account, store the exchange, build the
            request's messages."""
            if conversation_id is None:
                conversation = Conversation(
                    title=DEFAULT_TITLE, temperature=self.default_temperature, user_id=account.user_id
                )
            else:
                conversation = self.store.get_conversation(conversation_id, owner=account.owner)
            answer_model = model or self.model_for(conversation.model)
            self.check_model(account, answer_model)
            self.limits.admit(account, running)
            first_title = make_title(content) if conversation.title == DEFAULT_TITLE else None  # the first message
            user, assistant = self.store.add_exchange(
                conversation_id,
                content,
                model=answer_model,
                temperature=conversation.temperature if temperature is None else temperature,
                first_title=first_title,
                new_conversation=conversation if conversation_id is None else None,
            )
            return user, assistant, self.request_messages(assistant, conversation.system_prompt), first_title

        with self._claim(conversation_id, "Wait for the current answer to finish, or stop it, before sending another "
                                          "message."):  # fmt: skip
            user, assistant, messages, first_title = await asyncio.to_thread(store_exchange)
            self._start(assistant, messages, account.user_id, max_tokens)
        if conversation_id is None:
            self.notify(user.conversation_id, "created")
        elif user.parent_id is None and first_title is not None:
            self.notify(user.conversation_id, "updated")
        self.notify(user.conversation_id, "message")
        return user, assistant

    async def regenerate(
        self, message_id: int, *, temperature: float | None = None, account: Account = LOCAL
    ) -> Message:
        """Generate a new variant of an assistant message; the old ones are kept.

        Args:
            message_id: any variant of the assistant turn.
            temperature: the new variant's temperature (default: the conversation's).
            account: who asks; it counts as one of their messages (``Limits``).

        Returns:
            The new, selected, ``streaming`` variant.

        Raises:
            ConversationBusy, NotFound (also another user's message), ValueError (not an assistant message, or
            temperature out of 0..2), ModelNotAllowed, RateLimited.
        """
        if temperature is not None and not 0 <= temperature <= 2:
            raise ValueError("temperature must be between 0 and 2")
        original = await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)
        running = self.running_answers(account)

        def store_variant() -> tuple[Message, list[dict[str, str]]]:
            """In a thread, in one hop: check the account, store the new variant, build the request's messages."""
            conversation = self.store.get_conversation(original.conversation_id)
            answer_model = self.model_for(conversation.model)
            self.check_model(account, answer_model)
            self.limits.admit(account, running)
            variant = self.store.add_variant(
                message_id,
                model=answer_model,
                temperature=conversation.temperature if temperature is None else temperature,
            )
            return variant, self.request_messages(variant, conversation.system_prompt)

        with self._claim(original.conversation_id, "Wait for the current answer to finish, or stop it, before "
                                                   "regenerating."):  # fmt: skip
            variant, messages = await asyncio.to_thread(store_variant)
            self._start(variant, messages, account.user_id)
        self.notify(original.conversation_id, "message")
        return variant

    def select_variant(self, message_id: int, account: Account = LOCAL) -> None:
        """Show this variant of its turn. Raises NotFound (also another user's message)."""
        self.store.get_message(message_id, owner=account.owner)
        message = self.store.select_variant(message_id)
        self.notify(message.conversation_id, "message")

    async def cancel(self, message_id: int, account: Account = LOCAL) -> bool:
        """Stop a running answer: close the upstream stream, store the partial text as ``cancelled``.

        Returns:
            True when the answer was running (it is stored once this returns), False otherwise (also when it is not
            ``account``'s).
        """
        generation = self.live(message_id, account)
        if generation is None or generation.task is None:
            return False
        generation.cancelled_by_user = True
        generation.task.cancel()
        with contextlib.suppress(BaseException):
            await generation.wait()
        return True

    async def cancel_conversation(self, conversation_id: int) -> bool:
        """Stop the answer running in a conversation, if any (see ``cancel``); True when one was running."""
        running = [g.message_id for g in self.generations.values() if g.conversation_id == conversation_id]
        return any([await self.cancel(message_id) for message_id in running])

    async def cancel_user(self, user_id: int) -> int:
        """Stop every running answer of a user (before the user is deleted or disabled); return how many."""
        running = [g.message_id for g in self.generations.values() if g.user_id == user_id]
        return sum([await self.cancel(message_id) for message_id in running])

    def request_messages(self, assistant: Message, system_prompt: str) -> list[dict[str, str]]:
        """The chat completion messages for an answer: the system prompt, then the turns before it.

        The history is the chain of parents of ``assistant`` (the variants that answer was built on),
        oldest first; assistant turns with no text (failed before any delta) are left out.
        """
        by_id = {m.id: m for m in self.store.messages(assistant.conversation_id)}
        chain: list[Message] = []
        parent = by_id.get(assistant.parent_id)
        while parent is not None:
            chain.append(parent)
            parent = by_id.get(parent.parent_id)
        messages = [{"role": Role.system.value, "content": system_prompt}] if system_prompt.strip() else []
        for message in reversed(chain):
            if message.role == Role.assistant and not message.content:
                continue
            messages.append({"role": message.role.value, "content": message.content})
        return messages

    # -- the generation task ---------------------------------------------------------------------

    def _start(
        self, assistant: Message, messages: list[dict[str, str]], user_id: int | None, max_tokens: int | None = None
    ) -> Generation:
        assert assistant.id is not None
        generation = Generation(assistant.id, assistant.conversation_id, user_id)
        self.generations[assistant.id] = generation
        generation.task = asyncio.get_running_loop().create_task(
            self._generate(generation, assistant, messages, max_tokens), name=f"generation-{assistant.id}"
        )
        generation.task.add_done_callback(lambda task: self._task_ended(generation, task))
        if self._checkpointer is None or self._checkpointer.done():
            self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint_loop(), name="checkpoints")
        return generation

    async def _checkpoint_loop(self) -> None:
        """Save the partial text of the growing answers, each at most once per ``checkpoint_interval`` seconds and
        never in its first interval, all due ones in one transaction (one thread hop, one commit, however many
        answers stream). Generation tasks never wait for it; it ends when no answer is left. A late save cannot
        overwrite a final text (``Store.checkpoint_many``).

        Writes per answer: 1 (the exchange) + at most ⌊duration / interval⌋ checkpoints + 1 (the final text).
        """
        saved: dict[int, tuple[float, int]] = {}  # message id -> (monotonic time, size) of the last save or start
        while self.generations:
            await asyncio.sleep(self.checkpoint_interval / 2)
            now = time.monotonic()
            due = []
            for generation in list(self.generations.values()):
                when, size = saved.setdefault(generation.message_id, (now, 0))
                if not generation.done and generation.size != size and now - when >= self.checkpoint_interval:
                    due.append(generation)
            saved = {key: value for key, value in saved.items() if key in self.generations}
            if not due:
                continue
            contents = {generation.message_id: generation.text for generation in due}
            sizes = {generation.message_id: generation.size for generation in due}
            try:
                await asyncio.to_thread(self.store.checkpoint_many, contents)
            except Exception:  # the final write still stores the text; keep streaming
                log.exception("checkpoint of %d answer(s) failed", len(contents))
                continue
            self.checkpoints += 1
            saved.update({key: (now, size) for key, size in sizes.items() if key in self.generations})

    async def _generate(
        self, generation: Generation, assistant: Message, messages: list[dict[str, str]], max_tokens: int | None
    ) -> None:
        model, temperature = assistant.model or self.default_model, assistant.temperature or 0.0
        stream: ChatStream | None = None
        status, error = Status.complete, None
        error_status = error_code = None
        ttft = duration = None
        started = time.monotonic()
        try:
            stream = await self.provider.stream_chat_completion(
                messages, model=model, temperature=temperature, on_wait=generation.set_phase, max_tokens=max_tokens
            )
            started = time.monotonic()
            generation.set_phase(Phase.thinking)
            async for chunk in stream:  # the stream keeps the finish_reason and the usage itself
                if chunk.delta:
                    if ttft is None:
                        ttft = time.monotonic() - started
                        generation.set_phase(Phase.streaming)
                    generation.append(clean_text(chunk.delta))
        except asyncio.CancelledError:
            if generation.cancelled_by_user:
                status = Status.cancelled
            else:
                status, error = Status.interrupted, "Parley was stopped while this answer was streaming."
        except ProviderError as failure:
            status, error, error_status, error_code = Status.error, failure.reason, failure.status, failure.code
            log.warning("answer %s failed: %s", generation.message_id, failure.reason, exc_info=failure)
        except Exception as failure:  # a bug of ours: keep the text, say so, keep serving
            status, error = Status.error, f"Internal error: {type(failure).__name__}: {failure}"[:300]
            log.exception("answer %s failed unexpectedly", generation.message_id)
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()
            duration = time.monotonic() - started if stream is not None else None
        await self._store_result(
            generation,
            status=status,
            error=error,
            error_status=error_status,
            error_code=error_code,
            finish_reason=stream.finish_reason if stream is not None else None,
            prompt_tokens=stream.usage.prompt_tokens if stream is not None and stream.usage is not None else None,
            completion_tokens=stream.completion_tokens if stream is not None else None,
            ttft=ttft,
            duration=duration,
            omitted_messages=(stream.omitted or None) if stream is not None else None,
        )

    def _task_ended(self, generation: Generation, task: asyncio.Task[None]) -> None:
        """Safety net: a task cancelled before its first step never runs ``_generate``; store it anyway."""
        if generation.done or generation.message_id not in self.generations:
            return
        status = Status.cancelled if generation.cancelled_by_user else Status.interrupted
        error = None if generation.cancelled_by_user else "Parley was stopped while this answer was streaming."
        asyncio.get_running_loop().create_task(self._store_result(generation, status=status, error=error))

    async def _store_result(self, generation: Generation, **fields: object) -> None:
        """Store the answer's final text and fields, end the generation and tell the watchers."""
        if generation.message_id not in self.generations:
            return  # already stored

        def store() -> Message:
            message = self.store.finish_message(generation.message_id, content=generation.text, **fields)
            if generation.user_id is not None and fields.get("completion_tokens") is not None:
                self.store.add_usage(generation.user_id, fields.get("prompt_tokens") or 0,  # type: ignore[arg-type]
                                     fields["completion_tokens"])  # type: ignore[arg-type]  # fmt: skip
            return message

        try:
            message = await asyncio.to_thread(store)
        except NotFound:  # the conversation was deleted meanwhile
            message = Message(
                id=generation.message_id, conversation_id=generation.conversation_id, role=Role.assistant,
                content=generation.text, status=fields.get("status"), error=fields.get("error"),
            )  # fmt: skip
        self.generations.pop(generation.message_id, None)
        generation.finish(message)
        self.notify(generation.conversation_id, "finished")
