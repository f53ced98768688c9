"""The containers pane's orders, made where they cost nothing to a key press.

An order is two parts, each made in a thread (the refresh thread, or a worker of the table) and
kept while the rows it was made from stay: per sort column an `Ordering` (every row's key and
every id sorted by it) and per filter text a `Matches` (the ids it lets through). What a pane
shows is one ordering read forwards or backwards and walked through one match set
(`shown_order`): a list walk, so a sort key on the main thread swaps in what a thread made
instead of keying and sorting 10,000 rows (bench/tui.py: key to screen). A filter keystroke is
matched on the main thread when the rows' haystacks are kept (`ContainerFilter.select`: a few ms at
10,000 rows), so its rows come with its echo.

Each part is made again from the last one: only rows whose view is not the same object (or whose
agent's activity moved, for the AGENT column) are keyed or matched again, and a few moved rows
are put in place by bisection instead of sorting every row (`ordering`, `matches`).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from parhelia.state.agent_activity import AgentState
from parhelia.state.pacing import paced
from parhelia.state.samples import Samples
from parhelia.state.samples import moved as moved_samples
from parhelia.state.views import ContainerView
from parhelia.widgets.container_filter import ContainerFilter, haystack, haystack_values
from parhelia.widgets.formatting import SAMPLE_COLUMNS, order_key

Views = Mapping[str, ContainerView]
Agents = Mapping[str, AgentState]
_NONE: Samples = MappingProxyType({})  # a full read's views come with none: each holds its own
_BLANK = (True,)  # sorts before every key of a row without a value: (True, 0, id)


@dataclass(frozen=True)
class Ordering:
    """One sort column's order of the rows in `views`: each row's key (`order_key`) and every id
    ascending by it. Keys end with the id, so no two are equal and rows without a value (keys
    starting True) come last; reversed, those stay last (`shown_order`)."""

    column: str
    views: Views
    agents: Agents
    keys: Mapping[str, tuple]
    ascending: list[str]
    # the heartbeat samples beside `views` (`state/samples.py`)
    samples: Samples = field(default_factory=lambda: _NONE)

    def blank_from(self) -> int:
        """Where the rows without a value start."""
        return bisect_left(self.ascending, _BLANK, key=self.keys.__getitem__)


@dataclass(frozen=True)
class Matches:
    """The ids of `views` that the filter `text` lets through, and each view's `haystack` (kept
    while its view stays: the next keystroke's words are looked for in them, not made again)."""

    text: str
    views: Views
    ids: frozenset[str]
    haystacks: Mapping[str, str]


def changed_rows(views: Views, before: Views) -> tuple[set[str], set[str]]:
    """(ids whose view is new or another object, ids gone) between two sets of views."""
    changed = {k for k, c in views.items() if before.get(k) is not c}
    return changed, before.keys() - views.keys()


def agents_changed(before: Agents, now: Agents) -> set[str]:
    """The containers whose agent's activity is not what it was (the AGENT cell and key move)."""
    return {k for k in before.keys() | now.keys() if before.get(k) != now.get(k)}


