"""The budget guard: accrue cost, warn at 50/80/100 % once per period, and apply the policies.

Spend in a period is the final cost of containers that ended in it plus the cost so far of every
active one (runtime x rate, or the backend's billed cost when a row carries one in
`meta["billed_usd"]`). Policies: `warn` only warns; `block` refuses new dispatches past the ceiling
(`check_dispatch`, E603); `stop` also terminates running containers at 100 %. Independently: a maximum
runtime per container, and auto-terminate of dead containers and of orphans past their grace (off
by default). Every action is an event with actor `budget-guard`; terminations go through the
ControlPlane's terminate, which writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from parhelia.state.budget import BudgetConfig, crossed_threshold, period_start
from parhelia.state.bulk import RowChange
from parhelia.state.costs import current_cost, hours_until, runtime_hours
from parhelia.state.enums import ContainerState, EventLevel, EventSource, Health
from parhelia.state.errors import ParheliaError
from parhelia.state.event_log import make_event
from parhelia.state.event_types import EventType
from parhelia.state.projection import PricedRow
from parhelia.state.settings import Settings, budget_config, effective_budget, effective_value
from parhelia.state.store import Store
from parhelia.state.timeutil import age_seconds, utcnow

ACTOR = "budget-guard"
FIRED_KEY = "budget.warnings_fired"
# A row's stored cost is brought up to date once it lags by this much (a cent: below what a
# budget line shows); `_accrue` says why not every pass.
ACCRUE_USD = 0.01

Terminate = Callable[[str, str, str], object]


@dataclass(frozen=True)
class Spend:
    config: BudgetConfig
    period_start: datetime
    spent_usd: float
    burn_per_hour: float
    hours_to_ceiling: float | None

    @property
    def percent(self) -> float:
        c = self.config.ceiling_usd
        return 100.0 * self.spent_usd / c if c > 0 else 0.0


class BudgetGuard:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        terminate: Terminate | None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.terminate = terminate
        self.clock = clock

    # -- what the ControlPlane asks -------------------------------------------------------

    def spend(
        self,
        now: datetime | None = None,
        active: list[PricedRow] | None = None,
        cfg: BudgetConfig | None = None,
    ) -> Spend:
        now = now or self.clock()
        cfg = cfg or budget_config(self.store, self.settings)
        start = period_start(now, cfg.period)
        active = self.store.priced_active() if active is None else active
        live = sum(_cost(c, now) for c in active)
        spent = self.store.spent_since(start, now, []) + live
        burn = sum(c.cost_rate_per_hour for c in active)  # as the dashboard counts it
        return Spend(cfg, start, spent, burn, hours_until(spent, cfg.ceiling_usd, burn))

    def check_dispatch(self) -> None:
        """E603 when the policy is `block` or `stop` and the ceiling is reached."""
        s = self.spend()
        if s.config.policy in ("block", "stop") and s.spent_usd >= s.config.ceiling_usd:
            raise ParheliaError(
                "E603",
                f"budget policy '{s.config.policy}' blocks new work: "
                f"${s.spent_usd:.2f} spent of a ${s.config.ceiling_usd:.2f} ceiling",
                ["parhelia budget show", "parhelia budget set AMOUNT", "parhelia config show"],
                attempted="dispatch a task",
            )

    # -- one check --------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Accrue, warn, enforce. Returns one line per action taken (events hold the details)."""
        now = self.clock()
        active = self.store.priced_active()
        actions: list[str] = []
        self._accrue(active, now)
        stored = self.store.settings_with_prefix("")
        spend = self.spend(now, active, effective_budget(self.settings, stored))
        actions += self._warn(spend, now)

        def policy(name: str):
            return effective_value(f"policy.{name}", self.settings, stored)

        targets: dict[str, str] = {}
        if spend.config.policy == "stop" and spend.percent >= 100.0:
            targets.update(
                (c.id, "budget_stop") for c in active if c.state != ContainerState.CREATED
            )
        max_hours = float(policy("max_runtime_hours") or 0.0)
        if max_hours > 0:
            targets.update(
                (c.id, "max_runtime")
                for c in active
                if c.id not in targets and runtime_hours(c.started_at, None, now) > max_hours
            )
        if policy("dead") == "terminate":
            targets.update(
                (c.id, "dead") for c in active if c.id not in targets and c.health == Health.DEAD
            )
        if policy("orphans") == "terminate":
            grace = self.settings.reconciler.orphan_grace_seconds
            targets.update(
                (c.id, "orphan")
                for c in active
                if c.id not in targets
                and c.state == ContainerState.ORPHANED
                and (age_seconds(c.started_at or c.created_at, now) or 0.0) >= grace
            )
        from parhelia.workers.backends.base import needs_a_person  # not on the read path

        # An orphan without a plane tag may be another control plane's from before plane ids: no
        # policy stops it, only a person (`cleanup --orphans`, `containers terminate`).
        by_hand = {
            c.id for c in active if c.state == ContainerState.ORPHANED and needs_a_person(c.tags)
        }
        actions += self._terminate({k: v for k, v in targets.items() if k not in by_hand})
        return actions

    def _accrue(self, active: list[PricedRow], now: datetime) -> None:
        """Store each row's cost once it has moved by ACCRUE_USD: every view prices an active row
        at its moment anyway (`current_cost`), so the stored cost is a floor kept for the record
        (and the backend's billed cost, carried into it). Writing every row every pass rewrote
        10,000 rows a heartbeat interval, each stamping `updated_at`, and every open dashboard
        then read them all again whole."""
        changes = [
            RowChange(c.id, {"cost_accrued_usd": cost}, {"state": c.state})
            for c in active
            if (cost := _cost(c, now)) - c.cost_accrued_usd >= ACCRUE_USD
        ]
        if changes:
            self.store.apply_changes(changes)

    def _warn(self, spend: Spend, now: datetime) -> list[str]:
        cfg = spend.config
        hit = crossed_threshold(spend.percent, cfg.thresholds)
        key = spend.period_start.isoformat()
        fired_state = self.store.get_setting(FIRED_KEY) or {}
        fired = set(fired_state.get("fired", [])) if fired_state.get("period") == key else set()
        if hit is None or hit in fired:
            return []
        before = max(fired, default=0)
        fired |= {t for t in cfg.thresholds if t <= hit}
        at = (
            f"at ${spend.burn_per_hour:.2f}/h the ceiling is reached in {spend.hours_to_ceiling:.1f} h"
            if spend.hours_to_ceiling is not None
            else "nothing is burning now"
            if spend.burn_per_hour <= 0
            else "the ceiling is reached"
        )
        extra = ""
        if hit >= 100 and cfg.policy == "block":
            extra = "; policy block: new dispatches are refused (E603)"
        elif hit >= 100 and cfg.policy == "stop":
            extra = "; policy stop: running containers are terminated"
        code = "E300" if hit >= 100 else "E301"
        ceiling_at = (
            now + timedelta(hours=spend.hours_to_ceiling) if spend.hours_to_ceiling else None
        )
        ev = make_event(
            EventType.BUDGET_WARNING,
            f"{code} budget {hit}% reached: ${spend.spent_usd:.2f} of ${cfg.ceiling_usd:.2f} "
            f"this {cfg.period}; {at}{extra}. parhelia budget show",
            level=EventLevel.ERROR if hit >= 100 else EventLevel.WARNING,
            source=EventSource.BUDGET,
            actor=ACTOR,
            old_value=str(before),
            new_value=str(hit),
            details={
                "code": code,
                "threshold": hit,
                "percent": round(spend.percent, 2),
                "spent_usd": round(spend.spent_usd, 4),
                "ceiling_usd": cfg.ceiling_usd,
                "burn_per_hour": round(spend.burn_per_hour, 4),
                "ceiling_at": ceiling_at.isoformat() if ceiling_at else None,
                "period_start": key,
                "policy": cfg.policy,
            },
            ts=now,
        )
        self.store.set_setting(
            FIRED_KEY, {"period": key, "fired": sorted(fired)}, actor=ACTOR, events=[ev]
        )
        return [ev.message]

    def _terminate(self, targets: dict[str, str]) -> list[str]:
        if not targets or self.terminate is None:
            return []
        out = []
        for cid, reason in sorted(targets.items()):
            try:
                self.terminate(cid, ACTOR, reason)
                out.append(f"terminated {cid} ({reason})")
            except ParheliaError as exc:  # the terminate path wrote the error event
                out.append(f"terminate {cid} ({reason}) failed: {exc.code} {exc.message}")
        return out


def _cost(c: PricedRow, now: datetime) -> float:
    billed = c.billed_usd or 0.0
    return current_cost(max(c.cost_accrued_usd, billed), c.cost_rate_per_hour, c.started_at, now)


__all__ = ["BudgetGuard", "Spend", "budget_config"]
