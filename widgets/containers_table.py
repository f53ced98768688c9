"""The containers pane: one row per container, updated by key on every refresh.

Each refresh compares the new views with the last by identity (the store hands back the very same
object for a container that did not change, `state/live_views.py`), and its heartbeat samples
likewise (a heartbeat moves a row's sample beside a view it keeps, `state/samples.py`): a row's
line is drawn again when its view or its sample is another object (no per-row bookkeeping on the
main thread), new rows come and gone rows go; nothing is cleared, so the cursor and the scroll
position survive (k9s' model). A row's cells are made only when it is drawn, and a row is drawn
only when it changed and is on screen (`LineTable`): 40 rows a refresh, not 10,000. The order
(sort and filter) is made off the main thread (`widgets/container_order.py`): in the refresh
thread from the changed rows' keys (`prepare_rows`: the sort column's and the next one's in `s`'s
cycle, so `s` and `S` only swap in a ready order), else by a thread worker past SYNC_ROWS rows (a
header click), shown when made. A filter keystroke is matched at once from the rows' haystacks,
made when `/` opens the bar and kept by each refresh while it is open (a few ms at 10,000 rows);
without them, by a worker (the last text typed wins). Sort and filter are the table's own state
and so stay put across refreshes; the cursor follows its container, not its row number.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal, NamedTuple

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.worker import get_current_worker

from parhelia.state.agent_activity import AgentState
from parhelia.state.samples import Samples
from parhelia.state.views import ContainerView, plural
from parhelia.widgets.container_filter import ContainerFilter
from parhelia.widgets.container_order import (
    Matches,
    Ordering,
    matches,
    ordering,
    shown_order,
)
from parhelia.widgets.formatting import (
    COLUMN_KEYS,
    COLUMNS,
    KEYS_KEPT_BY_HEARTBEATS,
    SAMPLE_COLUMNS,
    TASK_WIDTH,
    cell_style,
    container_cells,
    row_style,
)
from parhelia.widgets.help_pane import PaneHelp
from parhelia.widgets.line_table import LineTable, TableColumn

# Columns are laid out with no padding: each cell starts with one space and each column is one
# wider than its widest value, so columns never touch.
MIN_TASK = 12
# Which columns give way first when the pane is narrow: the task shrinks to MIN_TASK, then the
# columns are hidden from the last of this list backwards, so ID, state, health, age and cost stay
# on screen down to an 80-column terminal (the pane's subtitle names what is hidden).
GIVE_WAY = ("sandbox", "gpu", "heartbeat", "memory", "cpu", "rate", "agent", "task")


Settings = tuple[str, bool, str]  # (sort column, reversed, filter text): what an order is for
FIRST_ORDER: Settings = ("age", False, "")  # youngest first: what was just dispatched is on top
# The prepared rows, and the views a pane shows, are numbered: an ordering made for older views
# knows which of its rows may have moved since (`ContainersTable._reread_since`).
_GENERATION = itertools.count(1)
REREADS_KEPT = 16  # the last refreshes whose rows read whole a pane remembers
# The next column's ordering is made this long after a sort key, not as soon as its frame is
# drawn: a worker made at once shared the interpreter with the frame's rows being written out and
# the next key (bench/tui.py); the refresh thread makes it anyway within a refresh.
AHEAD_SECONDS = 0.15


class _Link(NamedTuple):
    """What a pane knows of the views of one generation: the generation before, the rows read
    whole between the two and those whose text may have moved (`PreparedRows`)."""

    base: int | None
    reread: frozenset[str] | None
    retexted: frozenset[str] | None


def handed(job: list) -> list:
    """A worker's inputs, taken out of the list its closure holds: a finished worker lingers in
    reference cycles until the collector runs, and with it each refresh's 10,000 views (and the
    orderings before them) that its closure held, 50,000-80,000 of them walked by every young
    collection under a heartbeating fleet (bench/tui.py)."""
    taken = list(job)
    job.clear()
    return taken


def next_column(column: str) -> str:
    """The column `s` sorts by after `column`."""
    return COLUMN_KEYS[(COLUMN_KEYS.index(column) + 1) % len(COLUMN_KEYS)]


@dataclass(frozen=True)
class PreparedRows:
    """The pane's orders worked out in the refresh thread, so that the main thread only applies
    them: every view by id, the orderings of `settings`' sort column and of the next one in `s`'s
    cycle (a key press then swaps that one in; `S` reads the same one backwards), the filter's
    matches, and the ids shown for `settings`."""

    settings: Settings
    views: dict[str, ContainerView]
    orderings: dict[str, Ordering]
    matches: Matches | None
    order: list[str]
    agents: Mapping[str, AgentState] = field(default_factory=dict)  # `DashboardView.agents`
    source: list[ContainerView] | None = None  # the list of views it was prepared from
    # numbered (`_GENERATION`), after the prepared rows before (`base`): `reread`, the ids read
    # whole by the refresh these views came from, are the only rows whose key can have moved since
    # the base's views for a column no heartbeat moves, and `retexted` the only ones whose text a
    # filter reads can have (`LiveContainers.retexted`; None: any row may have)
    seq: int = 0
    base: int | None = None
    reread: frozenset[str] | None = None
    retexted: frozenset[str] | None = None
    samples: Samples | None = None  # `DashboardView.samples`, beside `views`

    @property
    def keys(self) -> Mapping[str, tuple]:
        """Each view's key for the sort column."""
        return self.orderings[self.settings[0]].keys


