"""A stored moment shown in the reader's own time zone and language (``local_time.js``)."""

from __future__ import annotations

from datetime import UTC, datetime

from nicegui.element import Element


def iso_utc(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC with a ``Z`` (``2026-12-01T08:15:00Z``); a naive time (SQLite gives those back)
    is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalTime(Element, component="local_time.js"):
    """A ``<time>``: the time of day (or the date and time, when not today) in the browser's time zone; the full date
    and time as its tooltip. Styled ``parley-time``: shown on hover of its message, always on touch screens.

    Args:
        moment: the moment (UTC when naive).
    """

    def __init__(self, moment: datetime) -> None:
        super().__init__()
        self._props["datetime"] = iso_utc(moment)
