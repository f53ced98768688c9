"""Waiting for a real process to get somewhere: a predicate polled with a deadline (never a
bare sleep), generous because CI is a loaded 2-core machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(predicate: Callable[[], T], seconds: float = 15.0, every: float = 0.02) -> T:
    """`predicate()`'s first truthy value within `seconds`; AssertionError past the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")
