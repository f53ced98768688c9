"""The environment a local agent gets: an allowlist, not Parhelia's whole environment.

Parhelia's own environment holds what decides where data goes and which cloud account pays
(`PARHELIA_DB_URL`, `MODAL_TOKEN_ID`/`MODAL_TOKEN_SECRET`); an agent runs whatever a prompt talks
it into, so it gets only what it needs to work: `PATH`, `HOME`, the locale, the terminal, the
user's identity and temp dir, `ANTHROPIC_*` and `CLAUDE_*`, plus the names the user lists in
`[agent] env` (exact names or shell patterns such as `GITHUB_*`). Modal tokens and the database
URL are never passed, even when listed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

ALLOWED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "COLORTERM",
    "ANTHROPIC_*",
    "CLAUDE_*",
)
NEVER = ("MODAL_TOKEN_*", "PARHELIA_DB_URL")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def agent_environment(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The variables of `environ` an agent may see: the allowlist plus `extra`, minus NEVER."""
    allowed = (*ALLOWED, *(e.strip() for e in extra if e.strip()))
    return {k: v for k, v in environ.items() if _matches(k, allowed) and not _matches(k, NEVER)}
