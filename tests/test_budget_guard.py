"""The budget guard: accrual, warnings once per period, block/stop policies, runtime and dead limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parhelia.state.enums import ContainerState
from parhelia.state.errors import ParheliaError
from parhelia.state.models import Container
from parhelia.state.settings import Settings, budget_config
from parhelia.workers.backends.base import parhelia_tags
from parhelia.workers.budget_guard import BudgetGuard
from tests.test_reconciler import Clock, FakeBackend, make_terminate, running_row

T0 = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def fake():
    return FakeBackend()


def guard(store, fake, clock, *, ceiling=10.0, **policy):
    settings = Settings()
    settings.budget.ceiling_usd = ceiling
    for k, v in policy.items():
        setattr(settings.policy, k, v)
    term = make_terminate(store, {"fake": fake}, clock)
    return BudgetGuard(store, settings, terminate=term, clock=clock), term


def start(store, fake, clock, cid, *, hours_ago=0.0, rate=1.0, **fields):
    fake.add(f"sb-{cid}", cid)
    running_row(store, clock, cid, f"sb-{cid}", cost_rate_per_hour=rate, **fields)
    store.update_container(cid, started_at=clock() - timedelta(hours=hours_ago))


def warnings(store):
    return [
        (e.new_value, e.level, e.details["code"])
        for e in store.events(types=["budget.warning"], oldest_first=True)
    ]


def test_accrues_cost_and_warns_at_each_threshold_once_per_period(store, fake, clock):
    start(store, fake, clock, "c-1", rate=1.0)
    g, _ = guard(store, fake, clock)
    clock.advance(4 * 3600)
    assert g.check() == []
    assert store.get_container("c-1").cost_accrued_usd == pytest.approx(4.0)

    clock.advance(1.5 * 3600)  # $5.50 of $10
    assert len(g.check()) == 1
    assert g.check() == []  # once
    clock.advance(3 * 3600)  # $8.50
    g.check()
    clock.advance(2 * 3600)  # $10.50
    g.check()
    g.check()
    assert warnings(store) == [
        ("50", "warning", "E301"),
        ("80", "warning", "E301"),
        ("100", "error", "E300"),
    ]
    ev = store.events(types=["budget.warning"])[0]
    assert ev.actor == "budget-guard" and ev.old_value == "80"
    assert store.get_container("c-1").cost_accrued_usd == pytest.approx(10.5)

    clock.now = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)  # a new period: warnings start over
    g.check()
    g.check()
    assert [w[0] for w in warnings(store)] == ["50", "80", "100", "100"]


def test_a_jump_past_several_thresholds_warns_once_with_the_highest(store, fake, clock):
    start(store, fake, clock, "c-1", hours_ago=9, rate=1.0)
    g, _ = guard(store, fake, clock)
    g.check()
    clock.advance(60)
    g.check()
    assert warnings(store) == [("80", "warning", "E301")]


def test_forecast_and_burn_rate(store, fake, clock):
    start(store, fake, clock, "c-1", hours_ago=2, rate=1.0)
    start(store, fake, clock, "c-2", hours_ago=2, rate=0.5)
    g, _ = guard(store, fake, clock)
    s = g.spend()
    assert (s.spent_usd, s.burn_per_hour) == pytest.approx((3.0, 1.5))
    assert s.hours_to_ceiling == pytest.approx(7.0 / 1.5)


def test_block_policy_refuses_dispatch_past_the_ceiling(store, fake, clock):
    start(store, fake, clock, "c-1", hours_ago=9, rate=1.0)
    g, term = guard(store, fake, clock, budget="block")
    g.check_dispatch()  # allowed: no error
    clock.advance(2 * 3600)
    with pytest.raises(ParheliaError) as refused:
        g.check_dispatch()
    assert refused.value.code == "E603" and "block" in refused.value.message
    g.check()
    assert term.calls == []  # block stops new work only
    assert "new dispatches are refused" in store.events(types=["budget.warning"])[0].message


def test_warn_policy_never_blocks_and_stored_settings_win(store, fake, clock):
    start(store, fake, clock, "c-1", hours_ago=12, rate=1.0)
    g, _ = guard(store, fake, clock)
    g.check_dispatch()  # warn never refuses
    store.set_setting("budget.ceiling_usd", 100.0, actor="user")
    store.set_setting("policy.budget", "block", actor="user")
    cfg = budget_config(store, g.settings)
    assert (cfg.ceiling_usd, cfg.policy) == (100.0, "block")
    g.check_dispatch()  # $12 of the new $100


def test_stop_policy_terminates_running_containers_at_the_ceiling(store, fake, clock):
    start(store, fake, clock, "c-1", hours_ago=6, rate=1.0)
    start(store, fake, clock, "c-2", hours_ago=3, rate=1.0)
    g, term = guard(store, fake, clock, budget="stop")
    assert g.check() == [
        "E301 budget 80% reached: $9.00 of $10.00 this month; at $2.00/h the "
        "ceiling is reached in 0.5 h. parhelia budget show"
    ]
    assert term.calls == []
    clock.advance(3600)
    actions = g.check()
    assert term.calls == [
        ("c-1", "budget-guard", "budget_stop"),
        ("c-2", "budget-guard", "budget_stop"),
    ]
    assert "terminated c-1 (budget_stop)" in actions
    for cid in ("c-1", "c-2"):
        row = store.get_container(cid)
        assert (row.state, row.terminated_by) == ("terminated", "budget-guard")
    assert {e.actor for e in store.events(types=["container.state"])} == {"budget-guard"}
    with pytest.raises(ParheliaError, match="stop"):
        g.check_dispatch()


def test_max_runtime_terminates_only_the_long_runner(store, fake, clock):
    start(store, fake, clock, "c-old", hours_ago=3, rate=0.1)
    start(store, fake, clock, "c-new", hours_ago=1, rate=0.1)
    g, term = guard(store, fake, clock, max_runtime_hours=2.0)
    g.check()
    assert term.calls == [("c-old", "budget-guard", "max_runtime")]
    assert store.get_container("c-new").state == "running"


def test_dead_containers_terminated_only_when_the_policy_says_so(store, fake, clock):
    start(store, fake, clock, "c-dead", rate=0.1, health="dead")
    off, term_off = guard(store, fake, clock)
    off.check()
    assert term_off.calls == [] and store.get_container("c-dead").state == "running"
    on, term_on = guard(store, fake, clock, dead="terminate")
    on.check()
    assert term_on.calls == [("c-dead", "budget-guard", "dead")]
    assert store.get_container("c-dead").termination_reason == "dead"


def test_orphans_terminated_after_grace_only_when_the_policy_says_so(store, fake, clock):
    store.add_container(
        Container(
            id="c-o",
            backend="fake",
            sandbox_id="sb-o",
            state=ContainerState.ORPHANED,
            created_at=clock(),
            started_at=clock(),
            cost_rate_per_hour=0.2,
            tags=parhelia_tags("c-o", None, store.plane_id),
        )
    )
    fake.add("sb-o", "c-o")
    g, term = guard(store, fake, clock, orphans="terminate")
    g.check()
    assert term.calls == []  # within grace
    clock.advance(121)
    guard(store, fake, clock)[0].check()
    assert store.get_container("c-o").state == "orphaned"  # policy off by default
    g.check()
    assert term.calls == [("c-o", "budget-guard", "orphan")]
    assert fake.terminated == ["sb-o"]


def test_an_orphan_without_a_plane_tag_is_never_terminated_by_a_policy(store, fake, clock):
    """Made before plane ids, it may be a teammate's: flagged, stopped only by a person."""
    store.add_container(
        Container(
            id="c-0000001e",
            backend="fake",
            sandbox_id="sb-old",
            state=ContainerState.ORPHANED,
            created_at=clock(),
            started_at=clock(),
            cost_rate_per_hour=50.0,
            tags=parhelia_tags("c-0000001e", None),  # no parhelia_plane
        )
    )
    fake.add("sb-old", "c-0000001e")
    clock.advance(3 * 3600)
    g, term = guard(store, fake, clock, orphans="terminate", budget="stop", max_runtime_hours=1.0)
    g.check()
    assert term.calls == [] and fake.terminated == []
    assert store.get_container("c-0000001e").state == "orphaned"


