"""Pure domain rules: lifecycle, health, costs, budget, request validation, the error catalogue."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parhelia.state.budget import (
    BudgetConfig,
    crossed_threshold,
    level_for,
    period_start,
    summarize,
)
from parhelia.state.costs import (
    DEFAULT_RATES,
    GPU_RATES,
    accrued_cost,
    burn_rate,
    estimate_task,
    hourly_rate,
    hours_until,
    normalize_gpu,
    normalize_gpu_rates,
    region_multiplier,
    runtime_hours,
)
from parhelia.state.enums import ContainerState as S
from parhelia.state.enums import Health
from parhelia.state.errors import CATALOGUE, ParheliaError
from parhelia.state.health import SEVERITY, HealthThresholds, health_from_missed
from parhelia.state.lifecycle import TRANSITIONS, can_transition, check_transition
from parhelia.state.requests import TaskRequest, canonical_gpu, gpu_count, validate

T0 = datetime(2026, 3, 11, 15, 30, tzinfo=UTC)  # a Wednesday

# -- lifecycle ------------------------------------------------------------------------------

VALID = {
    (S.CREATED, S.RUNNING),
    (S.CREATED, S.STOPPED),
    (S.CREATED, S.TERMINATED),
    (S.RUNNING, S.STOPPED),
    (S.RUNNING, S.TERMINATED),
    (S.STOPPED, S.TERMINATED),
    (S.CREATED, S.ORPHANED),  # any (live) state -> orphaned
    (S.RUNNING, S.ORPHANED),
    (S.STOPPED, S.ORPHANED),
    (S.ORPHANED, S.TERMINATED),  # cleanup
}


def test_lifecycle_table_is_spec21():
    assert {(a, b) for a, bs in TRANSITIONS.items() for b in bs} == VALID


@pytest.mark.parametrize("old,new", sorted(VALID))
def test_valid_transitions_are_allowed(old, new):
    assert can_transition(old, new)
    check_transition("c-00000001", old, new)


@pytest.mark.parametrize(
    "old,new", [(a, b) for a, b in itertools.permutations(S, 2) if (a, b) not in VALID]
)
def test_invalid_transitions_are_refused_with_e105(old, new):
    assert not can_transition(old, new)
    with pytest.raises(ParheliaError) as err:
        check_transition("c-00000001", old, new)
    assert err.value.code == "E105"
    assert old in err.value.message and new in err.value.message
    assert len(err.value.suggestions) >= 2


def test_terminated_is_final_and_same_state_is_a_no_op():
    for new in S:
        if new != S.TERMINATED:
            with pytest.raises(ParheliaError, match="final state"):
                check_transition("c-00000001", S.TERMINATED, new)
    for s in S:
        assert can_transition(s, s)


# -- health ---------------------------------------------------------------------------------


def test_health_defaults_2_5_10():
    got = [health_from_missed(m) for m in range(12)]
    assert (
        got
        == [Health.HEALTHY] * 2 + [Health.DEGRADED] * 3 + [Health.UNHEALTHY] * 5 + [Health.DEAD] * 2
    )


def test_health_custom_thresholds():
    t = HealthThresholds(degraded=1, unhealthy=3, dead=4)
    got = [health_from_missed(m, t) for m in range(6)]
    assert got == [
        Health.HEALTHY,
        Health.DEGRADED,
        Health.DEGRADED,
        Health.UNHEALTHY,
        Health.DEAD,
        Health.DEAD,
    ]


thresholds = st.tuples(st.integers(1, 20), st.integers(0, 20), st.integers(0, 20)).map(
    lambda t: HealthThresholds(t[0], t[0] + t[1], t[0] + t[1] + t[2])
)


@given(thresholds, st.integers(0, 100), st.integers(0, 100))
def test_health_is_monotone_in_missed_heartbeats(t, a, b):
    lo, hi = sorted((a, b))
    assert SEVERITY[health_from_missed(lo, t)] <= SEVERITY[health_from_missed(hi, t)]
    assert (health_from_missed(hi, t) == Health.DEAD) == (hi >= t.dead)


# -- costs ----------------------------------------------------------------------------------


def test_published_rate_table():
    assert DEFAULT_RATES.cpu_core_hour == 0.1419
    assert DEFAULT_RATES.memory_gib_hour == 0.0242
    assert DEFAULT_RATES.gpu_hour == {
        "T4": 0.59,
        "L4": 0.80,
        "A10G": 1.10,
        "L40S": 1.95,
        "A100-40GB": 2.10,
        "A100-80GB": 2.50,
        "H100": 3.95,
        "H200": 4.54,
        "B200": 6.25,
    }
    assert DEFAULT_RATES.source and DEFAULT_RATES.as_of


def test_hourly_rate_cpu_memory_gpu_region():
    assert hourly_rate(1, 1024) == pytest.approx(0.1419 + 0.0242)
    assert hourly_rate(2, 4096) == pytest.approx(2 * 0.1419 + 4 * 0.0242)
    assert hourly_rate(2, 4096, "A10G") == pytest.approx(2 * 0.1419 + 4 * 0.0242 + 1.10)
    assert hourly_rate(1, 1024, "H100:2") == pytest.approx(0.1419 + 0.0242 + 2 * 3.95)
    base = hourly_rate(2, 4096, "L4")
    assert hourly_rate(2, 4096, "L4", "us") == pytest.approx(base * 1.5, abs=1e-6)
    assert hourly_rate(2, 4096, "L4", "us-east-1") == pytest.approx(base * 1.75, abs=1e-6)
    assert region_multiplier(None) == 1.0
    assert region_multiplier("broad") == 1.5 and region_multiplier("narrow") == 1.75
    assert region_multiplier("eu") == 1.5 and region_multiplier("eu-west-2") == 1.75


def test_rate_overrides():
    assert DEFAULT_RATES.with_overrides() is DEFAULT_RATES
    r = DEFAULT_RATES.with_overrides(cpu_core_hour=0.2, gpu={"H100": 3.0, "X1": 9.0})
    assert r.cpu_core_hour == 0.2 and r.memory_gib_hour == 0.0242
    assert r.gpu_hour["H100"] == 3.0 and r.gpu_hour["T4"] == 0.59 and r.gpu_hour["X1"] == 9.0
    assert "override" in r.source
    assert hourly_rate(1, 1024, "H100", rates=r) == pytest.approx(0.2 + 0.0242 + 3.0)
    assert DEFAULT_RATES.gpu_hour["H100"] == 3.95  # the published table is not mutated
    m = DEFAULT_RATES.with_overrides(memory_gib_hour=0.05)
    assert m.memory_gib_hour == 0.05 and m.cpu_core_hour == 0.1419


def test_accrued_burn_and_forecast():
    start = T0 - timedelta(hours=2, minutes=30)
    assert runtime_hours(None, None, T0) == 0.0
    assert runtime_hours(start, None, T0) == pytest.approx(2.5)
    assert runtime_hours(start, T0 - timedelta(hours=1), T0) == pytest.approx(1.5)
    assert runtime_hours(T0 + timedelta(hours=1), None, T0) == 0.0  # clock skew never negative
    assert accrued_cost(0.4, start, None, T0) == pytest.approx(1.0)
    assert accrued_cost(0.4, None, None, T0) == 0.0
    assert burn_rate([0.5, 1.25, 0.25]) == pytest.approx(2.0)
    assert burn_rate([]) == 0
    assert hours_until(10.0, 25.0, 3.0) == pytest.approx(5.0)
    assert hours_until(10.0, 25.0, 0.0) is None
    assert hours_until(30.0, 25.0, 3.0) is None


def test_task_estimate_is_rate_times_timeout():
    assert estimate_task(2, 4096, "A10G", None, 90) == pytest.approx(
        hourly_rate(2, 4096, "A10G") * 1.5
    )
    assert estimate_task(1, 1024, None, "us", 60) == pytest.approx((0.1419 + 0.0242) * 1.5)


resources = st.tuples(
    st.floats(0.125, 64), st.integers(128, 256 * 1024), st.sampled_from([None, *GPU_RATES])
)


@given(
    resources,
    st.sampled_from([None, "us", "us-east-1"]),
    st.integers(1, 1440),
    st.integers(1, 1440),
)
def test_estimate_is_monotone_in_timeout(res, region, a, b):
    cpu, mem, gpu = res
    lo, hi = sorted((a, b))
    assert 0 <= estimate_task(cpu, mem, gpu, region, lo) <= estimate_task(cpu, mem, gpu, region, hi)


@given(resources, st.floats(0.125, 64))
def test_rate_grows_with_resources(res, more_cpu):
    cpu, mem, gpu = res
    assert hourly_rate(cpu, mem) <= hourly_rate(cpu + more_cpu, mem)
    assert hourly_rate(cpu, mem) <= hourly_rate(cpu, mem, gpu) <= hourly_rate(cpu, mem, gpu, "us")


# -- budget ---------------------------------------------------------------------------------


def test_period_start():
    assert period_start(T0, "day") == datetime(2026, 3, 11, tzinfo=UTC)
    assert period_start(T0, "week") == datetime(2026, 3, 9, tzinfo=UTC)  # Monday
    assert period_start(T0, "month") == datetime(2026, 3, 1, tzinfo=UTC)
    assert period_start(T0, "week").tzinfo is not None


def test_levels_and_thresholds():
    d = (50, 80, 100)
    assert [level_for(p, d) for p in (0, 49.9, 50, 79.9, 80, 99.9, 100, 250)] == [
        "ok",
        "ok",
        "warning",
        "warning",
        "critical",
        "critical",
        "exceeded",
        "exceeded",
    ]
    custom = (90, 25, 60)  # order does not matter
    assert [level_for(p, custom) for p in (24, 25, 60, 90)] == [
        "ok",
        "warning",
        "critical",
        "exceeded",
    ]
    assert crossed_threshold(85, d) == 80
    assert crossed_threshold(49, d) is None
    assert crossed_threshold(100, d) == 100


@given(st.floats(0, 500), st.floats(0, 500))
def test_budget_level_is_monotone_in_spend(a, b):
    order = ["ok", "warning", "critical", "exceeded"]
    lo, hi = sorted((a, b))
    d = (50, 80, 100)
    assert order.index(level_for(lo, d)) <= order.index(level_for(hi, d))


def test_summarize_forecasts_the_ceiling():
    v = summarize(BudgetConfig(ceiling_usd=20.0, period="day"), 5.0, 3.0, 2, T0)
    assert v.percent == pytest.approx(25.0) and v.level == "ok"
    assert v.remaining_usd == pytest.approx(15.0)
    assert v.ceiling_at == T0 + timedelta(hours=5)
    assert v.period_start == datetime(2026, 3, 11, tzinfo=UTC) and v.running_gpus == 2
    idle = summarize(BudgetConfig(ceiling_usd=20.0), 5.0, 0.0, 0, T0)
    assert idle.ceiling_at is None
    over = summarize(BudgetConfig(ceiling_usd=20.0), 21.0, 3.0, 0, T0)
    assert over.level == "exceeded" and over.ceiling_at is None and over.remaining_usd == 0.0


# -- request validation ---------------------------------------------------------------------


def raises_code(code: str, req: TaskRequest) -> ParheliaError:
    with pytest.raises(ParheliaError) as err:
        validate(req)
    assert err.value.code == code
    assert len(err.value.suggestions) >= 2
    return err.value


def test_valid_request_is_normalized():
    req = validate(TaskRequest(prompt="  fix tests  ", gpu="h100:2", region=""))
    assert req.prompt == "fix tests" and req.gpu == "H100:2" and req.region is None
    assert gpu_count(req.gpu) == 2 and gpu_count(None) == 0 and gpu_count("T4") == 1
    for none in ("none", "None", "", "-"):
        assert validate(TaskRequest(prompt="x", gpu=none)).gpu is None
    assert canonical_gpu("a100-80gb") == "A100-80GB"


@pytest.mark.parametrize("gpu", ["V100", "H100:x", "H100:-1", "tpu", "A10G:2:2"])
def test_bad_gpu_is_e101_listing_valid_values(gpu):
    err = raises_code("E101", TaskRequest(prompt="x", gpu=gpu))
    for name in GPU_RATES:
        assert name in err.message
    assert "none" in err.message


@pytest.mark.parametrize(
    "field,value",
    [
        ("cpu", -1.0),
        ("cpu", 0.0),
        ("cpu", 1000.0),
        ("memory_mib", -512),
        ("memory_mib", 0),
        ("memory_mib", 10**9),
        ("timeout_minutes", -5),
        ("timeout_minutes", 0),
        ("timeout_minutes", 10**6),
    ],
)
def test_negative_or_absurd_resources_are_e101_with_the_range(field, value):
    err = raises_code("E101", TaskRequest(prompt="x", **{field: value}))
    assert "valid:" in err.message and "range" in err.message


@pytest.mark.parametrize("gpu", ["H100:0", "H100:99"])
def test_absurd_gpu_count_is_e101(gpu):
    raises_code("E101", TaskRequest(prompt="x", gpu=gpu))


def test_unknown_backend_is_e101_and_empty_prompt_e102():
    assert "local" in raises_code("E101", TaskRequest(prompt="x", backend="aws")).message
    raises_code("E102", TaskRequest(prompt=""))
    raises_code("E102", TaskRequest(prompt="   \n\t"))


# -- error catalogue ------------------------------------------------------------------------

SPEC20 = [
    "E100",
    "E101",
    "E102",
    "E200",
    "E201",
    "E202",
    "E203",
    "E300",
    "E301",
    "E400",
    "E401",
    "E402",
    "E500",
    "E501",
    "E502",
    "E503",
    "E600",
    "E601",
    "E602",
    "E603",
    "E900",
    "E901",
]


def test_every_spec20_code_is_in_the_catalogue():
    assert set(SPEC20) <= set(CATALOGUE)


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_entry_has_title_explanation_and_recovery(code):
    e = CATALOGUE[code]
    assert e.code == code and len(code) == 4 and code[0] == "E" and code[1:].isdigit()
    assert e.title.strip() and e.explanation.strip()
    assert len(e.recovery) >= 2
    assert all(cmd.strip() for cmd in e.recovery)
    assert any(cmd.startswith("parhelia ") for cmd in e.recovery)  # others: `modal token new`...
    assert len(set(e.recovery)) == len(e.recovery)


def test_parhelia_error_defaults_and_refuses_unknown_codes():
    err = ParheliaError("E201", "no task t-1")
    assert err.suggestions == list(CATALOGUE["E201"].recovery)
    assert err.title == "Task not found" and str(err) == "E201: no task t-1"
    assert err.to_dict() == {
        "code": "E201",
        "title": "Task not found",
        "message": "no task t-1",
        "suggestions": list(CATALOGUE["E201"].recovery),
    }
    assert ParheliaError("E101", "m", ["a", "b"], attempted="x").to_dict()["attempted"] == "x"
    with pytest.raises(ValueError):
        ParheliaError("E999", "nope")


# -- GPU names (issue 11): Modal's spellings and aliases, one normaliser --------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("A100", "A100-40GB"),  # Modal: plain A100 is the 40 GB card
        ("a100:2", "A100-40GB:2"),
        ("A10", "A10G"),
        ("a10g:4", "A10G:4"),
        ("h100", "H100"),
        ("H100:8", "H100:8"),
        ("h100!", "H100!"),  # kept: Modal never upgrades it to an H200
        ("b200+:2", "B200+:2"),
        (" l40s ", "L40S"),
        ("a100-80gb", "A100-80GB"),
    ],
)
def test_gpu_names_follow_modal_spellings_and_aliases(given, canonical):
    assert normalize_gpu(given) == canonical
    assert validate(TaskRequest(prompt="x", gpu=given)).gpu == canonical


@pytest.mark.parametrize("bad", ["V100", "A10G:5", "H100:9", "H100:0", "A100-40", "rtx"])
def test_unknown_gpu_or_count_is_e101_for_a_request_and_never_priced(bad):
    raises_code("E101", TaskRequest(prompt="x", gpu=bad))
    with pytest.raises(ParheliaError) as err:
        hourly_rate(1, 1024, bad)
    assert err.value.code == "E101"


def test_every_spelling_of_a_gpu_is_priced_as_its_card():
    base = hourly_rate(1, 1024)
    assert hourly_rate(1, 1024, "h100") - base == pytest.approx(3.95)  # was $0: lower case
    assert hourly_rate(1, 1024, "A100") - base == pytest.approx(2.10)  # was $0: the alias
    assert hourly_rate(1, 1024, "a10:2") - base == pytest.approx(2 * 1.10)
    assert hourly_rate(1, 1024, "H100!") - base == pytest.approx(3.95)
    assert hourly_rate(1, 1024, "none") == base


def test_gpu_rate_overrides_are_normalized_and_per_card():
    assert normalize_gpu_rates({"a100": 3.0, "h100": 4.0}) == {"A100-40GB": 3.0, "H100": 4.0}
    for bad in ({"H100:2": 1.0}, {"V100": 1.0}, {"H100!": 1.0}):
        with pytest.raises(ValueError):
            normalize_gpu_rates(bad)
