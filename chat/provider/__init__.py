"""Provider: streams chat completions from an OpenAI-compatible upstream (or the embedded model)."""

from .client import ChatChunk, ChatStream, Provider, Usage
from .embedded import EmbeddedModelServer
from .embedded_models import EMBEDDED_MODELS, EmbeddedModel
from .errors import ProviderError
from .reasoning import ThinkSplitter
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
