"""Pilot tests for the modal screens: confirm terminate, new task, container detail, help.

Each screen is hosted in a bare App and driven by keys; results come back through the
`push_screen` callback. Fixtures are built directly from the frozen view dataclasses with fixed
datetimes, and assertions read what the widgets actually render.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from textual.app import App
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Input, Select, Sparkline

from parhelia.state.costs import DEFAULT_RATES, GPU_RATES
from parhelia.state.requests import TaskRequest
from parhelia.state.views import ContainerDetail, ContainerView, EventView, HeartbeatView
from parhelia.widgets.confirm import ConfirmTerminate
from parhelia.widgets.detail import ContainerDetailScreen
from parhelia.widgets.help_screen import HelpScreen
from parhelia.widgets.new_task import NewTaskDefaults, NewTaskScreen

NOW = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
SIZE = (120, 40)


class HostApp(App):
    """An empty app to push one screen onto."""


@contextlib.asynccontextmanager
async def opened(screen: Screen):
    """`screen` pushed onto a host app: (app, pilot, the list its dismissal results go to). The
    list outlives the block, so a test can check what the screen gave after the app has ended."""
    app = HostApp()
    results: list = []
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(screen, results.append)
        await pilot.pause()
        yield app, pilot, results


def rendered(widget: Widget) -> str:
    """The widget's rendered lines as plain text (what the terminal would show)."""
    width, height = widget.size
    assert width and height, f"{widget!r} has no size"
    return "\n".join(widget.render_line(y).text for y in range(height))


def container(cid: str = "c-0001", **kw) -> ContainerView:
    base = dict(
        id=cid,
        backend="modal",
        sandbox_id=f"sb-{cid}",
        state="running",
        health="healthy",
        task_id=f"t-{cid}",
        task_prompt=f"fix the flaky test in {cid}",
        created_at=NOW - timedelta(hours=2, minutes=5),
        started_at=NOW - timedelta(hours=2),
        terminated_at=None,
        last_heartbeat_at=NOW - timedelta(seconds=20),
        missed_heartbeats=0,
        cpu_cores=2.0,
        memory_mib=4096,
        gpu=None,
        region=None,
        cost_rate_per_hour=0.38,
        cost_accrued_usd=0.76,
        cpu_percent=41.0,
        memory_used_mib=1500.0,
        memory_percent=36.6,
        agent_alive=True,
        tags={"parhelia": "1", "parhelia.container": cid},
    )
    base.update(kw)
    return ContainerView(**base)


# -- confirm -----------------------------------------------------------------------------------


async def test_confirm_opens_with_cancel_focused_and_enter_cancels():
    async with opened(ConfirmTerminate([container()], NOW)) as (app, pilot, results):
        screen = app.screen
        assert isinstance(screen, ConfirmTerminate)
        assert screen.focused is screen.query_one("#cancel", Button)
        summary = rendered(screen.query_one("#summary"))
        for expected in ("c-0001", "modal", "sb-c-0001", "fix the flaky test", "running"):
            assert expected in summary
        assert "healthy" in summary
        assert "2h 0m" in summary  # runtime since started_at
        assert "$0.76" in summary and "$0.38/h" in summary
        await pilot.press("enter")
        await pilot.pause()
        assert results == [False]
        assert not isinstance(app.screen, ConfirmTerminate)


async def test_confirm_escape_cancels():
    async with opened(ConfirmTerminate([container()], NOW)) as (_app, pilot, results):
        await pilot.press("escape")
        await pilot.pause()
        assert results == [False]


async def test_confirm_tab_to_terminate_then_enter_confirms():
    async with opened(ConfirmTerminate([container()], NOW)) as (app, pilot, results):
        await pilot.press("tab")
        assert app.screen.focused is app.screen.query_one("#terminate", Button)
        assert results == []  # moving focus alone does nothing
        await pilot.press("enter")
        await pilot.pause()
        assert results == [True]


