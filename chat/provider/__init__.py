"""Provider: streams chat completions from an OpenAI-compatible upstream (or the embedded model).

``client.py``: ``Provider`` (the request); ``stream.py``: ``ChatStream``, ``ChatChunk``, ``Usage`` (reading the answer).
"""

from .client import Provider
from .embedded import EmbeddedModelServer
from .embedded_models import EMBEDDED_MODELS, EmbeddedModel
from .errors import ProviderError
from .reasoning import ThinkSplitter
from .stream import ChatChunk, ChatStream, Usage
from .tool_calls import ToolCall, ToolCallAccumulator, ToolCallDelta

__all__ = [
    "EMBEDDED_MODELS",
    "ChatChunk",
    "ChatStream",
    "EmbeddedModel",
    "EmbeddedModelServer",
    "Provider",
    "ProviderError",
    "ThinkSplitter",
    "ToolCall",
    "ToolCallAccumulator",
    "ToolCallDelta",
    "Usage",
]
