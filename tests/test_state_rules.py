"""The rules `state/` keeps in one place: event types (a writer refuses an unknown one), the current
cost of a container, what a row takes when it ends, and the one column list `ContainerView` is
read from."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from parhelia.state import view_queries, view_reads
from parhelia.state.bulk import RowChange
from parhelia.state.costs import current_cost
from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.lifecycle import end_of_life
from parhelia.state.models import Container, Event
from parhelia.state.store import Store
from parhelia.state.views import ContainerView

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


# -- event types ----------------------------------------------------------------------------


def test_the_event_writer_refuses_an_unknown_type_and_writes_nothing(store: Store):
    store.add_event(EventType.NOTE, "a known type")
    with pytest.raises(ValueError, match=r"unknown event type 'container\.stat'.*EventType"):
        store.add_event("container.stat", "a typo")
    with pytest.raises(ValueError, match="unknown event type"):
        make_event("budget.warnign", "another")
    assert [e.type for e in store.events()] == ["note"]


def test_every_bulk_path_refuses_an_unknown_type(store: Store):
    store.add_container(Container(id="c-00000001", backend="local", state="running"))
    change = RowChange("c-00000001", {"health": "degraded"}, {"state": "running"})
    as_row = {"ts": T0, "type": "reconciler.eror", "message": "m", "level": "info"}
    with pytest.raises(ValueError, match=r"reconciler\.eror"):
        store.apply_changes([change], events=[as_row])
    # the whole transaction is refused: the row change did not land either
    assert store.get_container("c-00000001").health != "degraded"
    with pytest.raises(ValueError, match=r"'x\.y'"):
        store.add_events([Event(ts=T0, type="x.y", message="m")])
    with pytest.raises(ValueError, match=r"'heartbeat\.missed'"):
        store.record_heartbeats([], [], [Event(ts=T0, type="heartbeat.missed", message="m")])
    assert store.events() == []


def test_a_known_type_is_stored_as_its_plain_value(store: Store):
    ev = store.add_event(EventType.BUDGET_WARNING, "80% of the budget")
    assert type(ev.type) is str and ev.type == "budget.warning"
    assert store.events(types=[EventType.BUDGET_WARNING])[0].message == "80% of the budget"


def test_every_writer_names_an_event_type_member_not_a_literal():
    """A literal type is checked only when its path first runs; an `EventType` member is checked
    when the module is imported. So no writer in the product passes a string literal."""
    literal = re.compile(r"(?:make_event|_event_row|_event|add_event)\(\s*\"([^\"]+)\"")
    member = re.compile(r"(?:make_event|_event_row|_event|add_event)\(\s*EventType\.")
    literals, members = set(), 0
    for folder in ("app", "state", "workers", "widgets"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            literals.update(literal.findall(text))
            members += len(member.findall(text))
    assert members, "the scan found no writer: its pattern no longer matches the code"
    assert not literals, literals


# -- current cost and end of life -----------------------------------------------------------


def test_current_cost_is_the_larger_of_stored_and_rate_times_elapsed():
    started = T0 - timedelta(hours=2)
    assert current_cost(0.0, 0.5, started, T0) == pytest.approx(1.0)
    assert current_cost(3.0, 0.5, started, T0) == 3.0  # a billed figure above the estimate stays
    assert current_cost(0.25, 0.5, None, T0) == 0.25  # never started: nothing accrues


def test_end_of_life_stamps_the_end_and_freezes_the_cost_once():
    row = SimpleNamespace(
        terminated_at=None,
        cost_accrued_usd=0.1,
        cost_rate_per_hour=0.5,
        started_at=T0 - timedelta(hours=1),
    )
    assert end_of_life(row, "stopped", T0) == {
        "terminated_at": T0,
        "cost_accrued_usd": pytest.approx(0.5),
    }
    assert end_of_life(row, "terminated", T0)["terminated_at"] == T0
    assert end_of_life(row, "orphaned", T0) == {}  # not an end
    row.terminated_at = T0 - timedelta(minutes=5)
    assert end_of_life(row, "terminated", T0) == {}  # ended before: the first end stands


def test_transition_writes_the_end_of_life_fields(store: Store):
    store.add_container(
        Container(
            id="c-00000002",
            backend="local",
            state="running",
            started_at=T0 - timedelta(hours=2),
            cost_rate_per_hour=0.25,
        )
    )
    c = store.transition("c-00000002", "stopped", source="system", now=T0)
    assert (c.terminated_at, c.cost_accrued_usd) == (T0, pytest.approx(0.5))
    c = store.transition("c-00000002", "terminated", source="system", now=T0 + timedelta(hours=1))
    assert (c.terminated_at, c.cost_accrued_usd) == (T0, pytest.approx(0.5))


# -- ContainerView from one column list -----------------------------------------------------


def test_every_container_view_field_has_one_source():
    names = [f.name for f in fields(ContainerView)]
    assert names == list(view_reads.VIEW_FIELDS)  # read in field order, then derived
    assert tuple(view_queries.VIEW_SOURCES) == view_reads.VIEW_READ


def test_container_views_read_each_field_from_its_source(store: Store):
    store.add_container(
        Container(
            id="c-00000003",
            backend="modal",
            sandbox_id="sb-3",
            state="running",
            started_at=T0 - timedelta(hours=1),
            cost_rate_per_hour=0.5,
            cost_accrued_usd=0.2,
            cpu_cores=2.0,
            memory_mib=4096,
            gpu="T4",
            region="eu",
            last_cpu_percent=12.5,
            last_memory_mib=300.0,
            last_memory_percent=7.0,
            last_agent_alive=True,
            tags={"parhelia": "1"},
            meta={"rate_source": "estimated from [defaults]"},
        )
    )
    [v] = store.container_views(now=T0)
    assert (v.id, v.backend, v.sandbox_id, v.state) == ("c-00000003", "modal", "sb-3", "running")
    assert (v.cpu_cores, v.memory_mib, v.gpu, v.region) == (2.0, 4096, "T4", "eu")
    assert (v.cpu_percent, v.memory_used_mib, v.memory_percent, v.agent_alive) == (
        12.5,
        300.0,
        7.0,
        True,
    )
    assert v.started_at == T0 - timedelta(hours=1) and v.started_at.tzinfo is not None
    assert v.cost_accrued_usd == pytest.approx(0.5)  # current cost: rate x elapsed beats stored
    assert v.tags == {"parhelia": "1"}
    assert (v.rate_source, v.rate_estimated) == ("estimated from [defaults]", True)
