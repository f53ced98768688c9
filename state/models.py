"""SQLModel tables of the control plane. Every timestamp is timezone-aware UTC.

Indexes are declared here beside the queries that need them (see `Store`). Heartbeats have their
own table with retention; events are for changes only.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Table,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel
from sqlmodel.main import SQLModelConfig

from parhelia.state.enums import ContainerState, EventLevel, EventSource, Health, TaskStatus
from parhelia.state.timeutil import as_utc, utcnow


class UTCDateTime(TypeDecorator):
    """Returns aware UTC whatever the database. SQLite keeps no zone, so there it stores naive UTC;
    PostgreSQL stores `timestamptz` (aware values, compared as instants)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                "naive datetime given to the store; use parhelia.state.timeutil.utcnow()"
            )
        value = as_utc(value)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


class JSONDocumentType(TypeDecorator):
    """JSON documents: `JSONB` on PostgreSQL (binary, indexable), SQLite's JSON text elsewhere. The
    migrations use the same type, so both databases get the same schema from one chain.

    A decorator rather than `JSON().with_variant(JSONB(), "postgresql")`: JSONB is imported only
    when a PostgreSQL dialect asks for it, so a command on SQLite never imports SQLAlchemy's
    PostgreSQL dialect (a tenth of a second of every read command's start-up; bench/cli.py)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        # `col["key"]` is a JSON path, not a document to encode (SQLAlchemy's TypeDecorator notes)
        return self.impl_instance.coerce_compared_value(op, value)


JSONDocument = JSONDocumentType()


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


CONTAINER_ID_RE = re.compile(r"c-[0-9a-f]{8}")


def new_container_id() -> str:
    return new_id("c")


def is_container_id(value: object) -> bool:
    """Whether `value` has the shape `new_container_id` makes: a tag like `bobs-job-42` or
    `c-../../x` on someone's sandbox is not a Parhelia container id, whatever else it carries."""
    return isinstance(value, str) and CONTAINER_ID_RE.fullmatch(value) is not None


def new_plane_id() -> str:
    """A store's control-plane id (`cp-` + 16 hex), made once on its first open."""
    return f"cp-{secrets.token_hex(8)}"


def new_task_id() -> str:
    return new_id("t")


# Pydantic builds a table's validator and serializer on first use, not at import: SQLModel fills a
# table's rows without validating, and the 8 schemas were a seventh of every command's import of
# this module (bench/cli.py). `model_dump`, `model_validate` build theirs when first called.
LAZY_SCHEMA = SQLModelConfig(defer_build=True)


def _ts(nullable: bool = True, **kw: Any) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, **kw)


class Task(SQLModel, table=True):
    model_config = LAZY_SCHEMA
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_status_created", "status", "created_at"),)

    id: str = Field(default_factory=new_task_id, primary_key=True, max_length=32)
    prompt: str
    status: str = Field(default=TaskStatus.PENDING.value, max_length=16)
    backend: str = Field(max_length=16)
    cpu: float = 1.0
    memory_mib: int = 2048
    gpu: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=32)
    timeout_minutes: int = 60
    estimated_cost_usd: float = 0.0
    retry_of: str | None = Field(default=None, foreign_key="tasks.id", max_length=32, index=True)
    attempt: int = 1
    session_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    finished_at: datetime | None = _ts()
    actor: str | None = Field(default=None, max_length=64)


class Container(SQLModel, table=True):
    model_config = LAZY_SCHEMA
    __tablename__ = "containers"
    __table_args__ = (
        UniqueConstraint("backend", "sandbox_id", name="uq_containers_backend_sandbox"),
        Index("ix_containers_state", "state"),
        Index("ix_containers_health", "health"),
        Index("ix_containers_task", "task_id"),
        # No index on last_heartbeat_at or last_sample_at: every heartbeat cycle rewrites both
        # for every running container, and `Store.prune_heartbeats` (the one filter on
        # last_sample_at) scans a few thousand rows at most (migration 0003).
        Index("ix_containers_terminated", "terminated_at"),
    )

    id: str = Field(default_factory=new_container_id, primary_key=True, max_length=32)
    backend: str = Field(max_length=16)
    sandbox_id: str | None = Field(default=None, max_length=128)
    task_id: str | None = Field(default=None, foreign_key="tasks.id", max_length=32)
    session_id: str | None = Field(default=None, max_length=64)
    state: str = Field(default=ContainerState.CREATED.value, max_length=16)
    health: str = Field(default=Health.UNKNOWN.value, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    started_at: datetime | None = _ts()
    terminated_at: datetime | None = _ts()
    exit_code: int | None = None
    termination_reason: str | None = Field(default=None, max_length=64)
    terminated_by: str | None = Field(default=None, max_length=64)
    last_heartbeat_at: datetime | None = _ts()
    missed_heartbeats: int = 0
    cpu_cores: float = 1.0
    memory_mib: int = 2048
    gpu: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=32)
    cost_rate_per_hour: float = 0.0
    cost_accrued_usd: float = 0.0
    tags: dict = Field(default_factory=dict, sa_column=Column(JSONDocument, nullable=False))
    meta: dict = Field(
        default_factory=dict, sa_column=Column("metadata", JSONDocument, nullable=False)
    )
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # The latest stored heartbeat sample (by ts), kept by `Store.record_heartbeats` in the same
    # statement that updates the heartbeat columns and cleared by `Store.prune_heartbeats` when
    # that sample is pruned, so the dashboard reads it here instead of searching `heartbeats`.
    # Unlike `last_heartbeat_at` it follows every stored sample, agent alive or not.
    last_sample_at: datetime | None = _ts()
    last_cpu_percent: float | None = None
    last_memory_mib: float | None = None
    last_memory_percent: float | None = None
    last_agent_alive: bool | None = None