async def test_confirm_bulk_preview_lists_every_container_and_the_total():
    rows = [
        container(f"c-{i:04d}", cost_accrued_usd=1.25 * i, cost_rate_per_hour=0.5)
        for i in range(1, 13)
    ]
    rows.append(container("c-dead", state="terminated", terminated_at=NOW, cost_accrued_usd=2.0))
    async with opened(ConfirmTerminate(rows, NOW, filter_text="flaky")) as (app, pilot, results):
        screen = app.screen
        assert rendered(screen.query_one("#title")).strip() == (
            "Terminate 13 containers matching 'flaky'?"
        )
        preview = rendered(screen.query_one("#preview-table"))
        for c in rows:
            assert c.id in preview
        assert "terminated" in preview
        assert sum(c.cost_accrued_usd for c in rows) == 99.5
        summary = rendered(screen.query_one("#summary"))
        assert "13 containers" in summary and "accrued $99.50" in summary
        assert "$6.00/h" in summary  # 12 running at 0.50/h; the terminated one burns nothing
        assert screen.focused is screen.query_one("#cancel", Button)
        await pilot.press("enter")
        await pilot.pause()
        assert results == [False]


async def test_confirm_empty_list_cannot_confirm():
    async with opened(ConfirmTerminate([], NOW, filter_text="gpu")) as (app, pilot, results):
        screen = app.screen
        assert not screen.query("#terminate")
        assert [str(b.label) for b in screen.query(Button)] == ["Close"]
        assert "nothing matches" in rendered(screen.query_one("#summary")).lower()
        await pilot.press("tab", "enter")
        await pilot.pause()
        assert results == [False]


# -- new task ----------------------------------------------------------------------------------

DEFAULTS = NewTaskDefaults(
    values={"backend": "local", "gpu": None, "cpu": 2.0, "memory_mib": 4096, "timeout_minutes": 30},
    sources={
        "backend": "project parhelia.toml",
        "gpu": "default",
        "cpu": "last used",
        "memory_mib": "last used",
        "timeout_minutes": "project parhelia.toml",
    },
)


def new_task_screen(**kw) -> NewTaskScreen:
    args = dict(backends=("local", "modal"), rates=DEFAULT_RATES, spent_usd=10.0, ceiling_usd=100.0)
    args.update(kw)
    return NewTaskScreen(DEFAULTS, **args)


async def test_new_task_prefilled_from_defaults_with_sources():
    app = HostApp()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(new_task_screen())
        await pilot.pause()
        s = app.screen
        assert s.focused is s.query_one("#prompt", Input)
        assert s.query_one("#backend", Select).value == "local"
        gpu = s.query_one("#gpu", Select)
        assert gpu.value == "none"
        assert [v for _, v in gpu._options] == ["none", *GPU_RATES]
        assert s.query_one("#cpu", Input).value == "2"
        assert s.query_one("#memory", Input).value == "4096"
        assert s.query_one("#timeout", Input).value == "30"
        assert "project parhelia.toml" in rendered(s.query_one("#label-backend"))
        assert "last used" in rendered(s.query_one("#label-cpu"))
        assert "last used" in rendered(s.query_one("#label-memory_mib"))
        assert "project parhelia.toml" in rendered(s.query_one("#label-timeout_minutes"))
        assert "default" in rendered(s.query_one("#label-gpu"))
        # 2 cores * 0.1419 + 4 GiB * 0.0242 = 0.3806/h; 30 minutes at most 0.19
        estimate = rendered(s.query_one("#estimate"))
        assert "$0.38/h" in estimate and "$0.19" in estimate and "$90.00" in estimate


async def test_new_task_gpu_warning_appears_while_typing():
    app = HostApp()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(new_task_screen())
        await pilot.pause()
        warnings = app.screen.query_one("#warnings")
        assert not warnings.display
        await pilot.press(*"train a model with CUDA")
        await pilot.pause()
        assert warnings.display
        assert "mentions GPU work" in rendered(warnings)
        # choosing a GPU clears it
        app.screen.query_one("#gpu", Select).value = "A10G"
        await pilot.pause()
        assert not warnings.display


async def test_new_task_estimate_follows_cpu():
    app = HostApp()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(new_task_screen())
        await pilot.pause()
        s = app.screen
        before = rendered(s.query_one("#estimate"))
        s.query_one("#cpu", Input).focus()
        await pilot.press("backspace", "8")
        await pilot.pause()
        after = rendered(s.query_one("#estimate"))
        assert after != before
        # 8 * 0.1419 + 4 * 0.0242 = 1.2320/h; 30 minutes: 0.616
        assert "$1.23/h" in after and "$0.62" in after


async def test_new_task_budget_warning_when_estimate_exceeds_what_is_left():
    app = HostApp()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(new_task_screen(spent_usd=99.9))
        await pilot.pause()
        assert "exceeds the $0.10 left" in rendered(app.screen.query_one("#warnings"))


