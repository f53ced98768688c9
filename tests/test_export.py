"""`events export`'s fast path against the plain one: the hand-made JSON line is the text
`json.dumps` writes, CSV and JSON lines round-trip hostile text (unicode, quotes, newlines, control
characters), and the batches stream every matching event in order on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parhelia.app.cli_events import export_record, jsonl_line, write_rows
from parhelia.state.event_log import EVENT_ROW_COLUMNS, to_event_view

HOSTILE = [
    'quotes " and \\ backslash',
    "line\nbreak\r\nand\ttab",
    "control \x01\x08\x1b\x1f\x7f chars",
    "unicode: ünïcödé 漢字 🚀 \u2028\u2029",
    "comma, semicolon; 'single'",
    "",
]
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    st.tuples(
        st.integers(min_value=1, max_value=2**62),
        text,
        text,
        text,
        text,
        st.none() | text,
        st.none() | text,
        st.none() | text,
        st.none() | text,
        st.none() | text,
        text,
    )
)
def test_a_json_line_is_exactly_what_json_dumps_writes(row):
    expected = json.dumps(dict(zip(EVENT_ROW_COLUMNS, row, strict=True)), ensure_ascii=False)
    assert jsonl_line(row) == expected + "\n"
    assert json.loads(jsonl_line(row)) == export_record(row)


def _hostile_store(store):
    """One event per hostile text; the first at a whole second (microseconds are still written)."""
    for i, message in enumerate(HOSTILE):
        store.add_event(
            "note",
            message,
            level="warning" if i % 2 else "info",
            actor=HOSTILE[-1 - i] or None,
            old_value=message,
            ts=T0 + timedelta(seconds=i, microseconds=i * 7),
        )
    return [to_event_view(e) for e in store.events(limit=100, oldest_first=True)]


def _expected(views) -> list[dict]:
    return [
        {
            **{c: getattr(e, c) for c in EVENT_ROW_COLUMNS},
            "ts": e.ts.isoformat(timespec="microseconds"),
        }
        for e in views
    ]


def test_jsonl_and_csv_round_trip_hostile_text(store):
    views = _hostile_store(store)
    rt = SimpleNamespace(store=store)
    out = io.StringIO()
    assert write_rows(rt, out, "jsonl", {}) == len(HOSTILE)
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == len(HOSTILE) + 1  # newlines inside are escaped
    assert [json.loads(line) for line in lines[:-1]] == _expected(views)

    out = io.StringIO(newline="")
    assert write_rows(rt, out, "csv", {}) == len(HOSTILE)
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert rows == [
        {k: "" if v is None else str(v) for k, v in r.items()} for r in _expected(views)
    ]


def test_batches_stream_every_match_in_order_with_filters(store):
    views = _hostile_store(store)
    for i in range(25):
        store.add_event("note", f"m{i}", ts=T0 + timedelta(minutes=1, seconds=i))
    batches = list(store.event_batches(batch=7))
    assert [len(b) for b in batches] == [7, 7, 7, 7, 3]
    rows = [r for b in batches for r in b]
    assert [r[0] for r in rows] == [e.id for e in store.events(limit=100, oldest_first=True)]
    assert all(isinstance(r, tuple) and len(r) == len(EVENT_ROW_COLUMNS) for r in rows)
    warned = list(store.event_rows(min_level="warning", until=T0 + timedelta(minutes=1)))
    assert [export_record(r) for r in warned] == _expected(
        [e for e in views if e.level == "warning"]
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_empty_export_writes_nothing_but_the_csv_header(store, fmt):
    out = io.StringIO()
    assert write_rows(SimpleNamespace(store=store), out, fmt, {"types": ["none"]}) == 0
    assert out.getvalue() == (",".join(EVENT_ROW_COLUMNS) + "\n" if fmt == "csv" else "")
