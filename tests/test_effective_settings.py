"""One rule for the effective budget and policies: a value a command stored in the database
(`parhelia budget set`) wins over files, environment and flags, for every reader: `config show`,
`budget show`, the dashboard view and the budget guard."""

from __future__ import annotations

import pytest

from parhelia.state.errors import ParheliaError
from parhelia.state.settings import (
    DATABASE_SOURCE,
    Settings,
    effective_budget,
    effective_setting,
)
from parhelia.workers.budget_guard import BudgetGuard


def test_config_show_lists_a_ceiling_stored_in_the_database_and_every_reader_agrees(
    parhelia_env, monkeypatch
):
    env = parhelia_env
    monkeypatch.setenv("PARHELIA_BUDGET_CEILING_USD", "75")
    rows = {r["name"]: r for r in env.ok("config", "show")}
    assert rows["budget.ceiling_usd"]["source"] == "env PARHELIA_BUDGET_CEILING_USD"

    env.ok("budget", "set", "40")

    rows = {r["name"]: r for r in env.ok("config", "show")}
    assert rows["budget.ceiling_usd"] == {
        "name": "budget.ceiling_usd",
        "value": "40.0",
        "source": DATABASE_SOURCE,
    }
    assert DATABASE_SOURCE == "database"
    line = next(
        ln for ln in env.run("config", "show").out.splitlines() if ln.startswith("budget.ceiling")
    )
    assert line.split() == ["budget.ceiling_usd", "40.0", "database"]
    assert rows["budget.period"]["source"] == "default"  # only what was stored says database

    assert env.ok("budget", "show")["ceiling_usd"] == 40.0
    control = env.control()
    assert control.settings.budget.ceiling_usd == 75.0  # what the environment configures
    assert control.dashboard(event_limit=0).budget.ceiling_usd == 40.0
    guard = BudgetGuard(control.store, control.settings, terminate=None)
    assert guard.spend().config.ceiling_usd == 40.0


def test_a_stored_policy_wins_and_a_bad_stored_value_is_e103():
    settings = Settings()
    assert effective_setting("policy.budget", settings, {}) == ("warn", "configured")
    stored = {"policy.budget": "block", "budget.ceiling_usd": 12.5}
    assert effective_setting("policy.budget", settings, stored) == ("block", "database")
    cfg = effective_budget(settings, stored)
    assert (cfg.ceiling_usd, cfg.policy, cfg.period) == (12.5, "block", "month")
    # only the settings a command stores come from the database
    assert effective_setting("tui.event_rows", settings, {"tui.event_rows": 5}) == (
        200,
        "configured",
    )
    for bad in ({"budget.ceiling_usd": -3.0}, {"policy.budget": "panic"}):
        with pytest.raises(ParheliaError) as err:
            effective_budget(settings, bad)
        assert err.value.code == "E103" and "database setting" in err.value.message


def test_config_show_shows_a_bad_stored_value_with_its_error(parhelia_env):
    parhelia_env.store().set_setting("budget.ceiling_usd", -1.0, actor="test")
    rows = {r["name"]: r for r in parhelia_env.ok("config", "show")}
    row = rows["budget.ceiling_usd"]
    assert row["value"] == "-1" and row["source"].startswith("database (E103: ")