async def test_new_task_bad_cpu_shows_e101_and_stays_open():
    async with opened(new_task_screen()) as (app, pilot, results):
        s = app.screen
        await pilot.press(*"fix tests")
        cpu = s.query_one("#cpu", Input)
        for typed in ("abc", "999"):
            cpu.value = typed
            await pilot.pause()
            errors = s.query_one("#errors")
            assert errors.display
            text = rendered(errors)
            assert "E101" in text and "cpu" in text
            cpu.focus()
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen is s
            assert results == []
        assert "out of range" in rendered(s.query_one("#errors"))


async def test_new_task_empty_prompt_is_refused_on_submit():
    async with opened(new_task_screen()) as (app, pilot, results):
        s = app.screen
        assert not s.query_one("#errors").display  # not an error before submitting
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is s and results == []
        assert "E102" in rendered(s.query_one("#errors"))


async def test_new_task_enter_dispatches_the_typed_request():
    async with opened(new_task_screen()) as (app, pilot, results):
        s = app.screen
        await pilot.press(*"fine-tune the model")
        s.query_one("#backend", Select).value = "modal"
        s.query_one("#gpu", Select).value = "H100"
        s.query_one("#memory", Input).value = "8192"
        s.query_one("#timeout", Input).value = "90"
        cpu = s.query_one("#cpu", Input)
        cpu.focus()
        await pilot.press("backspace", "4")
        await pilot.press("enter")
        await pilot.pause()
    assert results == [
        TaskRequest(
            prompt="fine-tune the model",
            backend="modal",
            gpu="H100",
            cpu=4.0,
            memory_mib=8192,
            timeout_minutes=90,
        )
    ]


async def test_new_task_dispatch_button_with_no_gpu_gives_none_gpu():
    async with opened(new_task_screen()) as (_app, pilot, results):
        await pilot.press(*"update the docs")
        await pilot.click("#dispatch")
        await pilot.pause()
    assert results == [
        TaskRequest(
            prompt="update the docs",
            backend="local",
            gpu=None,
            cpu=2.0,
            memory_mib=4096,
            timeout_minutes=30,
        )
    ]


async def test_new_task_escape_gives_none():
    async with opened(new_task_screen()) as (_app, pilot, results):
        await pilot.press(*"something")
        await pilot.press("escape")
        await pilot.pause()
    assert results == [None]


# -- detail ------------------------------------------------------------------------------------


def detail(state: str = "running", cpu: tuple[float, ...] = (10, 20, 30, 90)) -> ContainerDetail:
    n = len(cpu)
    # newest first on purpose: the screen must plot oldest to newest whatever order it is given
    beats = [
        HeartbeatView(
            ts=NOW - timedelta(seconds=30 * (n - 1 - i)),
            cpu_percent=cpu[i],
            memory_mib=1000.0 + 100 * i,
            memory_percent=None,
            agent_alive=True,
        )
        for i in range(n)
    ][::-1]
    events = [
        EventView(
            id=2,
            ts=NOW - timedelta(minutes=1),
            type="health",
            level="warning",
            source="heartbeat",
            message="health changed",
            container_id="c-0001",
            old_value="healthy",
            new_value="degraded",
        ),
        EventView(
            id=1,
            ts=NOW - timedelta(hours=2),
            type="state",
            level="info",
            source="dispatcher",
            message="sandbox created",
            container_id="c-0001",
        ),
    ]
    terminated = state == "terminated"
    c = container(
        "c-0001",
        state=state,
        terminated_at=NOW if terminated else None,
        exit_code=137 if terminated else None,
        termination_reason="user terminate" if terminated else None,
        gpu="A10G",
        region="us",
        tags={"parhelia": "1", "owner": "ci"},
    )
    return ContainerDetail(
        container=c, heartbeats=beats, events=events, task_status="running", metadata={}
    )


async def test_detail_sparklines_get_heartbeats_oldest_first():
    async with opened(ContainerDetailScreen(detail(), NOW)) as (app, pilot, results):
        s = app.screen
        assert list(s.query_one("#cpu-spark", Sparkline).data) == [10, 20, 30, 90]
        assert list(s.query_one("#mem-spark", Sparkline).data) == [1000, 1100, 1200, 1300]
        assert "peak 90%" in rendered(s.query_one("#cpu-label"))
        identity = rendered(s.query_one("#identity"))
        assert "sb-c-0001" in identity and "t-c-0001" in identity and "running" in identity
        assert "owner" in rendered(s.query_one("#tags"))
        resources = rendered(s.query_one("#resources"))
        assert "A10G" in resources and "41%" in resources and "us" in resources
        events = rendered(s.query_one("#events"))
        assert events.index("sandbox created") < events.index("health changed")  # newest last
        await pilot.press("q")
        await pilot.pause()
        assert results == [None]


