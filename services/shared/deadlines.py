"""The deadline of the RPC being served, for the code it calls.

The server interceptor records the caller's deadline when a call starts; code far
below the servicer (the catalog's database calls) reads what is left of it, so that
it never keeps working, or retries, for a caller that has already given up.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

__all__ = ["reset_deadline", "set_deadline", "time_remaining"]

# A time.monotonic() instant; None: the caller set no deadline.
_deadline: ContextVar[float | None] = ContextVar("rpc_deadline", default=None)


def set_deadline(remaining: float | None) -> Token[float | None]:
    """Record that the current call must end within `remaining` seconds (None: no limit)."""
    return _deadline.set(None if remaining is None else time.monotonic() + remaining)


def reset_deadline(token: Token[float | None]) -> None:
    _deadline.reset(token)


def time_remaining() -> float | None:
    """Seconds left before the current call's deadline (never negative); None: no deadline."""
    deadline = _deadline.get()
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
