"""`--since` / `--until` values: an ISO time (`2026-11-24T09:00`, naive means UTC) or a relative
one counted back from now (`90s`, `10m`, `2h`, `3d`, `1w`). One parser for every command."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from parhelia.state.errors import ParheliaError
from parhelia.state.timeutil import as_utc

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
MAX_SECONDS = 3650 * 86400  # ten years back is the furthest a relative time reaches
EXAMPLES = {
    "--since": [
        "parhelia events list --since 10m",
        "parhelia events list --since 2026-11-24T09:00",
    ],
    "--until": ["parhelia events list --until 2h", "parhelia events list --until 2026-11-24T09:00"],
}


def parse_time(value: str, now: datetime, *, option: str = "--since") -> datetime:
    """An aware UTC datetime for `value`; E101 with examples when it is neither form."""
    match = RELATIVE.match(value)
    if match:
        seconds = float(match.group(1)) * UNITS[match.group(2).lower()]
        if seconds <= MAX_SECONDS:
            return as_utc(now) - timedelta(seconds=seconds)
    else:
        try:
            return as_utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise ParheliaError(
        "E101",
        f"{option} {value!r} is neither an ISO time nor a relative one; "
        "e.g. 2026-11-24T09:00, 2026-11-24T09:00+01:00, 90s, 10m, 2h, 3d, 1w",
        EXAMPLES.get(option, EXAMPLES["--since"]),
    )


def parse_optional(value: str | None, now: datetime, *, option: str = "--since") -> datetime | None:
    return None if value is None else parse_time(value, now, option=option)
