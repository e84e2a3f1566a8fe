"""The one place where the pages tell a user why an action did not happen."""

from __future__ import annotations

import logging

from nicegui import ui

from ..refusals import Refusal

log = logging.getLogger(__name__)


def show_error(error: Exception) -> None:
    """Tell the user, in a toast, why an action did not happen: Parley's own refusal (busy, empty, too long, over a
    limit, a model not allowed, not found: any ``Refusal``) as a warning in its own words; anything else is a bug,
    logged with its traceback and shown as "Something went wrong"."""
    if isinstance(error, Refusal):
        ui.notify(str(error), type="warning")
    else:
        log.exception("action failed", exc_info=error)
        ui.notify(f"Something went wrong: {error}", type="negative")
