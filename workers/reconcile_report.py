"""What one reconcile cycle did: the report `parhelia reconciler run` prints and the daemon logs,
and the `ReconcilerRun` row it is kept as (`reconciler status` reads those)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from parhelia.state.models import ReconcilerRun


@dataclass
class ReconcileReport:
    """One cycle, as `parhelia reconciler run` prints it and the daemon logs it."""

    started_at: datetime
    acted: bool = True
    holder: str = ""
    backends: list[str] = field(default_factory=list)
    listed: int = 0
    known: int = 0
    adopted: int = 0
    orphans: int = 0
    in_grace: int = 0
    terminated: int = 0
    corrections: int = 0
    marked_stale: int = 0
    orphans_terminated: int = 0
    conflicts: int = 0
    foreign: int = 0  # running sandboxes of another control plane: counted, never touched
    duration_ms: float = 0.0
    backend_ms: float = 0.0
    error: str | None = None
    error_code: str | None = None
    next_delay_seconds: float = 0.0
    # the earliest moment a sandbox seen in grace can be recorded as an orphan (the next cycle's due)
    grace_ends_at: datetime | None = None
    # what the budget guard's pass after this cycle did (`reconciler run` says it in one answer)
    guard_actions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["started_at"] = self.started_at.isoformat()
        out["grace_ends_at"] = self.grace_ends_at.isoformat() if self.grace_ends_at else None
        return out

    def summary(self) -> str:
        if not self.acted:
            return "reconcile: another process holds the lease; read-only"
        head = (
            f"reconcile: listed {self.listed} known {self.known} adopted {self.adopted} "
            f"orphans {self.orphans} terminated {self.terminated} corrections {self.corrections} "
            f"stale {self.marked_stale} in {self.duration_ms:.0f} ms"
        )
        if self.in_grace:
            head += f"; {self.in_grace} unrecorded in their orphan grace"
        if self.foreign:
            head += f"; {self.foreign} of another control plane (not touched)"
        return head + (f"; {self.error_code}: {self.error}" if self.error else "")


def run_row(report: ReconcileReport, finished: datetime) -> ReconcilerRun:
    """The cycle as the row `reconciler status` and the dashboard read back."""
    return ReconcilerRun(
        started_at=report.started_at,
        finished_at=finished,
        duration_ms=report.duration_ms,
        holder=report.holder[:128],
        backends=",".join(report.backends)[:64],
        listed=report.listed,
        known=report.known,
        adopted=report.adopted,
        orphans=report.orphans,
        terminated=report.terminated,
        corrections=report.corrections,
        marked_stale=report.marked_stale,
        error=report.error,
        error_code=report.error_code,
    )
