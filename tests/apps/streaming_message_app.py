"""A tiny NiceGUI app for tests/test_streaming_message_browser.py.

Run as ``python tests/apps/streaming_message_app.py PORT``. The page ``/`` shows one streaming message
(``data-testid=streamed``); the JSON routes below drive the messages of the most recently opened page.
"""

import sys

from nicegui import app, ui
from pydantic import BaseModel

from chat.ui.streaming_message import StreamingMessage

messages: dict[str, StreamingMessage] = {}
containers: list[ui.column] = []


class Command(BaseModel):
    """What a test asks of the message called ``name``."""

    name: str
    text: str = ""
    deltas: list[str] = []
    streaming: bool = False
    phase: str = ""
    classes: str = ""


@ui.page("/")
def index() -> None:
    messages.clear()
    containers.clear()
    with ui.column().classes("w-full max-w-3xl p-4") as container:
        containers.append(container)
        messages["streamed"] = StreamingMessage(streaming=True).classes("w-full").props("data-testid=streamed")


@app.get("/api/ping")
def ping() -> dict:
    return {"ok": True}


@app.post("/api/new")
def new(command: Command) -> dict:
    with containers[-1]:
        message = StreamingMessage(command.text, streaming=command.streaming, phase=command.phase)
        messages[command.name] = message.classes("w-full").props(f"data-testid={command.name}")
    return {"text": message.text}


@app.post("/api/append")
def append(command: Command) -> dict:
    for delta in command.deltas:
        messages[command.name].append(delta)
    return {"text": messages[command.name].text}


@app.post("/api/finish")
def finish(command: Command) -> dict:
    for delta in command.deltas:  # deltas and finish() in one go: the late deltas must not show twice
        messages[command.name].append(delta)
    messages[command.name].finish(command.text)
    return {"text": messages[command.name].text}


@app.post("/api/phase")
def phase(command: Command) -> dict:
    messages[command.name].set_phase(command.phase)
    return {"ok": True}


@app.post("/api/classes")
def classes(command: Command) -> dict:
    messages[command.name].classes(command.classes)  # a full update of the element while it streams
    return {"ok": True}


ui.run(host="127.0.0.1", port=int(sys.argv[1]), reload=False, show=False, title="StreamingMessage test")
