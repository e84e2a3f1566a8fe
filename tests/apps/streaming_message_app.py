"""A tiny NiceGUI app for tests/test_streaming_message_browser.py.

Run as ``python tests/apps/streaming_message_app.py PORT``. The page ``/`` shows one live message
(``data-testid=streamed``). Each live message follows a real ``Generation`` (the engine's class) through the real
per-answer stream (``serve_stream``) at ``/stream/{name}``; the JSON routes below feed those generations.
"""

import asyncio
import sys

from fastapi import WebSocket
from nicegui import app, ui
from pydantic import BaseModel

from chat.api import serve_stream
from chat.engine import Generation
from chat.store import Message, Role, Status
from chat.ui.streaming_message import StreamingMessage

messages: dict[str, StreamingMessage] = {}
generations: dict[str, Generation] = {}
sockets: dict[str, list[WebSocket]] = {}
containers: list[ui.column] = []


class Command(BaseModel):
    """What a test asks of the message called ``name``."""

    name: str
    text: str = ""
    deltas: list[str] = []
    streaming: bool = False
    phase: str = ""
    classes: str = ""


def live_message(name: str, text: str = "", phase: str = "") -> StreamingMessage:
    """A message following a new generation called ``name`` that already has ``text``."""
    generation = Generation(len(generations) + 1, 0)
    if phase:
        generation.set_phase(phase)
    if text:
        generation.append(text)
    generations[name] = generation
    return StreamingMessage(text, stream=f"/stream/{name}", phase=phase, live_text=lambda: generation.text)


@ui.page("/")
def index() -> None:
    messages.clear()
    generations.clear()
    containers.clear()
    with ui.column().classes("w-full max-w-3xl p-4") as container:
        containers.append(container)
        messages["streamed"] = live_message("streamed").classes("w-full").props("data-testid=streamed")


@app.websocket("/stream/{name}")
async def stream(websocket: WebSocket, name: str, after: int = 0) -> None:
    sockets.setdefault(name, []).append(websocket)
    try:
        await serve_stream(websocket, generations[name].follow(after))
    finally:
        sockets[name].remove(websocket)


@app.get("/api/ping")
def ping() -> dict:
    return {"ok": True}


@app.post("/api/new")
def new(command: Command) -> dict:
    with containers[-1]:
        if command.streaming:
            message = live_message(command.name, command.text, command.phase)
        else:
            message = StreamingMessage(command.text)
        messages[command.name] = message.classes("w-full").props(f"data-testid={command.name}")
    return {"text": message.text}


@app.post("/api/append")
def append(command: Command) -> dict:
    for delta in command.deltas:
        generations[command.name].append(delta)
    return {"text": generations[command.name].text}


@app.post("/api/finish")
def finish(command: Command) -> dict:
    generation = generations[command.name]
    for delta in command.deltas:  # deltas and the end in one go
        generation.append(delta)
    text = generation.text
    generation.finish(Message(id=generation.message_id, conversation_id=0, role=Role.assistant, content=text,
                              status=Status.complete))  # fmt: skip
    messages[command.name].finished(text)
    return {"text": text}


@app.post("/api/phase")
def phase(command: Command) -> dict:
    generations[command.name].set_phase(command.phase)
    return {"ok": True}


@app.post("/api/drop")
async def drop(command: Command) -> dict:
    """Close the message's open streams as a failing network would (the page must reconnect from its offset)."""
    closing = list(sockets.get(command.name, []))
    await asyncio.gather(*(websocket.close(1011) for websocket in closing))
    return {"dropped": len(closing)}


@app.post("/api/classes")
def classes(command: Command) -> dict:
    messages[command.name].classes(command.classes)  # a full update of the element while it streams
    return {"ok": True}


ui.run(host="127.0.0.1", port=int(sys.argv[1]), reload=False, show=False, title="StreamingMessage test")
