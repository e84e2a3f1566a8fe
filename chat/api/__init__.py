"""HTTP and WebSocket views over the engine and the store (no business logic here).

With accounts (team mode) every ``/api`` and ``/v1`` route and the answers' WebSocket need an API token or a login
session (``auth.py``); the views pass the resulting ``Account`` to the engine and read only its rows.
"""

from .routes import register_api
from .stream import STREAM_PATH, serve_stream

__all__ = ["STREAM_PATH", "register_api", "serve_stream"]
