"""The page's next answer, on the page before it is asked: its first tokens need no new element and no new socket.

Without it, the first token of an answer waits for a chain of round trips after Enter: NiceGUI's update creating the
question's and the answer's elements, the browser mounting them, the answer's element opening its stream
(``chat/api/stream.py``), the handshake. ``NextAnswer`` keeps one hidden ``StreamingMessage`` at the end of the
conversation whose socket is already open and waiting (``next_answer_path``). When the page's own Send is stored the
view ``bind``s it to the new answer: the browser shows the question and follows the answer over that socket at once,
while NiceGUI builds the message views as always (the Send waits up to ``chat_view.FIRST_CONTENT_WAIT`` for the first
token before building them, so that their work does not delay it). When the answer's own view is built, ``replaced``
gives the element a new token, in the same update: the browser hides it, hands its socket over to the answer's own
element (``streaming_message.js``: no new connection, nothing shown twice) and opens a socket for the answer after.

Where the socket is not open (a Send right after the page loaded, WebSockets blocked, a proxy sending the socket to
another replica), ``bind`` finds nothing and the answer shows as it did without this.
"""

from __future__ import annotations

from ..api.stream import next_answer_path, next_answers
from ..store import Message
from .streaming_message import StreamingMessage


class NextAnswer:
    """The hidden element of the page's next answer and the token of its socket (create it in the message column)."""

    def __init__(self) -> None:
        self.token = next_answers.new_token()
        self.bound: int | None = None  # the answer the element shows now, until its own view is built
        self.body = (
            StreamingMessage(spare=next_answer_path(self.token))
            .classes("w-full", remove="parley-message-body")
            .classes("parley-next-answer")
            .mark("next-answer")
        )

    def bind(self, question: Message, answer: Message) -> bool:
        """Show ``answer`` (to ``question``, the page's own Send, just stored) in the element now, if its socket is
        open.

        Returns:
            True when the page's socket was waiting and now carries the answer; False otherwise (not yet open, lost,
            or already bound): the answer's own view shows it, as without this.
        """
        if self.bound is not None or answer.id is None:
            return False
        if not next_answers.bind(self.token, answer.id, question.content):
            return False
        self.bound = answer.id
        return True

    def replaced(self, message_ids: set[int]) -> None:
        """Views were built for ``message_ids``: if the bound answer is among them, make the element wait for the
        next answer (a new token, sent with the same update that adds the views)."""
        if self.bound is None or self.bound not in message_ids:
            return
        self.bound = None
        self.token = next_answers.new_token()
        self.body.props["spare"] = next_answer_path(self.token)