class Heartbeat(SQLModel, table=True):
    model_config = LAZY_SCHEMA
    __tablename__ = "heartbeats"
    __table_args__ = (
        Index("ix_heartbeats_container_ts", "container_id", "ts"),
        Index("ix_heartbeats_ts", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # On PostgreSQL the same rules are kept by statement-level triggers (migration 0007)
    container_id: str = Field(foreign_key="containers.id", ondelete="CASCADE", max_length=32)
    ts: datetime = Field(sa_type=UTCDateTime, nullable=False)
    cpu_percent: float | None = None
    memory_mib: float | None = None
    memory_percent: float | None = None
    disk_percent: float | None = None
    uptime_seconds: float | None = None
    agent_alive: bool = True


# On SQLite a heartbeat cycle's samples land here first, in a table without indexes, and are
# merged into `heartbeats` in container order once many cycles have gathered (`state/bulk.py`):
# inserted one cycle at a time, each sample dirtied its container's leaf of the by-container
# index, one page per container per cycle (bench/heartbeat_floor.py's "staging" floor). Readers of
# history read both tables; PostgreSQL copies samples into `heartbeats` directly.
HEARTBEATS_STAGED = Table(
    "heartbeats_staged",
    SQLModel.metadata,
    *(c._copy() for c in Heartbeat.__table__.columns),
    ForeignKeyConstraint(["container_id"], ["containers.id"], ondelete="CASCADE"),
)

# On SQLite, a count that moves with every container row inserted, updated or deleted, by whatever
# writer (triggers, migration 0009): a dashboard refresh reads its 10,000 narrow rows again only
# when it moved, not after every commit of the file (`state/live_views.py`). One row (`id` 1),
# made by the first container write. Derived: never copied (`state/copy.py`). PostgreSQL has the
# table but no triggers: its refresh goes by the shown rows' `xmin` (`live_views._pg_version`).
CONTAINERS_REVISION = Table(
    "containers_revision",
    SQLModel.metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
)


class Event(SQLModel, table=True):
    model_config = LAZY_SCHEMA
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_ts", "ts"),
        Index("ix_events_container_level_ts", "container_id", "level", "ts"),
        Index("ix_events_container_ts", "container_id", "ts"),
        Index("ix_events_task_ts", "task_id", "ts"),
        Index("ix_events_type_ts", "type", "ts"),
        Index("ix_events_level_ts", "level", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    type: str = Field(max_length=48)
    level: str = Field(default=EventLevel.INFO.value, max_length=8)
    container_id: str | None = Field(default=None, max_length=32)
    task_id: str | None = Field(default=None, max_length=32)
    old_value: str | None = Field(default=None, max_length=64)
    new_value: str | None = Field(default=None, max_length=64)
    message: str = ""
    details: dict = Field(default_factory=dict, sa_column=Column(JSONDocument, nullable=False))
    source: str = Field(default=EventSource.SYSTEM.value, max_length=16)
    actor: str | None = Field(default=None, max_length=64)


class ReconcilerRun(SQLModel, table=True):
    model_config = LAZY_SCHEMA
    __tablename__ = "reconciler_runs"
    __table_args__ = (Index("ix_reconciler_runs_started", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    finished_at: datetime | None = _ts()
    duration_ms: float = 0.0
    holder: str = Field(default="", max_length=128)
    backends: str = Field(default="", max_length=64)
    listed: int = 0
    known: int = 0
    adopted: int = 0
    orphans: int = 0
    terminated: int = 0
    corrections: int = 0
    marked_stale: int = 0
    error: str | None = None
    error_code: str | None = Field(default=None, max_length=8)


class Lease(SQLModel, table=True):
    """One row per loop ("reconciler"): who runs it, until when, and when it runs next."""

    model_config = LAZY_SCHEMA
    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=128)
    acquired_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    next_run_at: datetime | None = _ts()
    interval_seconds: float = 60.0
    # the holder as a process (`state/process_owner.py`): a dead one on this host is taken over
    host: str | None = Field(default=None, max_length=128)
    pid: int | None = None
    pid_started: float | None = None
    # set while a cycle runs: a cycle older than its interval shows the view as stale
    cycle_started_at: datetime | None = _ts()


class Setting(SQLModel, table=True):
    """Settings that persist in the store (budget ceiling, policies set from the CLI)."""

    model_config = LAZY_SCHEMA
    __tablename__ = "settings"

    key: str = Field(primary_key=True, max_length=64)
    value: Any = Field(sa_column=Column(JSONDocument, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_by: str | None = Field(default=None, max_length=64)


def new_checkpoint_id() -> str:
    return new_id("ck")


class Checkpoint(SQLModel, table=True):
    """A snapshot of an agent's workspace (`state/checkpoints.py`, `workers/checkpoints.py`).

    `ref` is the backend's name for it: `sha256:<manifest>` in the local archive, a Modal image
    id. No foreign keys: a checkpoint outlives nothing it names, and its row is written only once
    the snapshot exists."""

    model_config = LAZY_SCHEMA
    __tablename__ = "checkpoints"
    __table_args__ = (
        Index("ix_checkpoints_container_created", "container_id", "created_at"),
        Index("ix_checkpoints_task_created", "task_id", "created_at"),
    )

    id: str = Field(default_factory=new_checkpoint_id, primary_key=True, max_length=32)
    container_id: str = Field(max_length=32)
    task_id: str | None = Field(default=None, max_length=32)
    backend: str = Field(max_length=16)
    ref: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    trigger: str = Field(default="manual", max_length=16)
    size_bytes: int = Field(default=0, sa_type=BigInteger)  # PostgreSQL: over 2 GiB fits
    files: int = 0
    note: str | None = None
    actor: str | None = Field(default=None, max_length=64)
