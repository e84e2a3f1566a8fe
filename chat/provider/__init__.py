"""Provider: streams chat completions from an OpenAI-compatible upstream (or the embedded model)."""

from .client import ChatChunk, ChatStream, Provider, Usage
from .embedded import EmbeddedModelServer
from .errors import ProviderError

__all__ = ["ChatChunk", "ChatStream", "EmbeddedModelServer", "Provider", "ProviderError", "Usage"]
