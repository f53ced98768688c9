"""`select_fields`: the `fields` of MCP tools (and the CLI's `--fields` to come)."""

from __future__ import annotations

import pytest

from parhelia.state.errors import ParheliaError
from parhelia.state.fields import field_names, parse_fields, select_fields

ROWS = [
    {"id": "c-1", "state": "running", "tags": {"parhelia": "1", "task": "t-1"}, "cost": 0.5},
    {"id": "c-2", "state": "orphaned", "tags": {"parhelia": "1"}, "cost": 0.0},
]
SHOW = {
    "task": {"id": "t-1", "status": "running"},
    "containers": [{"id": "c-1", "state": "running"}, {"id": "c-2", "state": "terminated"}],
}


def test_no_fields_returns_the_data_unchanged():
    assert select_fields(ROWS, None) is ROWS
    assert select_fields(ROWS, []) is ROWS
    assert select_fields(ROWS, " , ") is ROWS


def test_keeps_named_fields_of_every_record_in_order_of_the_request():
    assert select_fields(ROWS, ["state", "id"]) == [
        {"state": "running", "id": "c-1"},
        {"state": "orphaned", "id": "c-2"},
    ]
    assert select_fields(ROWS, "id,cost") == [
        {"id": "c-1", "cost": 0.5},
        {"id": "c-2", "cost": 0.0},
    ]


def test_dotted_paths_reach_nested_records_and_walk_lists():
    assert select_fields(ROWS, ["id", "tags.task"]) == [
        {"id": "c-1", "tags": {"task": "t-1"}},
        {"id": "c-2", "tags": {}},
    ]
    assert select_fields(SHOW, ["task.status", "containers.state"]) == {
        "task": {"status": "running"},
        "containers": [{"state": "running"}, {"state": "terminated"}],
    }
    # a whole sub-record and one of its fields: the whole wins
    assert select_fields(SHOW, ["task", "task.id"]) == {"task": SHOW["task"]}


def test_an_unknown_field_is_e101_naming_the_fields_there_are():
    with pytest.raises(ParheliaError) as exc:
        select_fields(ROWS, ["id", "sate"])
    assert exc.value.code == "E101"
    assert "'sate'" in exc.value.message and "state" in exc.value.message
    assert len(exc.value.suggestions) >= 2
    with pytest.raises(ParheliaError):
        select_fields(SHOW, ["task.nope"])


def test_an_empty_list_has_every_field_and_none():
    assert select_fields([], ["anything"]) == []


def test_field_names_and_parse():
    assert field_names(SHOW) == [
        "task",
        "task.id",
        "task.status",
        "containers",
        "containers.id",
        "containers.state",
    ]
    assert parse_fields("a.b, c") == [["a", "b"], ["c"]]
