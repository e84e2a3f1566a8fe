"""The engine: the one path of every answer, whoever asks for it (a page, ``/api`` or ``/v1``).

``send`` stores a user message (in a new conversation, with the history a request brings, or in an existing one) and
starts its answer; ``regenerate`` starts another variant; ``answer_unstored`` answers messages that are stored nowhere.
Each answer is a ``Generation`` driven by one asyncio task owned by the engine, so it outlives any browser tab; it is
a numbered log of events (``events.py``) that every stream follows (``follow``). A stored answer's partial text is
saved by the ``Checkpointer`` at most once per interval, and its outcome at the end. Cancel closes the upstream stream
(ending token generation upstream) and keeps the partial text, marked ``cancelled``.

Every database call runs in a thread: the event loop serves every stream of the process and never waits for the
database. Views subscribe to the conversations they show (``watch_conversation``, ``watch_conversations``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from ..attachments import FileLimits
from ..provider import ChatStream, Provider, ProviderError
from ..refusals import InvalidRequest, Refusal
from ..store import Attachment, Conversation, Message, NotFound, Role, Status, Store
from ..store import attachments as stored_attachments
from ..tools import Tool
from .attaching import Attachments
from .changes import Change, Kind, Watcher, Watchers
from .checkpoints import Checkpointer
from .events import ContentEvent, Event, Finished, Phase, content_of, is_content, replay
from .generation import Decision, Generation
from .policy import LOCAL, Account, Limits, ModelNotAllowed
from .pricing import PriceTable
from .replicas import Replicas
from .text import DEFAULT_TITLE, clean_text, clean_title, make_title
from .tool_loop import ToolLoop, assistant_messages, close_calls, hand_to_client, refuse_calls, stream_round

log = logging.getLogger(__name__)

#: Most models one message is compared across (``Engine.compare``): columns side by side.
MAX_COMPARED = 4

#: Why an answer was cut short by Parley's own shut-down (stored as its ``error``).
INTERRUPTED = "Parley was stopped while this answer was streaming."


class ConversationBusy(Refusal, RuntimeError):
    """Raised when a conversation is already answering and another answer is asked for."""

    status = 409
    code = "conversation_busy"


class EmptyMessage(Refusal, ValueError):
    """Raised when a message to send is empty or only whitespace."""

    status = 422
    code = "empty_message"


class MessageTooLong(Refusal, ValueError):
    """Raised when a message to send is longer than the configured limit (``max_message_length`` characters)."""

    status = 422
    code = "message_too_long"


#: A chat completion request's messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``, and for an
#: answer with tool calls the assistant's ``tool_calls`` and the ``role: "tool"`` messages (``tool_loop.py``).
Messages = list[dict[str, Any]]


#: An earlier turn of a new conversation: ``(role, content)``, or for an assistant turn with tool calls ``(role,
#: content, events)`` (``Message.events``).
HistoryTurn = tuple[Role, str] | tuple[Role, str, list[dict[str, Any]] | None]


class ToolCallNotWaiting(Refusal, LookupError):
    """Raised when a decision is given for a tool call that is not waiting for one (decided, expired, unknown, or
    another user's)."""

    status = 404
    code = "tool_call_not_waiting"


class Engine:
    """Runs every answer.

    Args:
        store: where conversations and messages are kept.
        provider: the upstream that streams chat completions.
        default_model: the model used when a conversation names none.
        default_temperature: the temperature of new conversations, 0 to 2.
        checkpoint_interval: seconds between two saves of a streaming answer's partial text.
        max_message_length: the longest message ``send`` accepts, in characters.
        limits: per-user limits on messages per minute and concurrent answers (default: none).
        tools: runs the tool calls of answers (``tool_loop.ToolLoop``); None: answers never offer tools.
        prices: what each model's tokens cost (``pricing.PriceTable``; default: OpenAI's models).
        files: what one attached file may be (``attachments.FileLimits``; default: its defaults).
        max_attachments: most files one message may carry.

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
        tools: ToolLoop | None = None,
        prices: PriceTable | None = None,
        files: FileLimits | None = None,
        max_attachments: int = 10,
    ) -> None:
        self.store = store
        self.attachments = Attachments(store, provider, files or FileLimits(), max_attachments,
                                       lambda: self.default_model)  # fmt: skip
        self.tools = tools
        self.prices = prices or PriceTable()
        self.limits = limits or Limits()
        self.max_message_length = max_message_length
        self.provider = provider
        self.default_model = default_model
        self.default_temperature = default_temperature
        self.generations: dict[int, Generation] = {}
        """The stored answers generating now, by message id."""
        self.unstored: set[Generation] = set()
        """The answers stored nowhere that are generating now."""
        self.watchers = Watchers()
        self._claimed: set[int] = set()  # conversations whose new answer is being stored (see ``_claim``)
        self._checkpointer = Checkpointer(store, self.generations, checkpoint_interval)
        self.replicas: Replicas | None = None
        """Set (``replicas.make_replicas``) when Parley runs as one of several replicas on one Redis."""

    @property
    def checkpoint_interval(self) -> float:
        """Seconds between two saves of a streaming answer's partial text."""
        return self._checkpointer.interval

    @property
    def checkpoints(self) -> int:
        """Transactions that saved partial text since start (for benchmarks)."""
        return self._checkpointer.transactions

    @property
    def checkpointed_answers(self) -> int:
        """Answers' partial texts saved since start, summed over the checkpoint transactions (for benchmarks)."""
        return self._checkpointer.saved

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Mark answers left ``streaming`` by an earlier run as ``interrupted``; return how many. Blocking: call it
        once, before serving (no answer can be streaming before this process started it)."""
        if self.replicas is not None:  # other replicas may be generating them: leases say (``Replicas.reap``)
            stored_attachments.delete_unsent(self.store)
            return 0
        count = self.store.interrupt_streaming()
        if count:
            log.warning("marked %d answer(s) from an earlier run as interrupted", count)
        stored_attachments.delete_unsent(self.store)
        return count

    async def shutdown(self) -> None:
        """Stop every running answer, storing each as ``interrupted`` with its partial text."""
        generations = [*self.generations.values(), *self.unstored]
        for generation in generations:
            if generation.task is not None:
                generation.task.cancel()
        for generation in generations:
            with contextlib.suppress(BaseException):
                await generation.wait()
        await self._checkpointer.stop()

    # -- watching --------------------------------------------------------------------------------------------------

    def watch_conversation(self, conversation_id: int, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher`` on every ``Change`` of one conversation; returns the function that stops it."""
        return self.watchers.conversation(conversation_id, watcher)

    def watch_conversations(self, account: Account, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher`` on every ``Change`` of ``account``'s conversations (personal mode: of all of them);
        returns the function that stops it."""
        return self.watchers.owner(account.owner, watcher)

    def notify(self, conversation_id: int, kind: Kind, user_id: int | None, title: str | None = None) -> None:
        """Tell the watchers of this conversation and of its owner that it changed (on every replica)."""
        change = Change(conversation_id, kind, user_id, title)
        self.watchers.notify(change)
        if self.replicas is not None:
            self.replicas.publish_change(change)

    # -- conversations ---------------------------------------------------------------------------------------------

    async def create_conversation(self, account: Account = LOCAL, **fields: Any) -> int:
        """Create a conversation of ``account`` with the default temperature; return its id. The title is cleaned as
        in ``update_conversation`` (whitespace collapsed, at most 200 characters, blank: "New chat").

        Raises:
            ModelNotAllowed: ``model`` is one the account may not use.
        """
        fields.setdefault("temperature", self.default_temperature)
        fields["user_id"] = account.user_id
        if fields.get("model"):
            self.check_model(account, self.model_for(fields["model"]))
        fields["title"] = clean_title(fields.get("title", DEFAULT_TITLE))
        conversation = await asyncio.to_thread(self.store.create_conversation, **fields)
        assert conversation.id is not None
        self.notify(conversation.id, "created", account.user_id, conversation.title)
        return conversation.id

    async def update_conversation(self, conversation_id: int, account: Account = LOCAL, **fields: Any) -> Conversation:
        """Change a conversation's title, system prompt, model or temperature; return it as stored.

        Raises:
            NotFound: no such conversation (or not ``account``'s).
            InvalidRequest: a temperature out of 0..2.
            ModelNotAllowed: a model the account may not use.
        """
        if "title" in fields:
            fields["title"] = clean_title(fields["title"])
        if "temperature" in fields and not 0 <= float(fields["temperature"]) <= 2:
            raise InvalidRequest("temperature must be between 0 and 2", field="temperature")
        if "model" in fields:
            fields["model"] = (str(fields["model"] or "").strip()) or None
            self.check_model(account, self.model_for(fields["model"]))

        def update() -> Conversation:
            self.store.get_conversation(conversation_id, owner=account.owner)
            self.store.update_conversation(conversation_id, **fields)
            return self.store.get_conversation(conversation_id)

        conversation = await asyncio.to_thread(update)
        self.notify(conversation_id, "updated", conversation.user_id, conversation.title)
        return conversation

    async def delete_conversation(self, conversation_id: int, account: Account = LOCAL) -> None:
        """Stop its running answer, if any, then delete the conversation. Raises NotFound."""
        conversation = await asyncio.to_thread(self.store.get_conversation, conversation_id, owner=account.owner)
        await self.cancel_conversation(conversation_id)
        await asyncio.to_thread(self.store.delete_conversation, conversation_id)
        self.notify(conversation_id, "deleted", conversation.user_id)

    async def select_variant(self, message_id: int, account: Account = LOCAL) -> None:
        """Show this variant of its turn. Raises NotFound (also another user's message)."""

        def select() -> Message:
            self.store.get_message(message_id, owner=account.owner)
            return self.store.select_variant(message_id)

        message = await asyncio.to_thread(select)
        self.notify(message.conversation_id, "message", account.user_id)

    async def edit(
        self, message_id: int, content: str, *, account: Account = LOCAL, temperature: float | None = None
    ) -> tuple[Message, Message]:
        """Edit a user message (any, also an earlier one): the edit becomes a new, shown sibling of the original, whose
        branch and everything under it are kept, and its answer starts.

        Returns:
            ``(user_message, assistant_message)``, the assistant message ``streaming``.

        Raises:
            EmptyMessage, MessageTooLong, ConversationBusy, NotFound (also another user's message), InvalidRequest
            (not a user message), ModelNotAllowed, RateLimited.
        """
        content = self._check_message(content)
        original = await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)
        if original.role != Role.user:
            raise InvalidRequest("only a user message can be edited; regenerate an answer instead", field="message_id")
        running = self.running_answers(account)

        def store_edit() -> tuple[Message, Message, Messages, Conversation]:
            conversation = self.store.get_conversation(original.conversation_id)
            answer_model = self.model_for(conversation.model)
            self.check_model(account, answer_model)
            self.limits.admit(account, running)
            user, assistant = self.store.add_edit(
                message_id, content, model=answer_model,
                temperature=conversation.temperature if temperature is None else temperature,
            )  # fmt: skip
            return user, assistant, self.request_messages(assistant, conversation.system_prompt), conversation

        with self._claim(original.conversation_id, "Wait for the current answer to finish, or stop it, before "
                                                   "editing."):  # fmt: skip
            user, assistant, messages, conversation = await asyncio.to_thread(store_edit)
            self._start(assistant, messages, account, None, conversation.tools)
        self.notify(original.conversation_id, "message", conversation.user_id)
        return user, assistant

    async def delete_message(self, message_id: int, account: Account = LOCAL) -> int:
        """Delete a message and everything under it (its answers, later turns, their branches); returns how many
        messages went. The shown path then follows another sibling, if any.

        Raises:
            NotFound (also another user's message), ConversationBusy (an answer is being generated there).
        """
        message = await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)
        with self._claim(message.conversation_id, "Wait for the current answer to finish, or stop it, before "
                                                  "deleting a message."):  # fmt: skip
            count = await asyncio.to_thread(self.store.delete_subtree, message_id)
        self.notify(message.conversation_id, "message", account.user_id)
        return count

    async def fork(self, message_id: int, account: Account = LOCAL) -> int:
        """ "Continue in a new conversation": copy the shown path up to and including ``message_id`` into a new
        conversation of ``account`` (title, system prompt, model, temperature and tools kept); returns its id.

        Raises:
            NotFound (also another user's message).
        """

        def fork() -> Conversation:
            message = self.store.get_message(message_id, owner=account.owner)
            original = self.store.get_conversation(message.conversation_id)
            return self.store.fork(message_id, user_id=account.user_id, title=clean_title(original.title))

        conversation = await asyncio.to_thread(fork)
        assert conversation.id is not None
        self.notify(conversation.id, "created", account.user_id, conversation.title)
        return conversation.id

    async def show_message(self, message_id: int, account: Account = LOCAL) -> Message:
        """Show the branch that holds ``message_id`` (it and its ancestors become the shown siblings; the branches
        below keep what they showed); returns the message. Raises NotFound (also another user's message)."""

        def select() -> Message:
            self.store.get_message(message_id, owner=account.owner)
            return self.store.select_path_to(message_id)

        message = await asyncio.to_thread(select)
        self.notify(message.conversation_id, "message", account.user_id)
        return message

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

    # -- reading answers -------------------------------------------------------------------------------------------

    def live(self, message_id: int, account: Account = LOCAL) -> Generation | None:
        """The running generation of this message, or None when it is not streaming (or not ``account``'s)."""
        generation = self.generations.get(message_id)
        if generation is None or (account.owner is not None and generation.user_id != account.owner):
            return None
        return generation

    def running_answers(self, account: Account) -> int:
        """How many answers of ``account`` are generating now, stored or not."""
        return sum(1 for g in (*self.generations.values(), *self.unstored) if g.user_id == account.user_id)

    async def follow(self, message_id: int, position: int = 0, account: Account = LOCAL) -> AsyncIterator[Event]:
        """Follow an answer after sequence number ``position`` (``events.py``), live or stored: the one source of every
        stream a view serves (the page's WebSocket, ``/api``'s server-sent events, ``/v1``'s chunks).

        Yields, in order: ``PhaseChanged`` (a live answer with no content yet: loading, queued, thinking), the content
        after ``position`` that exists now, then each later ``PhaseChanged`` and content event as the answer grows,
        ``UsageReported``, and last ``Finished`` with the stored message (``Generation.follow``). A stored (finished)
        answer yields its content after ``position``, ``UsageReported`` and ``Finished`` (``events.replay``).

        Args:
            message_id: the assistant message.
            position: the sequence number the consumer has (for text: characters, Python ``str`` code points);
                beyond the end means nothing but the end.
            account: who follows it.

        Raises:
            NotFound: no such message (or not ``account``'s).
        """
        generation = self.live(message_id, account)
        if generation is not None:
            async for event in generation.follow(position):
                yield event
            return
        message = await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)
        if self.replicas is not None and message.status == Status.streaming:  # another replica generates it
            async for event in self.replicas.follow(message, position):
                yield event
            return
        for event in replay(message, position):
            yield event

    async def wait_for_first_content(self, message_id: int, timeout: float, account: Account = LOCAL) -> None:
        """Wait until the live answer ``message_id`` has its first content (a delta, a step) or has ended, at most
        ``timeout`` seconds; at once for an answer that is not live here or already has content.

        For a view that can show the answer before its own work (``chat/ui/next_answer.py``): that work then does not
        compete on the event loop with the first token's way to the reader (time to first token). Once woken it yields
        the loop once more, so that the streams woken by the same event send it first.
        """
        generation = self.live(message_id, account)
        if generation is None or generation.done or generation.size:
            return
        arrived = asyncio.Event()

        def receive(event: Event) -> None:
            if is_content(event) or isinstance(event, Finished):
                arrived.set()

        _, unsubscribe = generation.subscribe(receive)
        try:
            await asyncio.wait_for(arrived.wait(), timeout)
        except TimeoutError:
            return
        finally:
            unsubscribe()
        await asyncio.sleep(0)

    def generating_elsewhere(self, message: Message) -> bool:
        """True when ``message`` is an answer another replica is generating (streaming, not here)."""
        return self.replicas is not None and message.status == Status.streaming and message.id not in self.generations

    async def wait_for_end(self, message_id: int, account: Account = LOCAL) -> Message:
        """Wait until the answer ``message_id`` has ended, here or on another replica; return it as stored."""
        generation = self.live(message_id, account)
        if generation is not None:
            return await generation.wait()
        async for event in self.follow(message_id, 1 << 62, account):
            if isinstance(event, Finished):
                return event.message
        return await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)

    def model_for(self, conversation_model: str | None) -> str:
        """The model an answer uses: the conversation's, else the default."""
        return conversation_model or self.default_model

    def record_usage(
        self, account: Account, prompt_tokens: int | None, completion_tokens: int | None, cost: float | None = None
    ) -> None:
        """Add an answer's tokens (and its cost in dollars, when known) to ``account``'s daily usage (nothing in
        personal mode). Blocking: call it in a thread."""
        if account.user_id is not None:
            self.store.add_usage(account.user_id, prompt_tokens or 0, completion_tokens or 0, cost=cost or 0.0)

    def check_model(self, account: Account, model: str) -> None:
        """Raise ModelNotAllowed unless ``account`` may use ``model``."""
        if not account.may_use(model):
            raise ModelNotAllowed(f"You may not use the model {model!r}; ask an admin, or choose another model.")

    # -- starting answers ------------------------------------------------------------------------------------------

    async def attach(self, data: bytes, name: str, account: Account = LOCAL) -> Attachment:
        """Read and store a file for ``account``'s next message (``send``'s ``attachments``): an image re-encoded
        without metadata, a document's text extracted (``attachments.files``). A file never sent is deleted a day
        later (``recover``).

        Returns:
            The stored attachment: its ``id`` goes with the message.

        Raises:
            AttachmentRefused, AttachmentTooLarge: the file is of a type Parley does not read, unreadable, or too
                large.
        """
        return await self.attachments.attach(data, name, account)

    async def detach(self, attachment_id: int, account: Account = LOCAL) -> None:
        """Delete an unsent attachment (removed from the composer). Raises NotFound (also once sent)."""
        await asyncio.to_thread(stored_attachments.delete_attachment, self.store, attachment_id, owner=account.owner)

    def _check_message(self, content: str) -> str:
        """``content`` as it is stored (``clean_text``); raises EmptyMessage or MessageTooLong."""
        if not content.strip():
            raise EmptyMessage("Type a message first.", field="content")
        if len(content) > self.max_message_length:
            raise MessageTooLong(
                f"This message is {len(content):,} characters long; the limit is {self.max_message_length:,}. "
                "Shorten it or send it in parts.",
                field="content",
            )
        return clean_text(content)

    def _check_content(self, content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        """A request's last message ``content`` checked as ``_check_message`` checks text: a string, or content parts
        whose text parts together are the message (images alone are not a message)."""
        if isinstance(content, str):
            return self._check_message(content)
        text = "".join(str(part.get("text") or "") for part in content if part.get("type") == "text")
        self._check_message(text)
        return [{**part, "text": clean_text(part["text"])} if part.get("type") == "text" else part
                for part in content]  # fmt: skip

    async def send(
        self,
        conversation_id: int | None,
        content: str,
        *,
        temperature: float | None = None,
        model: str | None = None,
        account: Account = LOCAL,
        max_tokens: int | None = None,
        system_prompt: str = "",
        history: Sequence[HistoryTurn] = (),
        offer_tools: bool = True,
        client_tools: list[dict[str, Any]] | None = None,
        request: Messages | None = None,
        seed: Sequence[ContentEvent] = (),
        continues: bool = False,
        attachments: Sequence[int] = (),
    ) -> tuple[Message, Message]:
        """Store a user message and start generating the answer to it.

        Args:
            conversation_id: the conversation, or None to start a new one with this message: created in the same
                transaction as the message (and ``history``), titled from its first user message, of ``account``,
                with ``model`` and ``temperature`` as its own settings when given, else the defaults.
            content: what the user wrote, kept exactly but for NUL and lone surrogates (see ``clean_text``).
            temperature: this answer's temperature (a new conversation's too); default: the conversation's.
            model: this answer's model (a new conversation's too); default: the conversation's.
            account: who sends it: the owner of a new conversation; another user's conversation is NotFound.
            max_tokens: most tokens of this answer (a ``/v1`` request's ``max_tokens``; ``--max-tokens`` caps it).
            system_prompt: a new conversation's system prompt.
            history: a new conversation's earlier turns, ``(role, content)`` oldest first (a ``/v1`` request's), stored
                before the message as ``complete`` messages.
            offer_tools: offer the conversation's tools to the model (``/v1`` answers offer none of Parley's).
            client_tools: a ``/v1`` client's own tool definitions, offered instead of Parley's: a turn that calls them
                ends the answer, the calls ``sent_to_client`` (see ``answer_unstored``).
            request: the exact messages to send upstream (a ``/v1`` request's, passed through), instead of the
                stored history's.
            seed: the answer's content so far (the rounds of a ``/v1`` client's tool calls after the last user
                message, with the client's results), its log's start.
            continues: (``/v1``) when ``history`` is the start of a stored conversation of ``account``'s with the same
                system prompt (its shown path, or any branch), continue that conversation, branching at the first
                difference, instead of creating one (``Store.continuation``).
            attachments: ids of ``account``'s uploaded, unsent files (``attach``) the message carries: its documents
                are cut to fit the model's context window when they must be (recorded, and said on the page).

        Returns:
            ``(user_message, assistant_message)``; the assistant message is ``streaming``; both carry the
            conversation's id.

        Raises:
            EmptyMessage, MessageTooLong: the message is blank, or longer than ``max_message_length``.
            ConversationBusy: the conversation is already answering.
            NotFound: no such conversation (or not ``account``'s).
            ModelNotAllowed: ``account`` may not use the answer's model.
            RateLimited: ``account`` is over its messages per minute or its concurrent answers (``Limits``); nothing
                is stored then.
            InvalidRequest: ``system_prompt`` or ``history`` for an existing conversation.
            NotFound: an attachment is missing, another user's, or sent already.
            AttachmentTooLarge: more files than allowed, or too many bytes together.
            ImagesNotSupported: the message (or ``request``) has images and the answer's model takes none.
        """
        user, answers = await self._send(
            conversation_id, content, [model], temperature=temperature, account=account, max_tokens=max_tokens,
            system_prompt=system_prompt, history=history, offer_tools=offer_tools, client_tools=client_tools,
            request=request, seed=seed, continues=continues, attachments=attachments,
        )  # fmt: skip
        return user, answers[0]

    async def compare(
        self,
        conversation_id: int | None,
        content: str,
        models: Sequence[str],
        *,
        temperature: float | None = None,
        account: Account = LOCAL,
        attachments: Sequence[int] = (),
    ) -> tuple[Message, list[Message]]:
        """Send one message to several models at once, side by side: one answer per model, siblings marked
        ``comparing`` (the first one shown) until one is picked (``pick``); each counts as one of ``account``'s
        messages and running answers, and each model must be allowed.

        Args:
            conversation_id, content, temperature, account, attachments: as ``send``'s.
            models: 2 to ``MAX_COMPARED`` model ids, in the order of the columns.

        Returns:
            ``(user_message, answers)``, the answers in the order of ``models``, each ``streaming``.

        Raises:
            InvalidRequest: fewer than 2 or more than ``MAX_COMPARED`` models; and whatever ``send`` raises.
        """
        if not 2 <= len(models) <= MAX_COMPARED or not all(isinstance(m, str) and m.strip() for m in models):
            raise InvalidRequest(f"Compare 2 to {MAX_COMPARED} models.", field="models")
        return await self._send(conversation_id, content, [m.strip() for m in models], temperature=temperature,
                                account=account, attachments=attachments)  # fmt: skip

    async def pick(self, message_id: int, account: Account = LOCAL) -> Message:
        """Keep one answer of a side-by-side comparison: the conversation continues from it, the others stay as its
        variants. Returns it. Raises NotFound (also another user's), InvalidRequest (not an answer)."""
        message = await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)
        if message.role != Role.assistant:
            raise InvalidRequest("Only an answer can be picked.", field="message_id")
        picked = await asyncio.to_thread(self.store.pick, message_id)
        self.notify(message.conversation_id, "message", account.user_id)
        return picked

    async def _send(
        self,
        conversation_id: int | None,
        content: str,
        models: Sequence[str | None],
        *,
        temperature: float | None = None,
        account: Account = LOCAL,
        max_tokens: int | None = None,
        system_prompt: str = "",
        history: Sequence[HistoryTurn] = (),
        offer_tools: bool = True,
        client_tools: list[dict[str, Any]] | None = None,
        request: Messages | None = None,
        seed: Sequence[ContentEvent] = (),
        continues: bool = False,
        attachments: Sequence[int] = (),
    ) -> tuple[Message, list[Message]]:
        """``send`` to one model, or ``compare`` several (``models``: the first None for the conversation's)."""
        content = self._check_message(content)
        if conversation_id is not None and (system_prompt or history) and not continues:
            raise InvalidRequest("a system prompt and a history can only start a new conversation")
        history = [(role, clean_text(text), *events) for role, text, *events in history]
        running = self.running_answers(account)
        after = None
        if conversation_id is None and continues and history:
            turns = [(turn[0], turn[1]) for turn in history]
            found = await asyncio.to_thread(self.store.continuation, account.owner, clean_text(system_prompt), turns)
            if found is not None and not self.busy(found[0]):
                conversation_id, after, matched = found
                history, system_prompt = history[matched:], ""

        tool_definitions = await self._tools_for_fitting(conversation_id, models[0], account, offer_tools,
                                                         client_tools) if attachments else None  # fmt: skip

        def store_exchange() -> tuple[Message, list[Message], list[Messages], Conversation, str | None]:
            """In a thread, in one hop: read the conversation, check the account, store the exchange, build the
            request's messages."""
            if conversation_id is None:
                first_user = next((turn[1] for turn in history if turn[0] == Role.user), content)
                conversation = Conversation(
                    title=make_title(first_user),
                    system_prompt=clean_text(system_prompt),
                    model=models[0] or None,
                    temperature=self.default_temperature if temperature is None else temperature,
                    user_id=account.user_id,
                )
            else:
                conversation = self.store.get_conversation(conversation_id, owner=account.owner)
            answer_models = [model or self.model_for(conversation.model) for model in models]
            files: list[Attachment] = []
            for answer_model in answer_models:
                self.check_model(account, answer_model)
                files = self.attachments.check(attachments, answer_model, account) if attachments else []
                if request is not None:
                    self.attachments.check_request(request, answer_model)
            busy = running
            if self.replicas is not None and account.user_id is not None:  # the user's answers on every replica
                busy = max(running, self.store.count_streaming(account.user_id))
            self.limits.admit(account, busy, len(answer_models))
            if files:  # cut to the smallest window of the models, so that every column gets the same files
                narrowest = min(answer_models, key=lambda m: self.provider.window_for(m) or float("inf"))
                self.attachments.fit_documents(files, narrowest, content, conversation.system_prompt,
                                               tool_definitions)  # fmt: skip
            first_title = make_title(content) if conversation.title == DEFAULT_TITLE else None  # the first message
            user, answers = self.store.add_comparison(
                conversation_id,
                content,
                answer_models,
                temperature=conversation.temperature if temperature is None else temperature,
                first_title=first_title,
                new_conversation=conversation if conversation_id is None else None,
                history=history,
                after=after,
                attachments=attachments,
                owner=account.owner,
            )
            requests = [
                request if request is not None else self.request_messages(answer, conversation.system_prompt)
                for answer in answers
            ]
            return user, answers, requests, conversation, first_title

        with self._claim(conversation_id, "Wait for the current answer to finish, or stop it, before sending another "
                                          "message."):  # fmt: skip
            user, answers, requests, conversation, first_title = await asyncio.to_thread(store_exchange)
            enabled = conversation.tools if offer_tools and not client_tools else []
            for answer, messages in zip(answers, requests, strict=True):
                self._start(answer, messages, account, max_tokens, enabled, client_tools, seed)
        await asyncio.sleep(0)  # the generations send their requests before the watchers' work (time to first token)
        owner = conversation.user_id
        if conversation_id is None:
            self.notify(user.conversation_id, "created", owner, conversation.title)
        elif user.parent_id is None and first_title is not None:
            self.notify(user.conversation_id, "updated", owner, first_title)
        self.notify(user.conversation_id, "message", owner)
        return user, answers

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
            ConversationBusy, NotFound (also another user's message), InvalidRequest (not an assistant message, or a
            temperature out of 0..2), ModelNotAllowed, RateLimited.
        """
        if temperature is not None and not 0 <= temperature <= 2:
            raise InvalidRequest("temperature must be between 0 and 2", field="temperature")
        original = await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)
        running = self.running_answers(account)

        def store_variant() -> tuple[Message, Messages, list[str] | None]:
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
            return variant, self.request_messages(variant, conversation.system_prompt), conversation.tools

        with self._claim(original.conversation_id, "Wait for the current answer to finish, or stop it, before "
                                                   "regenerating."):  # fmt: skip
            variant, messages, enabled = await asyncio.to_thread(store_variant)
            self._start(variant, messages, account, None, enabled)
        self.notify(original.conversation_id, "message", account.user_id)
        return variant

    async def answer_unstored(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        temperature: float | None = None,
        account: Account = LOCAL,
        max_tokens: int | None = None,
        client_tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        """Start answering ``messages`` without storing anything (``/v1`` with ``store: false``): the same generation
        as a stored answer's, followed with ``Generation.follow`` and stopped with ``cancel_unstored``. It counts
        among ``account``'s running answers and messages (``Limits``), and a complete answer's tokens in its usage.

        Args:
            messages: the request's messages, the last one the user's (checked as ``send`` checks a message).
            model: the model (default: the default model).
            temperature: default: the default temperature.
            account: who asks.
            max_tokens: most tokens of the answer (``--max-tokens`` caps it).
            client_tools: the request's own tool definitions (a ``/v1`` client's, OpenAI's shape): offered to the
                model as they are; a turn that calls them ends the answer (``finish_reason`` ``tool_calls``) with the
                calls in its log, for the client to run. Parley's own tools are never offered here.

        Raises:
            EmptyMessage, MessageTooLong, ModelNotAllowed, RateLimited.
        """
        last = messages[-1]
        if last.get("role") != "tool":  # a client's tool results end a request that goes on with its tools
            messages = [*messages[:-1], {**last, "content": self._check_content(last.get("content") or "")}]
        answer_model = model or self.default_model
        self.check_model(account, answer_model)
        self.attachments.check_request(messages, answer_model)
        self.limits.admit(account, self.running_answers(account))
        generation = Generation(
            None, None, account.user_id, model=answer_model,
            temperature=self.default_temperature if temperature is None else temperature,
        )  # fmt: skip
        self.unstored.add(generation)
        self._run(generation, messages, max_tokens, account, [], client_tools)
        return generation

    # -- stopping answers ------------------------------------------------------------------------------------------

    async def cancel(self, message_id: int, account: Account = LOCAL) -> bool:
        """Stop a running answer: close the upstream stream, store the partial text as ``cancelled``.

        Returns:
            True when the answer was running (it is stored once this returns), False otherwise (also when it is not
            ``account``'s).
        """
        generation = self.live(message_id, account)
        if generation is not None:
            return await self._stop(generation)
        if self.replicas is None:
            return False
        try:
            message = await asyncio.to_thread(self.store.get_message, message_id, owner=account.owner)
        except NotFound:
            return False
        return await self.replicas.cancel(message)

    async def cancel_unstored(self, generation: Generation) -> bool:
        """Stop an answer stored nowhere (``answer_unstored``); True when it was running."""
        return generation in self.unstored and await self._stop(generation)

    async def _stop(self, generation: Generation) -> bool:
        if generation.task is None:
            return False
        generation.cancelled_by_user = True
        generation.task.cancel()
        with contextlib.suppress(BaseException):
            await generation.wait()
        return True

    async def cancel_conversation(self, conversation_id: int) -> bool:
        """Stop the answer running in a conversation, if any (see ``cancel``); True when one was running."""
        running = [g.message_id for g in self.generations.values() if g.conversation_id == conversation_id]
        if self.replicas is not None:  # and those other replicas generate
            streaming = await asyncio.to_thread(self.store.streaming_answers)
            running += [i for i, c, _ in streaming if c == conversation_id and i not in running]
        return any([await self.cancel(message_id) for message_id in running if message_id is not None])

    async def cancel_user(self, user_id: int) -> int:
        """Stop every running answer of a user, stored or not (before the user is deleted or disabled); return how
        many."""
        running = [g for g in (*self.generations.values(), *self.unstored) if g.user_id == user_id]
        return sum([await self._stop(generation) for generation in running])

    # -- the generation task ---------------------------------------------------------------------------------------

    def request_messages(self, assistant: Message, system_prompt: str) -> Messages:
        """The chat completion messages for an answer: the system prompt, then the turns before it. Blocking: call it
        in a thread.

        The history is the chain of parents of ``assistant`` (the variants that answer was built on), oldest first;
        assistant turns with no text and no tool calls (failed before any delta) are left out. An answer with tool
        calls stands as its rounds: the assistant's ``tool_calls``, the ``role: "tool"`` results, its final text
        (``tool_loop.assistant_messages``); its reasoning is never sent back. A user message with attachments has its
        documents before its text and its images as parts (``attaching.Attachments.contents``).
        """
        by_id = {m.id: m for m in self.store.messages(assistant.conversation_id)}
        chain: list[Message] = []
        parent = by_id.get(assistant.parent_id)
        while parent is not None:
            chain.append(parent)
            parent = by_id.get(parent.parent_id)
        messages: Messages = [{"role": Role.system.value, "content": system_prompt}] if system_prompt.strip() else []
        users = {m.id: m.content for m in chain if m.role == Role.user and m.id is not None}
        contents = self.attachments.contents(users, assistant.model or self.default_model) if users else {}
        for message in reversed(chain):
            if message.role == Role.assistant and message.events:
                messages.extend(assistant_messages(content_of(message), final=True))
                continue
            if message.role == Role.assistant and not message.content:
                continue
            messages.append({"role": message.role.value, "content": contents.get(message.id, message.content)})
        return messages

    def _start(
        self,
        assistant: Message,
        messages: Messages,
        account: Account,
        max_tokens: int | None = None,
        enabled: list[str] | None = None,
        client_tools: list[dict[str, Any]] | None = None,
        seed: Sequence[ContentEvent] = (),
    ) -> None:
        """Start generating the stored answer ``assistant`` (``enabled``: the conversation's tools, None: all;
        ``client_tools``, ``seed``: see ``send``)."""
        assert assistant.id is not None
        generation = Generation(
            assistant.id, assistant.conversation_id, account.user_id, model=assistant.model,
            temperature=assistant.temperature,
        )  # fmt: skip
        for event in seed:
            generation.add(event)
        self.generations[assistant.id] = generation
        if self.replicas is not None:
            self.replicas.started(generation)
        self._run(generation, messages, max_tokens, account, enabled, client_tools)
        self._checkpointer.start()

    def _run(
        self,
        generation: Generation,
        messages: Messages,
        max_tokens: int | None,
        account: Account = LOCAL,
        enabled: list[str] | None = None,
        client_tools: list[dict[str, Any]] | None = None,
    ) -> None:
        name = f"generation-{generation.message_id}" if generation.stored else "generation-not-stored"
        generation.task = asyncio.get_running_loop().create_task(
            self._generate(generation, messages, max_tokens, account, enabled, client_tools), name=name
        )
        generation.task.add_done_callback(lambda task: self._task_ended(generation))

    # -- tools -----------------------------------------------------------------------------------------------------

    def tools_off_reason(self, model: str | None = None) -> str | None:
        """Why answers of ``model`` (default: the default model) offer no tools, or None when they do."""
        model = self.model_for(model)
        if self.tools is None or self.tools.toolbox is None:
            return "Tools are off (--no-tools)."
        if not self.provider.tools_supported:
            return "The built-in model cannot call tools; connect an upstream model to use them."
        if not self.provider.takes_tools(model):
            return f"Tools are off for {model}: its server does not take them."
        return None

    async def available_tools(self, account: Account = LOCAL) -> list[Tool]:
        """The tools ``account`` may turn on in a conversation (empty without tools). A failing MCP server's tools are
        missing; ``tools.toolbox.problems`` says why."""
        return await self.tools.available(account) if self.tools is not None else []

    async def _tools_for_fitting(
        self, conversation_id: int | None, model: str | None, account: Account, offer_tools: bool,
        client_tools: list[dict[str, Any]] | None,
    ) -> list[dict[str, Any]] | None:  # fmt: skip
        """The tool definitions an answer in ``conversation_id`` will carry, so that documents cut to fit leave room
        for them (a new conversation: every tool)."""
        if client_tools:
            return client_tools
        if not offer_tools:
            return None
        conversation = (
            await asyncio.to_thread(self.store.get_conversation, conversation_id, owner=account.owner)
            if conversation_id is not None
            else None
        )
        answer_model = model or self.model_for(conversation.model if conversation else None)
        offered = await self._offered_tools(account, conversation.tools if conversation else None, answer_model)
        return [tool.openai_tool() for tool in offered] or None

    async def _offered_tools(self, account: Account, enabled: list[str] | None, model: str) -> list[Tool]:
        if self.tools is None or enabled == [] or self.tools_off_reason(model) is not None:
            return []
        try:
            return await self.tools.offered(account, enabled)
        except Exception:  # a broken toolbox must not stop the answer: it goes on without tools
            log.exception("listing the tools failed; answering without them")
            return []

    async def decide(self, call_id: str, approve: bool, *, always: bool = False, account: Account = LOCAL) -> None:
        """Approve or deny a tool call waiting for its owner (``always``: approve, and always allow this tool as it is
        now, for this account).

        Raises:
            ToolCallNotWaiting: no call of that id of ``account``'s answers is waiting (decided, expired, unknown).
        """
        for generation in (*self.generations.values(), *self.unstored):
            if call_id in generation.pending and (account.owner is None or generation.user_id == account.owner):
                if generation.decide(call_id, Decision(approve, always and approve)):
                    return
        if self.replicas is not None and await self.replicas.decide(call_id, approve, always and approve,
                                                                    account.owner):  # fmt: skip
            return
        raise ToolCallNotWaiting(f"Tool call {call_id!r} not found: no call of that id is waiting for your decision.")

    # -- the generation task ---------------------------------------------------------------------------------------

    async def _generate(
        self,
        generation: Generation,
        messages: Messages,
        max_tokens: int | None,
        account: Account = LOCAL,
        enabled: list[str] | None = None,
        client_tools: list[dict[str, Any]] | None = None,
    ) -> None:
        """Stream the answer into ``generation`` (round after round while the model calls tools), record how it
        ended, then store it (``_end``)."""
        model, temperature = generation.model or self.default_model, generation.temperature or 0.0
        stream: ChatStream | None = None
        started = time.monotonic()
        prompt_tokens = completion_tokens = 0
        counted = False
        try:
            offered = {tool.name: tool for tool in await self._offered_tools(account, enabled, model)}
            definitions = client_tools or [tool.openai_tool() for tool in offered.values()] or None
            calls_made = 0
            for step in range(1, (self.tools.limits.max_steps if self.tools else 1) + 2):
                request = [*messages, *assistant_messages(generation.content, final=False)] if step > 1 else messages
                stream = await self.provider.stream_chat_completion(
                    request, model=model, temperature=temperature, on_wait=generation.set_phase,
                    max_tokens=max_tokens, tools=definitions,
                )  # fmt: skip
                if step == 1:
                    started = time.monotonic()
                generation.set_phase(Phase.thinking)
                await stream_round(generation, stream, started, offered, client_tools)
                await stream.aclose()
                if stream.usage is not None or stream.completion_tokens is not None:
                    counted = True
                    prompt_tokens += (stream.usage.prompt_tokens or 0) if stream.usage else 0
                    completion_tokens += stream.completion_tokens or 0
                if stream.usage is None:
                    generation.unmetered.append(request)
                generation.finish_reason = stream.finish_reason
                generation.omitted_messages = stream.omitted or None
                if stream.tools_refused and definitions:
                    generation.notice(f"Tools are off for {model}: its server does not take them.")
                calls = stream.tool_calls
                stream = None
                if not calls or client_tools:
                    if calls:
                        hand_to_client(generation, calls)
                    break
                if self.tools is None or not offered:  # calls of tools nobody offered (a confused model)
                    refuse_calls(generation, calls, "No tools were offered to this model.")
                    break
                limits = self.tools.limits
                if step > limits.max_steps or calls_made + len(calls) > limits.max_calls:
                    reason = (f"The answer stopped after {limits.max_steps} rounds of tool calls (--max-tool-steps)."
                              if step > limits.max_steps else
                              f"The answer stopped: it asked for more than {limits.max_calls} tool calls "
                              "(--max-tool-calls).")  # fmt: skip
                    refuse_calls(generation, calls, reason)
                    generation.fail(Status.error, reason, code="tool_limit")
                    break
                calls_made += len(calls)
                await self.tools.run_round(generation, calls, offered, account)
        except asyncio.CancelledError:
            if generation.cancelled_by_user:
                generation.fail(Status.cancelled, None)
            else:
                generation.fail(Status.interrupted, INTERRUPTED)
        except ProviderError as failure:
            generation.fail(Status.error, failure.reason, error_status=failure.status, code=failure.code)
            log.warning("%s failed: %s", generation, failure.reason, exc_info=failure)
        except Exception as failure:  # a bug of ours: keep the text, say so, keep serving
            generation.fail(Status.error, f"Internal error: {type(failure).__name__}: {failure}"[:300])
            log.exception("%s failed unexpectedly", generation)
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()
                generation.finish_reason = stream.finish_reason
                generation.omitted_messages = stream.omitted or None
                if stream.usage is not None or stream.completion_tokens is not None:
                    counted = True
                    prompt_tokens += (stream.usage.prompt_tokens or 0) if stream.usage else 0
                    completion_tokens += stream.completion_tokens or 0
                if stream.usage is None:
                    generation.unmetered.append(request)
            generation.duration = time.monotonic() - started
            if counted:
                generation.prompt_tokens = prompt_tokens or None
                generation.completion_tokens = completion_tokens or None
            close_calls(generation)
        await self._end(generation)

    def _price(self, generation: Generation) -> None:
        """Set the answer's cost from its usage and the price table; where the upstream sent no usage, count the
        tokens with the model's counter and mark the cost an estimate. Blocking (a tokenizer): call it in a thread."""
        model = generation.model or self.default_model
        if self.prices.price(model) is None or generation.completion_tokens is None:
            return
        prompt = generation.prompt_tokens or 0
        if generation.unmetered:
            counter = self.provider.counters.get(model)
            try:
                prompt += sum(counter.count(request) for request in generation.unmetered)
            except Exception:  # a tokenizer that fails must not lose the answer
                log.exception("counting the prompt tokens of %s failed", generation)
                return
        generation.cost = self.prices.cost(model, prompt, generation.completion_tokens)
        generation.cost_estimated = bool(generation.unmetered)

    def _task_ended(self, generation: Generation) -> None:
        """Safety net: a task cancelled before its first step never runs ``_generate``; end the answer anyway."""
        if generation.done or (generation not in self.unstored and generation.message_id not in self.generations):
            return
        if generation.cancelled_by_user:
            generation.fail(Status.cancelled, None)
        else:
            generation.fail(Status.interrupted, INTERRUPTED)
        asyncio.get_running_loop().create_task(self._end(generation))

    async def _end(self, generation: Generation) -> None:
        """Store the answer's outcome (or, stored nowhere, count its usage), end the generation and tell the
        watchers."""
        if generation.done:
            return
        user_id = generation.user_id

        def store() -> Message:
            self._price(generation)
            fields = generation.fields()
            message = generation.unstored_message()
            if generation.message_id is not None:
                message = self.store.finish_message(generation.message_id, **fields)
            if generation.completion_tokens is not None:
                self.record_usage(Account(user_id), generation.prompt_tokens, generation.completion_tokens,
                                  generation.cost)  # fmt: skip
            return message

        try:
            message = await asyncio.to_thread(store)
        except NotFound:  # the conversation was deleted meanwhile
            message = generation.unstored_message()
        except Exception:  # the database failed: the followers still get the end (a restart marks it interrupted)
            log.exception("%s could not be stored", generation)
            message = generation.unstored_message()
        if generation.message_id is not None:
            self.generations.pop(generation.message_id, None)
        self.unstored.discard(generation)
        generation.finish(message)
        if generation.conversation_id is not None:
            self.notify(generation.conversation_id, "finished", user_id)
