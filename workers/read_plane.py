"""`ReadPlane`: what a front end reads of the control plane (the one view, the containers, the
agents' sessions), apart from what it does (`ControlPlane` adds dispatch, terminate and the loops).

It imports neither SQLAlchemy nor a backend: over a `state.quick_store.QuickStore` a read command
(`containers list`, `status --no-refresh`, `tui --once --no-refresh`) runs without either
(bench/cli.py); over a `Store` it is the `ControlPlane`'s own read side.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parhelia.state.settings import Settings, budget_config
from parhelia.state.timeutil import utcnow

if TYPE_CHECKING:
    from parhelia.state.budget import BudgetConfig
    from parhelia.state.live_views import LiveContainers
    from parhelia.state.views import ContainerView, DashboardView, EventView, ReconcilerView
    from parhelia.workers.backends.base import Backend

AGENT_READ_SECONDS = 3.0  # how often the view reads the agents' sessions
# The most agents one read looks at (two tmux calls, or one Modal exec, each): a fleet larger
# than this is read in turns, by id, the rest keeping their last reading. 10,000 Modal sandboxes
# read at once took 4-5 s a refresh (bench/tui.py), and would be 10,000 execs every 3 s.
AGENT_READ_LIMIT = 64
AGENT_BACKENDS = ("local", "modal")  # the backends whose agents run in sessions Parhelia reads


class ReadPlane:
    """The one view and what it shows, over a store (`Store`, or a read command's `QuickStore`)."""

    def __init__(
        self,
        store: Any,
        settings: Settings,
        *,
        default_backend: str = "local",
        data_dir: Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.default_backend = default_backend
        self.data_dir = data_dir or Path.cwd()
        self.clock = clock or utcnow  # looked up here: a test may fix the module's clock
        self._backends: dict[str, Backend] = {}
        # (when, readings, the last hook event seen, the backends read): see `_agents`
        self._agents_read: tuple[float, dict, int | None, tuple[str, ...]] | None = None
        self._agents_turn: str | None = None  # the last id read when the fleet is read in turns

    def backend_for(self, name: str) -> Backend:
        if name not in self._backends:
            from parhelia.workers.backends import make_backend

            self._backends[name] = make_backend(name, self.settings, self.data_dir)
        return self._backends[name]

    def local_root(self) -> Path | None:
        """The local backend's sandboxes directory without building the backend (which imports
        its process and checkpoint machinery): reading the agents' tmux sessions needs the path
        alone. A backend already in use answers for itself (None: it keeps no directory)."""
        from parhelia.workers.backends import local_root

        built = self._backends.get("local")
        if built is None:
            return local_root(self.settings, self.data_dir)
        root = getattr(built, "root", None)
        return Path(root) if root is not None else None

    def budget_config(self) -> BudgetConfig:
        return budget_config(self.store, self.settings)

    def dashboard(
        self,
        *,
        event_limit: int | None = None,
        agents: bool = True,
        remote_agents: bool = True,
        live: LiveContainers | None = None,
    ) -> DashboardView:
        """The one view. `live` (kept by a dashboard between its refreshes) rebuilds only the
        containers that changed since its last read. `agents=False` leaves out what the agents
        are doing (a look at every active agent's tmux session) for a caller that shows neither
        the AGENT column nor the attention list: `containers list` over 1,000 containers spent
        more on it than on the query (bench/cli.py). `remote_agents=False` reads only the agents
        on this machine (no call to Modal: the one-shot views' `--no-refresh`)."""
        view = self.store.dashboard(
            live=live,
            now=self.clock(),
            budget=self.budget_config(),
            event_limit=self.settings.tui.event_rows if event_limit is None else event_limit,
            reconcile_interval=self.settings.reconciler.interval_seconds,
            backend_label=self.default_backend,
        )
        read = AGENT_BACKENDS if remote_agents else ("local",)
        hosted = [c for c in view.containers if c.is_active and c.backend in read]
        if agents and hosted:
            from parhelia.state.agent_activity import attention_items
            from parhelia.state.view_reads import CONTAINER_VIEW_LIMIT

            # the view's own containers, unless it was cut at its row limit (then the store's)
            whole = len(view.containers) < CONTAINER_VIEW_LIMIT
            # a hook's new word (an agent.activity event in this view) is read at once
            said = max((e.id for e in view.events if e.type == "agent.activity"), default=None)
            agents_now = self._agents(hosted if whole else None, said, read)
            if whole:  # a cached reading may still hold agents that have ended since
                ids = {c.id for c in hosted}
                agents_now = {k: a for k, a in agents_now.items() if k in ids}
            view = replace(
                view, agents=agents_now, agents_waiting=attention_items(agents_now.values())
            )
        return view

    def _agents(
        self,
        containers: list[ContainerView] | None,
        said: int | None = None,
        backends: tuple[str, ...] = AGENT_BACKENDS,
    ) -> dict:
        """What the agents are doing (read from their tmux panes, here or in their Modal sandboxes,
        each Modal read within the deadline), by container id, at most every AGENT_READ_SECONDS:
        two tmux calls per agent is too much for every refresh. The view's own containers are
        passed, so the store is not asked again (a second load of 1,000 rows cost more than the
        look at their sessions: bench/cli.py). At most AGENT_READ_LIMIT agents a read, a larger
        fleet in turns. A session that cannot be read is no reason to fail the view: the last
        reading stays."""
        from parhelia.workers.sessions import SessionService

        now, last = time.monotonic(), self._agents_read
        if (
            last is None
            or now - last[0] >= AGENT_READ_SECONDS
            or said != last[2]
            or backends != last[3]  # a reading of fewer backends is no answer for more
        ):
            if containers is None:
                containers = [c for c in self.store.active_containers() if c.backend in backends]
            batch, self._agents_turn = agents_turn(containers, self._agents_turn, AGENT_READ_LIMIT)
            known = dict(last[1]) if last else {}
            try:
                fresh = SessionService(self).activities(batch)
            except Exception:
                fresh = {c.id: known[c.id] for c in batch if c.id in known}
            for c in batch:  # read now: what it says replaces the last reading, or its absence
                known.pop(c.id, None)
            alive = {c.id for c in containers}  # agents of containers that ended go
            known = {k: a for k, a in known.items() if k in alive} | fresh
            self._agents_read = (now, known, said, backends)
        return self._agents_read[1]

    def container_views(
        self,
        *,
        recent_hours: float | None = None,
        now: datetime | None = None,
        limit: int | None = None,
    ) -> list[ContainerView]:
        """`Store.container_views`; None leaves its default (the dashboard's window, its limit)."""
        given = {"recent_hours": recent_hours, "limit": limit}
        return self.store.container_views(
            now=now or self.clock(), **{k: v for k, v in given.items() if v is not None}
        )

    def reconciler_view(self, now: datetime) -> ReconcilerView:
        return self.store.reconciler_view(self.settings.reconciler.interval_seconds, now=now)

    def event_views(self, *, limit: int = 100, **filters: Any) -> list[EventView]:
        """The newest `limit` events matching `Store.events`' filters, newest last. Unfiltered,
        they are the view's own statement (`Store.recent_events`: `parhelia events list` reads
        them without SQLAlchemy)."""
        if not any(v is not None for v in filters.values()):
            return self.store.recent_events(limit)
        from parhelia.state.event_log import to_event_view

        return [to_event_view(e) for e in reversed(self.store.events(limit=limit, **filters))]

    def container(self, ref: str) -> Any:
        """A container row by container or sandbox id, or a unique prefix (E204 when there is
        none): the full store's `Container`."""
        return self.store.get_container(ref)

    def task_dicts(self, *, status: str | None = None, limit: int = 100) -> list[dict]:
        """The newest tasks (in `status`), newest first, as `Task.model_dump()` gives them."""
        return self.store.task_dicts(status=status, limit=limit)


def agents_turn(containers: list, after: str | None, limit: int) -> tuple[list, str | None]:
    """The containers whose agents this read looks at: all of them up to `limit`, else the next
    `limit` by id after `after` (wrapping round), and the id to go on from next time."""
    if len(containers) <= limit:
        return list(containers), None
    ordered = sorted(containers, key=lambda c: c.id)
    ids = [c.id for c in ordered]
    start = bisect.bisect_right(ids, after) if after is not None else 0
    batch = (ordered[start:] + ordered[:start])[:limit]
    return batch, batch[-1].id
