"""Files attached to a message: reading them (``files``) and sending them to a model as content parts (``parts``)."""

from .files import AttachmentRefused, AttachmentTooLarge, FileLimits, PreparedFile, prepare
from .parts import IMAGE_TOKENS, DocumentText, ImageData, data_url, decode_data_url, user_content

__all__ = [
    "IMAGE_TOKENS", "AttachmentRefused", "AttachmentTooLarge", "DocumentText", "FileLimits", "ImageData",
    "PreparedFile", "data_url", "decode_data_url", "prepare", "user_content",
]  # fmt: skip