def prepare_rows(
    views: list[ContainerView],
    settings: Settings,
    changed: set[str] | None = None,
    previous: PreparedRows | None = None,
    agents: Mapping[str, AgentState] | None = None,
    *,
    reread: set[str] | None = None,
    retexted: set[str] | None = None,
    samples: Samples | None = None,
    searching: bool = False,
    pause: Callable[[], object] | None = None,
) -> PreparedRows:
    """Pure, for the refresh thread: the orderings of the sort column and the next one, each made
    from `previous`' by keying again only the rows in `changed` (all of them when None), or in
    `reread` (the rows read whole) for a column no heartbeat moves, and the filter's matches
    made again for `retexted` (the rows whose text may have moved; `changed` when not known)
    (`searching`: the rows' haystacks even before a word is typed, the
    filter bar being open); then the filtered, sorted order. A row's cells are not made here at
    all: only when it is drawn (`ContainersTable.row_cells`). `pause` is called between
    these steps (the dashboard's: to a key being handled; a sort holds the interpreter)."""
    column, reverse, text = settings
    agents = agents or {}
    by_id = {c.id: c for c in views}
    orderings = {}
    for col in dict.fromkeys((column, next_column(column))):
        if orderings and pause is not None:
            pause()
        before = previous.orderings.get(col) if previous is not None else None
        rows = reread if reread is not None and col in KEYS_KEPT_BY_HEARTBEATS else changed
        made = ordering(by_id, col, agents, before, rows, samples=samples, pause=pause)
        assert made is not None  # no limit
        orderings[col] = made
    filtered = bool(ContainerFilter.parse(text))
    found = None
    if filtered or searching:
        if pause is not None:
            pause()
        before = previous.matches if previous is not None else None
        found = matches(by_id, text, before, changed, retexted=retexted)
    through = found if filtered else None  # an empty text's matches carry only haystacks
    o = orderings[column]
    if (
        previous is not None
        and previous.settings == settings
        and previous.orderings[column].ascending is o.ascending
        and (
            through is None or (previous.matches is not None and previous.matches.ids is found.ids)
        )
    ):  # the same rows in the same places (a heartbeat moves no row sorted by age)
        order = previous.order
    else:
        order = shown_order(o, reverse, through)
    base = previous.seq if previous is not None else None
    return PreparedRows(
        settings,
        by_id,
        orderings,
        found,
        order,
        agents,
        views,
        next(_GENERATION),
        base,
        frozenset(reread) if reread is not None and base is not None else None,
        frozenset(retexted) if retexted is not None and base is not None else None,
        samples,
    )


