"""Field selection for `fields` (MCP tools, and the CLI's `--fields` later): keep only the named
fields of a record, or of every record in a list, so an agent pays tokens only for what it reads.

Dotted paths reach into nested records (`budget.spent_usd`, `containers.id`); a list on the way is
walked element by element. A path no record has is bad input (E101) naming the fields there are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from parhelia.state.errors import ParheliaError

_MISSING = object()


def parse_fields(fields: str | Iterable[str] | None) -> list[list[str]]:
    """`"id,state"` or `["id", "budget.level"]` as split paths; empty means every field."""
    if fields is None:
        return []
    items = fields.split(",") if isinstance(fields, str) else list(fields)
    return [item.strip().split(".") for item in items if item and item.strip()]


def select_fields(data: Any, fields: str | Iterable[str] | None) -> Any:
    """`data` cut down to `fields`; unchanged when no fields are named."""
    paths = parse_fields(fields)
    if not paths:
        return data
    for path in paths:
        if not _has(data, path):
            raise ParheliaError(
                "E101",
                f"no field {'.'.join(path)!r}; fields here: {', '.join(field_names(data)) or '(none)'}",
                ["fields: ['id', 'state']", "call the tool without fields to see every field"],
            )
    return _select(data, paths)


def field_names(data: Any, prefix: str = "") -> list[str]:
    """Every dotted path the records in `data` offer (the first record stands for a list)."""
    if isinstance(data, list):
        return field_names(data[0], prefix) if data else []
    if not isinstance(data, dict):
        return []
    names = []
    for key, value in data.items():
        names.append(prefix + key)
        if isinstance(value, dict) or (
            isinstance(value, list) and value and isinstance(value[0], dict)
        ):
            names += field_names(value, f"{prefix}{key}.")
    return names


def _has(data: Any, path: list[str]) -> bool:
    if not path:
        return True
    if isinstance(data, list):
        return not data or any(_has(item, path) for item in data)
    return isinstance(data, dict) and path[0] in data and _has(data[path[0]], path[1:])


def _select(data: Any, paths: list[list[str]]) -> Any:
    if any(not p for p in paths):
        return data
    if isinstance(data, list):
        return [_select(item, paths) for item in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key in dict.fromkeys(p[0] for p in paths):
        value = data.get(key, _MISSING)
        if value is _MISSING:
            continue
        out[key] = _select(value, [p[1:] for p in paths if p[0] == key])
    return out
