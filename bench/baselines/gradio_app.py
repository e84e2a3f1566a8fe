"""Benchmark baseline: a Gradio ``gr.ChatInterface`` written the way Gradio's docs show.

The chat function is an async generator that yields the accumulated answer on every delta; Gradio sends each yield
to the browser. Upstream comes from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, the model from ``BENCH_MODEL``.
Run: ``GRADIO_ANALYTICS_ENABLED=False python gradio_app.py --port 8082``.
"""

import argparse
import os

import gradio as gr
from openai import AsyncOpenAI

client = AsyncOpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
MODEL = os.environ.get("BENCH_MODEL", "gpt-4o-mini")


async def predict(message, history):
    """Stream the answer to ``message`` given the OpenAI-style ``history``, yielding the text so far."""
    messages = [{"role": m["role"], "content": m["content"]} for m in history]
    messages.append({"role": "user", "content": message})
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    response = ""
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            response += chunk.choices[0].delta.content
            yield response


demo = gr.ChatInterface(predict, title="Gradio chat")

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8082)
    demo.launch(server_name="127.0.0.1", server_port=parser.parse_args().port, share=False)
