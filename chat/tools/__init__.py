"""Function calling's tools: the built-ins (calculator, current_time) and MCP servers' tools behind one `Toolbox`.

The engine asks `Toolbox.tools` for what to offer a model, checks the model's arguments with
`Toolbox.parse_arguments` and runs calls with `Toolbox.call`.
"""

from .base import InvalidArguments, Policy, Tool, ToolError, ToolOutput, UnknownTool
from .toolbox import Toolbox

__all__ = ["InvalidArguments", "Policy", "Tool", "ToolError", "ToolOutput", "Toolbox", "UnknownTool"]
