"""The `/` filter of the containers pane: free text plus `state:`, `health:`, `task:` terms.

Pure, so the table, the bulk-terminate preview (`T`) and the tests agree on what matches.
Terms are ANDed; a field term may list alternatives with commas (`state:running,orphaned`);
a leading `!` negates a field term (`health:!healthy`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from parhelia.state.views import ContainerView

FIELDS = ("state", "health", "task", "backend", "gpu")
# The values a field term may name (a prefix of one is fine: `state:run`); free-form fields
# (task, gpu) take anything.
VALUES = {
    "state": ("created", "running", "stopped", "terminated", "orphaned", "terminating"),
    "health": ("healthy", "degraded", "unhealthy", "dead", "unknown"),
    "backend": ("local", "modal"),
}


def field_problems(text: str, fields: dict[str, tuple[str, ...] | None]) -> list[str]:
    """What a filter names that does not exist, with what does: `state:bogus` -> the valid states.
    `fields` maps each field to its valid values (None: anything)."""
    out = []
    for token in text.split():
        name, sep, value = token.partition(":")
        if not sep or not name.isidentifier():
            continue
        name = name.lower()
        if name not in fields:
            out.append(f"unknown field {name!r} (fields: {', '.join(fields)})")
            continue
        valid = fields[name]
        for v in value.lstrip("!").lower().split(","):
            if v and valid is not None and not any(ok.startswith(v) for ok in valid):
                out.append(f"no {name} {v!r} (valid: {', '.join(valid)})")
    return out


@dataclass(frozen=True)
class ContainerFilter:
    text: str = ""
    words: tuple[str, ...] = ()
    terms: tuple[tuple[str, tuple[str, ...], bool], ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> ContainerFilter:
        words: list[str] = []
        terms: list[tuple[str, tuple[str, ...], bool]] = []
        for token in text.split():
            name, sep, value = token.partition(":")
            if sep and name.lower() in FIELDS and value:
                negate = value.startswith("!")
                values = tuple(v for v in value.lstrip("!").lower().split(",") if v)
                terms.append((name.lower(), values, negate))
            else:
                words.append(token.lower())
        return cls(text.strip(), tuple(words), tuple(terms))

    def problems(self) -> list[str]:
        return field_problems(self.text, {f: VALUES.get(f) for f in FIELDS})

    def __bool__(self) -> bool:
        return bool(self.words or self.terms)

    def matches(self, c: ContainerView, words_in: str | None = None) -> bool:
        """Whether `c` passes; `words_in` is its `haystack` when the caller keeps them."""
        for name, values, negate in self.terms:
            hit = _task_hit(c, values) if name == "task" else _field_hit(getattr(c, name), values)
            if hit == negate:
                return False
        if self.words:
            words_in = haystack(c) if words_in is None else words_in
            return all(w in words_in for w in self.words)
        return True

    @property
    def needs_haystacks(self) -> bool:
        """Whether `select` looks in the rows' haystacks (free words do; field terms do not)."""
        return bool(self.words)

    def select(
        self,
        views: Mapping[str, ContainerView],
        keys: Iterable[str],
        haystacks: Mapping[str, str],
    ) -> set[str]:
        """The keys among `keys` whose view passes (what `matches` says of each), for many rows
        at once: a state, health, backend or GPU term is decided once per distinct value, not
        once per row, and free words are looked for in `haystacks` (every key's, when there are
        words; a task term looks there before it makes the task's text). At 10,000 rows a few
        milliseconds, so a keystroke can be matched at once."""
        kept = list(keys)
        for name, values, negate in self.terms:
            if name == "task":
                passed = []
                for k in kept:
                    hay = haystacks.get(k)  # the task's text is part of it: looked in first
                    hit = (hay is None or any(v in hay for v in values)) and _task_hit(
                        views[k], values
                    )
                    if hit != negate:
                        passed.append(k)
                kept = passed
                continue
            get, verdict, passed = attrgetter(name), {}, []
            for k in kept:
                raw = get(views[k])
                ok = verdict.get(raw)
                if ok is None:
                    ok = verdict[raw] = _field_hit(raw, values) != negate
                if ok:
                    passed.append(k)
            kept = passed
        for w in self.words:
            kept = [k for k in kept if w in haystacks[k]]
        return set(kept)


def _field_hit(raw: str | None, values: tuple[str, ...]) -> bool:
    """A field term's test of one value: it is, or starts with, one of `values` (none: "none")."""
    subject = (raw or "none").lower()
    return any(subject == v or subject.startswith(v) for v in values)


def _task_hit(c: ContainerView, values: tuple[str, ...]) -> bool:
    subject = f"{c.task_id or ''} {c.task_prompt or ''}".lower()
    return any(v in subject for v in values)


# What a free word is looked for in: a view whose values of these are the same has the same
# haystack (a heartbeat's copy of a view keeps them all).
HAYSTACK_FIELDS = ("id", "sandbox_id", "state", "health", "task_id", "task_prompt", "gpu")
haystack_values = attrgetter(*HAYSTACK_FIELDS)


def haystack(c: ContainerView) -> str:
    """The text a free word is looked for in (lower case)."""
    return " ".join(str(v or "") for v in haystack_values(c)).lower()
