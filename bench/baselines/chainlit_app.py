"""Benchmark baseline: a Chainlit app written the way Chainlit's docs show.

``@cl.on_message`` creates an empty ``cl.Message``, calls ``stream_token`` per delta and sends it at the end; the
history lives in the user session. Upstream comes from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, the model from
``BENCH_MODEL``. Run from a scratch folder (Chainlit writes ``.chainlit/`` and ``chainlit.md`` into the current
directory): ``chainlit run chainlit_app.py --host 127.0.0.1 --port 8083 --headless``.
"""

import os

import chainlit as cl
from openai import AsyncOpenAI

client = AsyncOpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
MODEL = os.environ.get("BENCH_MODEL", "gpt-4o-mini")


@cl.on_chat_start
def start_chat() -> None:
    """Start each chat with an empty history."""
    cl.user_session.set("messages", [])


@cl.on_message
async def on_message(message: cl.Message) -> None:
    """Stream the answer to ``message`` token by token."""
    messages = cl.user_session.get("messages")
    messages.append({"role": "user", "content": message.content})
    msg = cl.Message(content="")
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            await msg.stream_token(chunk.choices[0].delta.content)
    await msg.send()
    messages.append({"role": "assistant", "content": msg.content})
