"""The checkpoints table through the `Store`'s sessions (its one door to the database): add,
look up by id or unique prefix (E202 otherwise), list, and delete with their events."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, delete, select

from parhelia.state.enums import ACTIVE_STATES
from parhelia.state.errors import ParheliaError
from parhelia.state.models import Checkpoint, Container, Event
from parhelia.state.store import Store

SHOWN = 5  # candidates named when a prefix is ambiguous


def add_checkpoint(store: Store, row: Checkpoint, events: Sequence[Event] = ()) -> Checkpoint:
    """The row and its events in one transaction."""
    with store.write() as s:
        s.add(row)
        s.add_all(events)
    return row


def get_checkpoint(store: Store, ref: str) -> Checkpoint:
    """By id, or by a unique prefix with or without `ck-`; E202 (E101 when ambiguous)."""
    prefix = ref if ref.startswith("ck-") else f"ck-{ref}"
    with store.read() as s:
        found = s.get(Checkpoint, ref)
        rows = (
            []
            if found is not None or len(prefix) < 4
            else list(
                s.scalars(
                    select(Checkpoint)
                    .where(col(Checkpoint.id).startswith(prefix, autoescape=True))
                    .order_by(Checkpoint.id)
                    .limit(SHOWN + 1)
                )
            )
        )
    if found is not None:
        return found
    if len(rows) > 1:
        ids = [r.id for r in rows[:SHOWN]]
        raise ParheliaError(
            "E101",
            f"{prefix!r} is ambiguous: it starts {', '.join(ids)}; give more characters",
            [f"parhelia checkpoint diff {ids[0]} {ids[1]}", "parhelia checkpoint list"],
        )
    if rows:
        return rows[0]
    raise ParheliaError(
        "E202",
        f"no checkpoint {ref!r}",
        ["parhelia checkpoint list", "parhelia checkpoint list --json"],
    )


def list_checkpoints(
    store: Store, *, container: str | None = None, task: str | None = None, limit: int = 100
) -> list[Checkpoint]:
    """Newest first."""
    q = select(Checkpoint).order_by(col(Checkpoint.created_at).desc(), col(Checkpoint.id).desc())
    if container:
        q = q.where(Checkpoint.container_id == container)
    if task:
        q = q.where(Checkpoint.task_id == task)
    with store.read() as s:
        return list(s.scalars(q.limit(limit)))


def delete_checkpoints(store: Store, ids: Sequence[str], events: Sequence[Event] = ()) -> None:
    if not ids:
        return
    with store.write() as s:
        s.exec(delete(Checkpoint).where(col(Checkpoint.id).in_(list(ids))))
        s.add_all(events)


def refs_in_use(store: Store, backend: str) -> set[str]:
    with store.read() as s:
        return set(s.scalars(select(Checkpoint.ref).where(Checkpoint.backend == backend)))


def restore_sources(store: Store) -> set[str]:
    """The checkpoints live containers were restored from: a restore in flight (its row is
    written before its sandbox, which then reads the archive) or the baseline of a running
    agent's diff view. Retention never deletes these."""
    with store.read() as s:
        metas = list(
            s.scalars(select(Container.meta).where(col(Container.state).in_(ACTIVE_STATES)))
        )
    return {m["restored_from"] for m in metas if isinstance(m, dict) and m.get("restored_from")}
