"""Export and import of conversations: Markdown and Parley JSON out (``export.py``); Parley JSON, ChatGPT, Claude and
Open WebUI exports in (``importing.py``, one module per format). The database side is ``chat/store/transfer.py``."""

from .base import ImportTooLarge, InvalidImport, Limits
from .export import markdown, markdown_zip, parley_document
from .importing import import_file, read

__all__ = ["ImportTooLarge", "InvalidImport", "Limits", "import_file", "markdown", "markdown_zip", "parley_document",
           "read"]  # fmt: skip
