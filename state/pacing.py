"""How long work that shares the interpreter with a key press runs between two pauses.

The dashboard's refresh (its read of every row: `state/live_views.py`, and the containers
pane's orders: `widgets/container_order.py`) calls a `pause` between slices of SLICE_ROWS rows,
where it waits while a key is handled. A module of its own, free of the store's imports, so that
the pane's orders need neither SQLAlchemy nor the models to know it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

# rows read, compared, renewed or keyed between two calls of `pause`: 1-2 ms of the interpreter,
# which a key waits for at most (2,000 rows, 6 ms, left a key's frame sharing it: bench/tui.py)
SLICE_ROWS = 500


def paced(items: Iterable, pause: Callable[[], object] | None) -> Iterable:
    """`items`, with `pause` called after each SLICE_ROWS of them (`items` itself without one)."""
    return items if pause is None else _paced_by(items, pause)


def _paced_by(items: Iterable, pause: Callable[[], object]) -> Iterator:
    for n, item in enumerate(items):
        if n and not n % SLICE_ROWS:
            pause()
        yield item
