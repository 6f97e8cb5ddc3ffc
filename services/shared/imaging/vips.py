"""libvips, loaded lazily in the worker processes that need it.

Importing pyvips loads libvips, which only the processes that render or compare
need; each is told to use one thread, as every worker is already one per core.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

__all__ = ["vips"]


@cache
def vips() -> Any:
    """The pyvips module (untyped), set up for one thread and no operation cache."""
    pyvips = importlib.import_module("pyvips")
    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)  # each call sees new pixels; caching would only hold memory
    return pyvips
