"""Limits on free text the services store or pass along."""

from __future__ import annotations

__all__ = ["MAX_ERROR_CHARS", "clip_error"]

# Long enough to diagnose a failure, short enough for a row, a message header and a log line.
MAX_ERROR_CHARS = 2000


def clip_error(text: str) -> str:
    """The first MAX_ERROR_CHARS characters of an error message."""
    return text[:MAX_ERROR_CHARS]