async def test_detail_update_in_place_changes_state():
    app = HostApp()
    async with app.run_test(size=SIZE) as pilot:
        screen = ContainerDetailScreen(detail(), NOW)
        app.push_screen(screen)
        await pilot.pause()
        lifecycle = screen.query_one("#lifecycle")
        assert "running" in rendered(lifecycle)
        assert "137" not in rendered(lifecycle)
        later = NOW + timedelta(minutes=5)
        screen.update_detail(detail("terminated", cpu=(5, 6, 7, 8, 9)), later)
        await pilot.pause()
        assert screen.query_one("#lifecycle") is lifecycle  # same widget: updated, not recomposed
        text = rendered(lifecycle)
        assert "terminated" in text and "137" in text and "user terminate" in text
        assert list(screen.query_one("#cpu-spark", Sparkline).data) == [5, 6, 7, 8, 9]
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen


# -- help --------------------------------------------------------------------------------------

BINDINGS = [
    ("q", "Quit the dashboard", "everywhere"),
    ("?", "Show this help", "everywhere"),
    ("T", "Terminate the selected container", "containers"),
    ("/", "Filter containers", "containers"),
    ("n", "Dispatch a new task", "everywhere"),
    ("f", "Follow the newest events", "events"),
]
TOPICS = {
    "Health": "Health comes from missed heartbeats: 2 degraded, 5 unhealthy, 10 dead.",
    "Budget": "Spend is compared with the ceiling every cycle.",
}


async def test_help_lists_every_binding_grouped_and_topics():
    async with opened(HelpScreen(BINDINGS, TOPICS)) as (app, pilot, results):
        s = app.screen
        groups = {
            w: rendered(s.query_one(f"#keys-{w}")) for w in ("everywhere", "containers", "events")
        }
        for key, description, where in BINDINGS:
            assert description in groups[where]
            line = next(ln for ln in groups[where].splitlines() if description in ln)
            assert line.strip().startswith(key)
        assert "Terminate the selected" not in groups["everywhere"]
        assert "10 dead" in rendered(s.query_one("#topic-0"))
        assert "every cycle" in rendered(s.query_one("#topic-1"))
        await pilot.press("question_mark")
        await pilot.pause()
        assert results == [None]


async def test_help_closes_on_escape_and_q():
    app = HostApp()
    results: list[None] = []
    async with app.run_test(size=SIZE) as pilot:
        for key in ("escape", "q"):
            app.push_screen(HelpScreen(BINDINGS, TOPICS), results.append)
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
    assert results == [None, None]


async def test_detail_says_an_orphans_rate_is_estimated_from_defaults():
    d = detail()
    c = replace(
        d.container,
        state="orphaned",
        rate_estimated=True,
        rate_source="estimated from [defaults] cpu=1 memory_mib=2048 gpu=none",
    )
    async with opened(ContainerDetailScreen(replace(d, container=c), NOW)) as (app, _, _r):
        cost = " ".join(rendered(app.screen.query_one("#cost")).split())
        assert "~$" in cost and "estimated from [defaults]" in cost, cost


async def test_new_task_form_scrolls_at_80x24_so_every_field_and_button_is_reachable():
    """At 80×24 the buttons stay on screen and Tab brings each field into view."""
    import os
    import tempfile

    from tests.snapshot_fixtures import build_world, make_app

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            world = build_world(__import__("pathlib").Path(tmp))
            app = make_app(world)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                await pilot.press("n")
                for _ in range(50):
                    await pilot.pause()
                    if app.screen.query("#prompt"):
                        break
                screen = app.screen
                visible = screen.region
                assert visible.contains_region(screen.query_one("#dispatch").region)
                seen = set()
                for _ in range(8):
                    await pilot.press("tab")
                    await pilot.pause()
                    focused = app.focused
                    if focused is not None and focused.id in ("timeout", "memory", "dispatch"):
                        seen.add(focused.id)
                        assert visible.contains_region(focused.region), focused.id
                assert {"timeout", "memory"} <= seen
            world.store.close()
        finally:
            os.chdir(cwd)
