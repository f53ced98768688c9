"""Stages of a slow operation (`recording`, `building the image`, `starting the sandbox`), reported
from inside a backend's `create` to whoever shows them (the CLI's feedback on stderr).

A context variable rather than a parameter on every backend's `create`: dispatch sets the callback
around the call, a backend names its stage with `report(...)`, and nothing happens when no one
listens (the dashboard, MCP, the loops)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Progress = Callable[[str], None]

_listener: ContextVar[Progress | None] = ContextVar("parhelia_progress", default=None)


def report(stage: str) -> None:
    """Name the stage now under way, to the listener if there is one."""
    listener = _listener.get()
    if listener is not None:
        listener(stage)


@contextlib.contextmanager
def reporting(listener: Progress | None) -> Iterator[None]:
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
