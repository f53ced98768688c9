"""The budget pane's spend trend: the last day's spend per hour, read in the dashboard's own
transaction from an indexed query (no scan of containers, none of events), the same numbers as
`budget history`, drawn as a sparkline beside the bar."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from parhelia.state.spend import BUCKETS, SPARK, TREND_HOURS, spend_buckets
from parhelia.state.view_queries import QUERIES
from parhelia.widgets.formatting import budget_lines
from tests import dashboard_world as world
from tests.test_store import plans_of

NOW = world.NOW


@pytest.mark.sqlite_only
def test_the_trend_query_searches_indexes_and_never_scans(store):
    world.seed(store)

    def read() -> None:
        with store.read() as s:
            s.execute(QUERIES["spend_trend"], {"cutoff": NOW - timedelta(hours=TREND_HOURS)}).all()

    [(_sql, plan)] = plans_of(store, read)
    assert "SCAN containers" not in plan, plan
    assert "ix_containers_state" in plan and "ix_containers_terminated" in plan, plan
    assert "events" not in plan and "heartbeats" not in plan


def test_the_dashboard_carries_the_days_hourly_spend_as_budget_history_counts_it(store):
    world.seed(store)
    trend = store.dashboard(now=NOW).budget.trend
    assert len(trend) == TREND_HOURS
    views = store.container_views(now=NOW, recent_hours=TREND_HOURS + 1, limit=100_000)
    history = spend_buckets(
        views, since=NOW - timedelta(hours=TREND_HOURS - 1), now=NOW, size=BUCKETS["hour"]
    )
    assert list(trend) == pytest.approx([sum(p.values()) for p in history.values()], abs=1e-6)
    assert trend[-1] > 0 and sum(trend) > 0


def test_the_sparkline_sits_beside_the_bar_and_says_its_peak(store):
    world.seed(store)
    budget = store.dashboard(now=NOW).budget
    _head, bar_line, *_rest, caption = budget_lines(budget, NOW, 40)
    blocks = bar_line.plain.split(" ")[-1]
    assert len(blocks) == 40 // 3 and set(blocks) <= set(SPARK) and blocks[-1] == SPARK[-1]
    assert len(bar_line.plain) == 40
    assert caption.plain.startswith(f"trend {40 // 3} h · peak $")
    bare = budget_lines(replace(budget, trend=()), NOW, 40)
    assert len(bare) == 4 and set(bare[1].plain) <= {"█", "░"}
