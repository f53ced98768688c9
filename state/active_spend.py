"""The active containers' cost at a moment, summed in closed form between changes.

Each active row costs `current_cost(stored, rate, started, now)`: what is stored for it until its
rate over its run time passes that (its crossing), then `rate * (now - started) / 3600`. Summed
row by row, 8,000 of them were a fifth of a 10,000-container dashboard refresh. Between changes
of the rows (and crossings) the sum is a constant plus a line in `now`:

    sum = constant rows' stored costs + (R * (now - t0) - K) / 3600,
    R = the accruing rows' rates, K = the sum of rate * (started - t0)

with `t0` the moment it was worked out (so `K`'s terms stay small and the sum exact to far below
a cent). A change of rows, a crossing, or a clock that goes back works it out again.

Both the full read and the live refresh sum without rounding each row (`math.fsum`; the total
is rounded to 6 decimals once), so they agree whichever way they were summed; the budget guard
sums unrounded costs too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

# (stored cost, rate per hour, started in epoch seconds or None)
Priced = tuple[float, float, float | None]


def cost_at(stored: float, rate: float, start: float | None, now_s: float) -> float:
    """`costs.current_cost` in epoch seconds."""
    return max(stored, rate * max(0.0, now_s - start) / 3600.0 if start is not None else 0.0)


class ActiveSpend:
    """The sum of `cost_at` over the rows given to `at`, worked out again only after
    `invalidate()`, a crossing, or an earlier `now`."""

    def __init__(self) -> None:
        self._form: tuple[float, float, float, float, float] | None = None  # t0, C, R, K, next

    def invalidate(self) -> None:
        self._form = None

    def at(self, rows: Callable[[], Iterable[Priced]], now_s: float) -> float:
        """The sum at `now_s`; `rows()` is called only when it must be worked out again."""
        form = self._form
        if form is None or now_s < form[0] or now_s >= form[4]:
            form = self._form = _closed_form(rows(), now_s)
        t0, constant, rate, k, _ = form
        return constant + (rate * (now_s - t0) - k) / 3600.0


def _closed_form(rows: Iterable[Priced], t0: float) -> tuple[float, float, float, float, float]:
    constant: list[float] = []
    rates: list[float] = []
    k: list[float] = []
    crossing = math.inf  # the next moment a constant row starts accruing
    for stored, rate, start in rows:
        if start is None or rate <= 0.0:
            constant.append(cost_at(stored, rate, start, t0))
            continue
        cross = start + max(stored, 0.0) * 3600.0 / rate
        if t0 >= cross:
            rates.append(rate)
            k.append(rate * (start - t0))
        else:
            constant.append(max(stored, 0.0))
            crossing = min(crossing, cross)
    return t0, math.fsum(constant), math.fsum(rates), math.fsum(k), crossing