def ordering(
    views: Views,
    column: str,
    agents: Agents,
    previous: Ordering | None = None,
    changed: Collection[str] | None = None,
    *,
    samples: Samples | None = None,
    limit: int | None = None,
    pause: Callable[[], object] | None = None,
) -> Ordering | None:
    """`column`'s ordering of `views`, made from `previous` when it is the same column's: only
    the rows in `changed` (None: every row whose view is another object than `previous`'s), and
    for a column read from heartbeat samples those whose sample is another tuple, are keyed
    again. A few moved rows are put in place, more mean one sort. With `limit`, None when more
    than `limit` rows would be keyed again (the main thread leaves that to a thread). `pause` is
    called between slices of the rows keyed (`state/pacing.py`)."""
    samples = _NONE if samples is None else samples
    sample = samples.get
    if previous is None or previous.column != column:
        if limit is not None and len(views) > limit:
            return None
        keys = {
            k: order_key(c, column, agents.get(k), sample(k))
            for k, c in paced(views.items(), pause)
        }
        return Ordering(column, views, agents, keys, sorted(keys, key=keys.__getitem__), samples)
    gone: set[str] = set()
    if changed is None:
        changed, gone = changed_rows(views, previous.views)
    elif views.keys() != previous.views.keys():
        gone = previous.views.keys() - views.keys()
        changed = set(changed) | (views.keys() - previous.views.keys())
    if column == "agent":
        changed = set(changed) | (agents_changed(previous.agents, agents) & views.keys())
    elif column in SAMPLE_COLUMNS and samples is not previous.samples:
        changed = set(changed) | (moved_samples(previous.samples, samples) & views.keys())
    if limit is not None and len(changed) + len(gone) > limit:
        return None
    old = previous.keys
    moved = {}
    for k in paced(changed, pause):
        c = views.get(k)
        if c is not None:
            key = order_key(c, column, agents.get(k), sample(k))
            if old.get(k) != key:
                moved[k] = key
    if not moved and not gone:  # a heartbeat moves no row sorted by age: the same order
        return Ordering(column, views, agents, previous.keys, previous.ascending, samples)
    keys = dict(old)
    if len(moved) + len(gone) > max(64, len(views) // 32):
        for k in gone:
            del keys[k]
        keys.update(moved)
        # sorted from the last order, not the keys' own: a heartbeat cycle stamps every row
        # with one time, which moves every HB key and no row's place (one pass, not a sort)
        kept = [k for k in previous.ascending if k in keys] if gone else previous.ascending
        new = [k for k in moved if k not in old]
        ascending = sorted(kept + new, key=keys.__getitem__)
        if ascending == previous.ascending:  # the same list: the pane's order is kept as it is
            ascending = previous.ascending
        return Ordering(column, views, agents, keys, ascending, samples)
    ascending = list(previous.ascending)
    by_key = keys.__getitem__
    for k in [*gone, *(k for k in moved if k in old)]:
        del ascending[bisect_left(ascending, old[k], key=by_key)]
        del keys[k]
    for k, key in moved.items():
        keys[k] = key
        insort(ascending, k, key=by_key)
    return Ordering(column, views, agents, keys, ascending, samples)


def matches(
    views: Views,
    text: str,
    previous: Matches | None = None,
    changed: Collection[str] | None = None,
    *,
    limit: int | None = None,
    retexted: Collection[str] | None = None,
) -> Matches | None:
    """The ids of `views` that `text` lets through, made from `previous`: when it is the same
    text's only the rows in `changed` (None: those whose view is another object) are matched
    again; another text's lends its haystacks of the views whose text stayed. With `limit`, None
    when more than `limit` rows would be matched. An empty text's matches let nothing through
    and only carry the haystacks, made ahead for the first word typed (`ContainersTable`).
    `retexted`: the rows whose text a filter reads may differ from `previous.views`' (the rest
    are other objects of the same text: a heartbeat's), as `_matched_since` uses it."""
    f = ContainerFilter.parse(text)
    if retexted is not None and previous is not None and previous.views is not views:
        return _matched_since(views, text, f, previous, retexted, limit)
    same = previous is not None and previous.text == text
    if not same and limit is not None and len(views) > limit:
        return None
    gone: set[str] = set()
    if not same:
        changed = views.keys()
    elif changed is None:
        changed, gone = changed_rows(views, previous.views)
    elif views.keys() != previous.views.keys():
        gone = previous.views.keys() - views.keys()
        changed = set(changed) | (views.keys() - previous.views.keys())
    if limit is not None and len(changed) + len(gone) > limit:
        return None
    if same and not changed and not gone:
        return Matches(text, views, previous.ids, previous.haystacks)
    if not f:
        return Matches(text, views, frozenset(), _haystacks(views, previous, changed, gone))
    if not same and previous is not None and previous.views is views and _narrows(previous, f):
        changed = previous.ids  # typed on: only what the last text let through can pass
    lent = previous is not None and bool(previous.haystacks)
    hays = _haystacks(views, previous, changed, gone) if f.needs_haystacks or lent else {}
    # another text's rows are all the views' (or, typed on, the last matches among them)
    hit = f.select(views, changed if not same else (k for k in changed if k in views), hays)
    if not same:
        return Matches(text, views, frozenset(hit), hays)
    missed = (set(changed) - hit) | gone
    return Matches(text, views, (previous.ids - missed) | hit, hays)


def _matched_since(
    views: Views,
    text: str,
    f: ContainerFilter,
    previous: Matches,
    retexted: Collection[str],
    limit: int | None,
) -> Matches | None:
    """`matches` when only the rows in `retexted` (and new ones) can read otherwise than in
    `previous.views`: the others keep their haystacks, and for the same text their verdicts; a
    text typed on looks only at what the last one let through and at those rows. Under a
    heartbeating fleet every view is another object each refresh, and a keystroke after one
    matched every row again on the main thread (bench/tui.py)."""
    before = previous.views
    gone = before.keys() - views.keys()
    dirty = {k for k in retexted if k in views} | (views.keys() - before.keys())
    same = previous.text == text
    narrows = not same and bool(f) and _narrows(previous, f)
    if same:
        candidates: Collection[str] = dirty
    elif narrows:
        candidates = (previous.ids - gone) | dirty
    else:
        candidates = views.keys()
    if limit is not None and len(candidates) + len(gone) > limit:
        return None
    hays = previous.haystacks
    if hays and (dirty or gone):
        hays = {k: h for k, h in hays.items() if k not in gone} if gone else dict(hays)
        for k in dirty:
            hays[k] = haystack(views[k])
    elif not hays and (f.needs_haystacks or not f):  # an empty text's carry only haystacks
        hays = {k: haystack(c) for k, c in views.items()}
    if not f:
        return Matches(text, views, frozenset(), hays)
    hit = f.select(views, candidates, hays)
    if same:
        return Matches(text, views, (previous.ids - gone - dirty) | hit, hays)
    return Matches(text, views, frozenset(hit), hays)


def _haystacks(
    views: Views, previous: Matches | None, changed: Collection[str], gone: Collection[str]
) -> dict[str, str]:
    """Each view's `haystack`: the previous one's where the view is the same object, or one whose
    text is the same (a heartbeat's copy)."""
    if previous is None or not previous.haystacks:
        return {k: haystack(c) for k, c in views.items()}
    kept, before = previous.haystacks, previous.views
    if before is views:
        return kept
    if len(changed) + len(gone) < len(views) // 4 and previous.views.keys() == views.keys():
        hays = dict(kept)
        for k in changed:
            if k in views:
                hays[k] = _haystack_from(views[k], before[k], kept[k])
        return hays
    return {
        k: _haystack_from(c, before[k], kept[k]) if k in before else haystack(c)
        for k, c in views.items()
    }


def _haystack_from(c: ContainerView, was: ContainerView, hay: str) -> str:
    """`hay` (the haystack of `was`) when `c` has the same text, else `c`'s made. A heartbeat's
    copy of a view shares its strings: compared by identity first."""
    if c is was or (
        c.state is was.state
        and c.task_prompt is was.task_prompt
        and c.sandbox_id is was.sandbox_id
        and c.task_id is was.task_id
        and c.gpu is was.gpu
        and c.health == was.health
    ):
        return hay
    return hay if haystack_values(c) == haystack_values(was) else haystack(c)


def _narrows(previous: Matches, f: ContainerFilter) -> bool:
    """Whether whatever `f` lets through the last text let through too: the same field terms,
    and each of its words inside one of `f`'s (`numb` -> `number 1`). An empty text's matches
    let nothing through: nothing narrows them."""
    before = ContainerFilter.parse(previous.text)
    return (
        bool(before)
        and before.terms == f.terms
        and all(any(o in w for w in f.words) for o in before.words)
    )


def shown_order(o: Ordering, reverse: bool, m: Matches | None) -> list[str]:
    """The ids shown: the ordering forwards or backwards (rows without a value last either way),
    only those `m` lets through (all without a filter)."""
    ids = o.ascending
    if reverse:
        blank = o.blank_from()
        ids = ids[blank - 1 :: -1] + ids[blank:] if blank else list(ids)
    if m is None:
        return list(ids) if ids is o.ascending else ids
    through = m.ids
    return [k for k in ids if k in through]
