"""HTTP and WebSocket views over the engine and the store (no business logic here)."""

from .routes import register_api
from .stream import STREAM_PATH, serve_stream

__all__ = ["STREAM_PATH", "register_api", "serve_stream"]