def test_a_backends_billed_cost_above_the_runtime_cost_is_what_is_spent_and_stored(
    store, fake, clock
):
    start(store, fake, clock, "c-1", rate=1.0, hours_ago=1.0)
    store.update_container("c-1", meta={"billed_usd": 7.5})  # the backend billed more than 1 h
    g, _ = guard(store, fake, clock, ceiling=100.0)
    assert g.spend().spent_usd == pytest.approx(7.5)
    g.check()
    assert store.get_container("c-1").cost_accrued_usd == pytest.approx(7.5)


def test_a_cost_that_moved_less_than_a_cent_is_not_written_again(store, fake, clock):
    """Every view prices an active row at its moment; writing each row every pass stamped
    `updated_at` on 10,000 rows a heartbeat interval, and every dashboard read them all again."""
    from parhelia.workers.budget_guard import ACCRUE_USD

    start(store, fake, clock, "c-1", rate=1.0)
    g, _ = guard(store, fake, clock, ceiling=100.0)
    clock.advance(3600)
    g.check()
    stamped = store.get_container("c-1").updated_at
    clock.advance(ACCRUE_USD * 3600 * 0.5)  # half a cent later: nothing to write
    g.check()
    row = store.get_container("c-1")
    assert row.updated_at == stamped and row.cost_accrued_usd == pytest.approx(1.0)
    assert g.spend().spent_usd == pytest.approx(1.0 + ACCRUE_USD * 0.5)  # spent counts it all
    clock.advance(ACCRUE_USD * 3600)  # a cent and a half: written
    g.check()
    assert store.get_container("c-1").cost_accrued_usd == pytest.approx(1.0 + ACCRUE_USD * 1.5)
