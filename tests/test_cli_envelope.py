"""The success envelope (SPEC-20): `--fields` trims `data` on every `--json` command with the MCP
server's selection, `metadata.cost_usd` where money was spent or estimated, and a `priority` on
each next action. Plus `parhelia --version`."""

from __future__ import annotations

import json

import pytest

from parhelia.state.fields import field_names

READS = [
    ["task", "list"],
    ["containers", "list", "--all"],
    ["events", "list"],
    ["status", "--no-refresh"],
    ["budget", "show"],
    ["budget", "history"],
    ["reconciler", "status"],
    ["config", "show"],
    ["db", "status"],
    ["help", "E201"],
    ["examples", "gpu"],
    ["budget", "estimate", "a task"],
]


def test_fields_trims_data_on_every_json_command(parhelia_env):
    env = parhelia_env
    env.ok("task", "create", "say hello")
    for argv in READS:
        whole = env.ok(*argv)
        names = field_names(whole)
        if not names:  # a list of strings, say: nothing to cut
            continue
        first = names[0]
        r = env.run(*argv, "--fields", first, "--json")
        assert r.code == 0, (argv, r.err)
        cut = r.json["data"]
        assert field_names(cut) == [first] or set(field_names(cut)) <= {
            n for n in names if n == first or n.startswith(first + ".")
        }, argv
        assert len(json.dumps(cut)) <= len(json.dumps(whole)), argv


def test_fields_with_a_dotted_path_and_an_unknown_field(parhelia_env):
    env = parhelia_env
    r = env.run("--json", "--fields=task_id,estimate.cost_usd", "task", "create", "say hello")
    assert r.code == 0, r.out
    data = r.json["data"]
    assert set(data) == {"task_id", "estimate"} and set(data["estimate"]) == {"cost_usd"}
    [row] = env.run("task", "list", "--fields", "id", "--json").json["data"]
    assert set(row) == {"id"}
    bad = env.run("task", "list", "--json", "--fields", "nope")
    assert bad.code != 0 and bad.json["error"]["code"] == "E101"
    assert "nope" in bad.json["error"]["message"]


def test_cost_usd_in_metadata_where_money_is_spent_or_estimated(parhelia_env):
    env = parhelia_env
    made = env.run("task", "create", "say hello", "--json").json
    assert made["metadata"]["cost_usd"] == pytest.approx(made["data"]["estimate"]["cost_usd"])
    est = env.run("budget", "estimate", "a task", "--json").json
    assert est["metadata"]["cost_usd"] == pytest.approx(est["data"]["cost_usd"])
    gone = env.run("containers", "terminate", made["data"]["container_id"], "--yes", "--json").json
    assert "cost_usd" in gone["metadata"]
    assert "cost_usd" not in env.run("task", "list", "--json").json["metadata"]


def test_every_next_action_has_a_priority(parhelia_env):
    doc = parhelia_env.run("task", "create", "say hello", "--json").json
    assert doc["next_actions"]
    assert [a["priority"] for a in doc["next_actions"]] == ["high", "medium", "low"]


def test_version(parhelia_env):
    from importlib.metadata import version

    r = parhelia_env.run("--version")
    assert r.code == 0 and r.out == f"parhelia {version('parhelia')}\n"