def row_cells(
    c: ContainerView, now: datetime, agent: AgentState | None = None, sample: tuple | None = None
) -> list[tuple[str, str]]:
    """One container's row as drawn: each cell with its style, starting with the space that keeps
    columns apart. The one place a row is built (a new column goes in `COLUMNS` and
    `container_cells`; `agent` and `sample` are from the view's side maps,
    `DashboardView.agents` and `.samples`)."""
    cells, base = container_cells(c, now, agent, sample), row_style(c)
    return [
        (" " + value, cell_style(c, key, base, agent))
        for key, value in zip(COLUMN_KEYS, cells, strict=True)
    ]


class ContainersTable(LineTable):
    """Containers with state, health, task, age, heartbeat, usage and cost."""

    PANE_HELP = PaneHelp("Containers")
    BINDINGS = [
        Binding("s", "cycle_sort", "Sort", tooltip="Sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort order"),
        Binding(
            "escape",
            "clear_filter",
            "Clear filter",
            key_display="esc",
            show=False,
            tooltip="Clear the filter",
        ),
    ]

    class FilterCleared(Message):
        """Esc on the table cleared its filter (the app hides the filter bar)."""

    class Changed(Message):
        """Rows were added, removed or changed by a refresh (the help pane re-reads the selection)."""

    class OrderingMade(Message, bubble=False):
        """A worker made a sort column's ordering (`_start_ordering`)."""

        def __init__(self, made: Ordering, generation: int) -> None:
            super().__init__()
            self.made, self.generation = made, generation

    class MatchesMade(Message, bubble=False):
        """A worker matched a filter text (`_start_matching`)."""

        def __init__(self, made: Matches, generation: int) -> None:
            super().__init__()
            self.made, self.generation = made, generation

    # Up to this many rows a missing order is made on the main thread (a few ms); past it, by a
    # thread worker while the keys stay free, and shown when made.
    SYNC_ROWS = 2_000
    # A ready order whose rows moved since is put right on the main thread when this few moved.
    PATCH_ROWS = 64

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.filter = ContainerFilter()
        self.sort_column, self.sort_reverse, _ = FIRST_ORDER
        self.now: datetime | None = None
        self._views: dict[str, ContainerView] = {}  # every container of the view, by id
        self._orderings: dict[str, Ordering] = {}  # by sort column (container_order.py)
        self._ordering_gen: dict[str, int] = {}  # the generation of the views each was made for
        self._gen = 0  # of `_views`: the prepared rows' `seq`, or one of their own
        self._rereads: dict[int, _Link] = {}  # by generation: what led to its views
        self._matches_gen: int | None = None  # the generation of the views `_matches` is for
        self._matches: Matches | None = None  # the filter's, or the haystacks while searching
        self.searching = False  # the filter bar is open on this pane: haystacks kept ready
        self._computing: set[str] = set()  # columns a worker is ordering
        self.order_pending = False  # the order for the sort and filter asked for is being made
        self._all: list[ContainerView] = []
        # by id: (view, agent, sample, cells) as last drawn
        self._drawn: dict[str, tuple[ContainerView, Any, Any, list[tuple[str, str]]]] = {}
        self._agents: Mapping[str, AgentState] = {}  # what each agent does (`DashboardView.agents`)
        self._samples: Samples = {}  # each row's newest heartbeat (`DashboardView.samples`)
        self.matched = 0
        # what the screen says of the view in the subtitle ("3 active · $1.20/h"); the table adds
        # its own filter, sort and hidden columns (`retitle`)
        self.summary = ""
        self._titles: tuple[str, str] | None = None  # as last set
        self._task_width = TASK_WIDTH + 1
        self.hidden_columns: tuple[str, ...] = ()  # given way to a narrow pane

    def on_mount(self) -> None:
        self._set_columns()

    def _set_columns(self) -> None:
        columns = [
            TableColumn(
                c.key,
                c.label,
                0 if c.key in self.hidden_columns else self._width(c),
                c.justify,
            )
            for c in COLUMNS
        ]
        self.set_columns(columns, self._header_cells())

    def _width(self, c) -> int:
        return self._task_width if c.key == "task" else c.width + 1

    def on_resize(self) -> None:
        """Fit the columns to the pane: the task gives up its width first, then whole columns
        give way (GIVE_WAY), so state, health, age and cost stay on screen."""
        task, hidden = fit_columns(self.scrollable_content_region.width)
        if (task, hidden) != (self._task_width, self.hidden_columns):
            self._task_width, self.hidden_columns = task, hidden
            self._set_columns()
            self.post_message(self.Changed())

    # -- what is shown ---------------------------------------------------------------------

    @property
    def selected(self) -> ContainerView | None:
        key = self.cursor_key
        return None if key is None else self._views.get(key)

    @property
    def shown_rows(self) -> list[ContainerView]:
        """The containers the filter lets through, in the order shown (what `T` would stop): made
        here when a worker is still making it, so `T` never acts on the last filter's rows."""
        if self.order_pending:
            self._apply_order(wait=True)
        return [self._views[key] for key in self.ordered_keys]

    @property
    def any_active_shown(self) -> bool:
        """Whether `T` has anything to stop (stops at the first active row, not a list of all)."""
        return any(self._views[key].is_active for key in self.ordered_keys)

    @property
    def settings(self) -> Settings:
        """What an order is for: the refresh thread prepares the next one for these."""
        return (self.sort_column, self.sort_reverse, self.filter.text)

    def get_cell(self, container_id: str, column: str) -> Text:
        """A shown cell as text with its style (KeyError if the container is not shown)."""
        text, style = self.row_cells(container_id)[COLUMN_KEYS.index(column)]
        return Text(text, style=style)

    def row_cells(self, key: str) -> list[tuple[str, str]]:
        """The row's cells, made when it is drawn and kept while its view, its agent's activity,
        its heartbeat sample and `now` stay."""
        self.row_index(key)  # KeyError when it is not shown
        view, agent, sample = self._views[key], self._agents.get(key), self._samples.get(key)
        drawn = self._drawn.get(key)
        if drawn is None or drawn[0] is not view or drawn[1] != agent or drawn[2] is not sample:
            drawn = (
                view,
                agent,
                sample,
                row_cells(view, self.now or view.created_at, agent, sample),
            )
            self._drawn[key] = drawn
        return drawn[3]

    def line_version(self, key: str) -> object:
        """A row is drawn again when its view (the store hands back the same object for a
        container that did not change), its agent's activity or its heartbeat sample is another,
        or `now` moved: no per-row bookkeeping on a refresh, which at 10,000 heartbeating rows
        cost the main thread a loop over every row each second."""
        return (self._views[key], self._agents.get(key), self._samples.get(key), self.now)

    def row_version(self, key: str) -> object:
        """Changes whenever the row's container (its agent's activity, its heartbeat) changed:
        untouched rows keep theirs (None when not shown)."""
        view = self._views.get(key)
        return None if view is None else (view, self._agents.get(key), self._samples.get(key))

    def show(
        self,
        views: list[ContainerView],
        now: datetime,
        prepared: PreparedRows | None = None,
        agents: Mapping[str, AgentState] | None = None,
        samples: Samples | None = None,
    ) -> None:
        """Bring the table in line with `views`: the rows whose container (or agent's activity,
        `agents`, or heartbeat sample, `samples`) changed are drawn again (only those on screen
        are), rows come and go; nothing is cleared, so the cursor and the scroll position stay.
        `prepared` (from `prepare_rows` for these views) brings the orders made in the refresh
        thread; a view that is not the one it was prepared from (a row marked as terminating) is
        put in place here."""
        self._all = views
        if now != self.now:
            self._drawn.clear()  # ages and costs move with `now`
        self.now = now
        self._agents = agents or {}
        self._samples = samples or {}
        same = prepared is not None and prepared.source is views  # no row marked since
        fresh = prepared.views if same else {c.id: c for c in views}
        if not same and prepared is not None and len(prepared.views) == len(fresh):
            got = prepared.views.get
            same = all(got(k) is c for k, c in fresh.items())
        for key in [k for k in self._drawn if k not in fresh]:
            del self._drawn[key]
        before = self._views
        self._views = prepared.views if same else fresh  # one dict: orderings made from it match
        if self._views is not before:
            self._next_generation(prepared if same else None)
        if prepared is not None:
            wanted = {self.sort_column, next_column(self.sort_column)}
            for column in prepared.orderings:
                self._ordering_gen[column] = prepared.seq
            orderings = {**self._orderings, **prepared.orderings}
            self._orderings = {c: o for c, o in orderings.items() if c in wanted}
            if prepared.matches is not None and same:
                # for the text typed, or another's: its haystacks are these rows' all the same
                self._keep_matches(prepared.matches, prepared.seq)
        if not self.filter and not self.searching:
            self._keep_matches(None)  # it would keep a refresh's views (and haystacks) alive
        if same and prepared.settings == self.settings:
            self.order_pending = False
            self._show_order(prepared.order)  # made in the refresh thread for these rows
            return
        self._apply_order()

    def _next_generation(self, prepared: PreparedRows | None) -> None:
        """New views shown: the prepared rows' (what was read whole since their base is known) or
        ones of their own (rows marked as terminating: nothing is known to lead to them)."""
        if prepared is None:
            self._gen = -next(_GENERATION)
            return
        self._gen = prepared.seq
        self._rereads[prepared.seq] = _Link(prepared.base, prepared.reread, prepared.retexted)
        if len(self._rereads) > REREADS_KEPT:
            del self._rereads[min(self._rereads)]

    def _reread_since(self, generation: int | None) -> set[str] | None:
        """The rows read whole between the views of `generation` and those shown: for a column no
        heartbeat moves, the only rows whose key can have moved (`KEYS_KEPT_BY_HEARTBEATS`), so an
        ordering made a refresh or two ago is put right by keying those, not every row (when every
        view is new each refresh: a fleet whose heartbeats move every row's health). None when
        that is not known."""
        return self._moved_since(generation, "reread")

    def _retexted_since(self, generation: int | None) -> set[str] | None:
        """The rows whose text a filter reads may have moved between the views of `generation`
        and those shown (a filter's matches are put right by matching those). None: not known."""
        return self._moved_since(generation, "retexted")

    def _moved_since(
        self, generation: int | None, kind: Literal["reread", "retexted"]
    ) -> set[str] | None:
        """The union of one kind of rows along the refreshes from `generation` to the views
        shown (`_rereads`); None when a link is not known."""
        rows: set[str] = set()
        at = self._gen
        while at != generation:
            link = self._rereads.get(at)
            moved = getattr(link, kind) if link is not None else None
            if link is None or link.base is None or moved is None:
                return None
            rows |= moved
            at = link.base
        return rows

    def _changed_for(self, column: str, kept: Ordering | None) -> set[str] | None:
        """The rows to key again for `kept` (None: those whose view is another object)."""
        if kept is None or kept.views is self._views or column not in KEYS_KEPT_BY_HEARTBEATS:
            return None
        return self._reread_since(self._ordering_gen.get(column))

    @staticmethod
    def filter_problems(text: str) -> list[str]:
        return ContainerFilter.parse(text).problems()

    def open_search(self) -> None:
        """The filter bar opened on this pane: the rows' haystacks (the text free words are looked
        for in) are made by a worker now and kept up to date by each refresh while it is open, so
        the first keystroke is matched at once (`_matches_for`)."""
        self.searching = True
        kept = self._matches
        if self.now is not None and (kept is None or not kept.haystacks):
            self._start_matching(self.filter.text)

    def close_search(self) -> None:
        self.searching = False
        if not self.filter:
            self._keep_matches(None)

    def set_filter(self, text: str) -> None:
        """Filter the rows: matched here when the rows' haystacks are kept (a few ms at 10,000
        rows, so the rows come with the keystroke's echo), else past SYNC_ROWS rows in a thread
        worker (typing never waits; the last text typed wins) and shown when made."""
        self.filter = ContainerFilter.parse(text)
        if self.now is not None:
            self._apply_order()

    def action_clear_filter(self) -> None:
        if self.filter:
            self.set_filter("")
            self.post_message(self.FilterCleared())

    # -- sorting ---------------------------------------------------------------------------

    def sort_by(self, column: str, *, reverse: bool | None = None) -> None:
        """Sort by `column`: the ordering the refresh thread made for it (the sort column's, read
        backwards for a reverse, or the next one in `s`'s cycle) is swapped in; another one is
        made by a thread worker and shown when made. The next column's is made ahead."""
        if column not in COLUMN_KEYS:
            return
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self.set_header(self._header_cells())
        self._apply_order()
        if len(self._views) > self.SYNC_ROWS:  # ready for the next `s`, AHEAD_SECONDS after
            self.set_timer(AHEAD_SECONDS, partial(self._ordering_for, next_column(column)))

    def action_cycle_sort(self) -> None:
        self.sort_by(next_column(self.sort_column), reverse=False)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def on_line_table_header_selected(self, event: LineTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column)

    # -- orders: swapped in when ready, else made by a worker -------------------------------

    def _apply_order(self, *, wait: bool = False) -> None:
        """Show the order for the sort and filter asked for when its parts are ready (`wait`:
        made here if not). Until then the rows stay where they are (those gone leave, new ones
        wait for their place) and `order_pending` says so."""
        o = self._ordering_for(self.sort_column, wait=wait)
        m = self._matches_for(self.filter.text, wait=wait) if self.filter else None
        if o is None or (self.filter and m is None):
            self.order_pending = True
            self._show_order([k for k in self.ordered_keys if k in self._views], pending=True)
        else:
            self.order_pending = False
            self._show_order(shown_order(o, self.sort_reverse, m))

    def _show_order(self, order: list[str], *, pending: bool = False) -> None:
        if not pending:
            self.matched = len(order)
        if order != self.ordered_keys:
            self.set_order(order)
        else:
            self.refresh()
        self.retitle()
        self.post_message(self.Changed())

    def retitle(self) -> None:
        """The pane's title and subtitle, set as its rows change: in the frame that shows a sort
        or a filter keystroke's rows (set later, from the `Changed` message, they cost that key a
        second repaint of the whole pane: bench/tui.py). Nothing before the first view."""
        if not self.summary:
            return
        shown = (
            f"filter {self.filter.text!r}: {self.matched} of {len(self._all)} shown · "
            if self.filter
            else ""
        )
        hidden = (
            f" · {plural(len(self.hidden_columns), 'column')} hidden →"
            if self.hidden_columns
            else ""
        )
        titles = (
            f"Containers ({len(self._all)})",
            f"{shown}{self.summary} · sort {self.sort_column}{hidden}",
        )
        if titles != self._titles:  # Textual repaints the whole pane on each, changed or not
            self._titles = titles
            self.border_title, self.border_subtitle = titles

    def _ordering_for(self, column: str, *, wait: bool = False) -> Ordering | None:
        """The column's ordering of the rows shown, if ready or cheap to make here."""
        views, agents, kept = self._views, self._agents, self._orderings.get(column)
        samples = self._samples
        if (
            kept is not None
            and kept.views is views
            and (column != "agent" or kept.agents is agents)
            and (column not in SAMPLE_COLUMNS or kept.samples is samples)
        ):
            return kept
        small = wait or len(views) <= self.SYNC_ROWS
        changed = self._changed_for(column, kept)
        limit = None if small else self.PATCH_ROWS
        made = ordering(views, column, agents, kept, changed, samples=samples, limit=limit)
        if made is None:
            self._start_ordering(column)
        else:
            self._orderings[column] = made
            self._ordering_gen[column] = self._gen
        return made

    def _matches_for(self, text: str, *, wait: bool = False) -> Matches | None:
        """The filter's matches among the rows shown, if ready or cheap to make here: with the
        rows' haystacks kept (another text's lend theirs), or a filter that needs none."""
        views, kept = self._views, self._matches
        if kept is not None and kept.text == text and kept.views is views:
            return kept
        cheap = (
            wait
            or len(views) <= self.SYNC_ROWS
            or (kept is not None and bool(kept.haystacks))
            or not ContainerFilter.parse(text).needs_haystacks
        )
        limit = None if cheap else self.PATCH_ROWS
        made = matches(views, text, kept, retexted=self._retexted_for(kept), limit=limit)
        if made is None:
            self._start_matching(text)
        else:
            self._keep_matches(made, self._gen)
        return made

    def _keep_matches(self, made: Matches | None, generation: int | None = None) -> None:
        """The filter's matches kept, and the generation of the views they are for."""
        self._matches, self._matches_gen = made, generation

    def _retexted_for(self, kept: Matches | None) -> set[str] | None:
        """The rows whose text may have moved since `kept`'s views (None: not known)."""
        if kept is None or kept.views is self._views:
            return None
        return self._retexted_since(self._matches_gen)

    def _start_ordering(self, column: str) -> None:
        if column in self._computing:
            return  # its result comes, and is brought up to date then
        self._computing.add(column)
        kept = self._orderings.get(column)
        job = [self._views, self._agents, kept, self._changed_for(column, kept), self._samples]
        generation = self._gen

        def make() -> None:
            views, agents, kept, changed, samples = handed(job)
            made = ordering(views, column, agents, kept, changed, samples=samples)
            self.post_message(self.OrderingMade(made, generation))

        self.run_worker(make, thread=True, group=f"order-{column}", exit_on_error=False)

    def _start_matching(self, text: str) -> None:
        job = [self._views, self._matches, self._retexted_for(self._matches)]
        generation = self._gen

        def make() -> None:
            views, kept, retexted = handed(job)
            made = matches(views, text, kept, retexted=retexted)
            if not get_current_worker().is_cancelled:
                self.post_message(self.MatchesMade(made, generation))

        # exclusive: a keystroke cancels the last one's matching (the last text typed wins)
        self.run_worker(make, thread=True, group="filter", exclusive=True, exit_on_error=False)

    def on_containers_table_ordering_made(self, event: OrderingMade) -> None:
        made = event.made
        self._computing.discard(made.column)
        kept = self._orderings.get(made.column)
        if kept is None or kept.views is not self._views:  # a refresh's is newer: keep that
            self._orderings[made.column] = made
            self._ordering_gen[made.column] = event.generation
        if self.order_pending:
            self._apply_order()

    def on_containers_table_matches_made(self, event: MatchesMade) -> None:
        made, kept = event.made, self._matches
        if made.text != self.filter.text or not (self.filter or self.searching):
            return  # a text typed over since: never shown (or the bar closed: not kept)
        if kept is None or kept.views is not self._views or made.views is self._views:
            self._keep_matches(made, event.generation)  # unless a refresh's for these rows came
        if self.order_pending:
            self._apply_order()

    def _header_cells(self) -> list[tuple[str, str]]:
        arrow = "▼" if self.sort_reverse else "▲"
        return [
            (f" {c.label}{arrow}", "bold") if c.key == self.sort_column else (f" {c.label}", "")
            for c in COLUMNS
        ]

    def select(self, container_id: str) -> bool:
        """Put the cursor on a container (and scroll to it); False if it is not shown."""
        try:
            row = self.row_index(container_id)
        except KeyError:
            return False
        self.move_cursor(row)
        return True


def fit_columns(avail: int) -> tuple[int, tuple[str, ...]]:
    """The task column's width and the columns hidden, for a pane `avail` cells wide."""
    natural = {c.key: c.width + 1 for c in COLUMNS}
    natural["task"] = TASK_WIDTH + 1
    hidden: list[str] = []

    def total(task: int) -> int:
        return sum(w for k, w in natural.items() if k not in hidden and k != "task") + (
            0 if "task" in hidden else task
        )

    for key in GIVE_WAY:
        if total(MIN_TASK + 1) <= avail:
            break
        hidden.append(key)
    task = max(MIN_TASK + 1, min(TASK_WIDTH + 1, avail - total(0)))
    return task, tuple(hidden)
