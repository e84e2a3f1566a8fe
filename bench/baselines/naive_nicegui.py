"""Benchmark baseline: the naive NiceGUI chat, written the way NiceGUI's chat examples show.

Every delta replaces the whole ``ui.markdown`` content with the text so far, so the browser re-renders the full
answer on each token. Upstream comes from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, the model from ``BENCH_MODEL``.
Run: ``python naive_nicegui.py --port 8081``.
"""

import argparse
import os

from nicegui import ui
from openai import AsyncOpenAI

client = AsyncOpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
MODEL = os.environ.get("BENCH_MODEL", "gpt-4o-mini")


@ui.page("/")
def main() -> None:
    """One chat per page visit: a message list and a text input that sends on Enter."""
    messages: list[dict[str, str]] = []

    async def send() -> None:
        question = text.value
        text.value = ""
        messages.append({"role": "user", "content": question})
        with chat:
            ui.chat_message(question, name="You", sent=True)
            answer = ui.markdown()
        stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        response = ""
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                response += chunk.choices[0].delta.content
                answer.content = response
        messages.append({"role": "assistant", "content": response})

    chat = ui.column().classes("w-full max-w-2xl mx-auto")
    text = ui.input(placeholder="message").props("outlined").classes("w-full max-w-2xl mx-auto")
    text.on("keydown.enter", send)


if __name__ in {"__main__", "__mp_main__"}:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8081)
    ui.run(host="127.0.0.1", port=parser.parse_args().port, reload=False, show=False, title="naive NiceGUI chat")
