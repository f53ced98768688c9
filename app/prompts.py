"""Guided prompts for `task create` and confirmation for commands that stop things (SPEC-20).

On a terminal a missing value is asked for, with its default and where the default came from
(project config, user config, last used, built-in: `task_defaults_with_sources`, the function
the dashboard's `n` uses too); the estimate and every proactive warning show before the dispatch,
and a standing warning needs a yes. Off a terminal nothing is asked: a missing prompt is E102.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from parhelia.state.errors import ParheliaError

if TYPE_CHECKING:
    from parhelia.app.runtime import Runtime
    from parhelia.state.requests import TaskRequest

# Prompt order, the question asked, and how a typed answer becomes a value.
FIELDS: tuple[tuple[str, str, type], ...] = (
    ("backend", "Backend (local or modal)", str),
    ("gpu", "GPU (none, T4, A10G, H100...)", str),
    ("cpu", "CPU cores", float),
    ("memory_mib", "Memory (MiB)", int),
    ("timeout_minutes", "Timeout (minutes)", int),
)
LABELS = {
    "backend": "backend",
    "gpu": "GPU",
    "cpu": "CPU",
    "memory_mib": "memory MiB",
    "timeout_minutes": "timeout min",
}


def on_terminal() -> bool:
    """A person can answer: both stdin and stdout are terminals."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def describe_source(source: str) -> str:
    """A setting's source in words: `built-in default`, `environment PARHELIA_X`, `user config
    PATH:LINE` or `project config PATH:LINE`; "last used", "entered", "command line" as they are."""
    from parhelia.app.config import user_config_path

    if source == "default":
        return "built-in default"
    if source.startswith("env "):
        return "environment " + source[4:]
    if source.startswith("flag "):
        return "command line"
    if source.startswith(("/", "~", ".")) or (":" in source and "/" in source):
        path = source.rsplit(":", 1)[0] if source.rsplit(":", 1)[-1].isdigit() else source
        kind = "user config" if path == str(user_config_path()) else "project config"
        return f"{kind} {source}"
    return source


@dataclass
class Chosen:
    """The values a task is created with, and where each one came from."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def resources_line(self) -> str:
        parts = []
        for key, _, _ in FIELDS:
            value = self.values.get(key)
            shown = (
                "none" if key == "gpu" and not value else f"{value:g}" if key == "cpu" else value
            )
            parts.append(f"{LABELS[key]} {shown} ({describe_source(self.sources[key])})")
        return "Resources: " + ", ".join(parts)


def choose_task_values(
    rt: Runtime, given: dict[str, Any], *, ask: bool
) -> tuple[str | None, Chosen]:
    """The prompt and every resource value: given on the command line, else asked (when `ask`),
    else the default with its source."""
    from parhelia.app.preferences import task_defaults_with_sources

    prompt = given.pop("prompt", None)
    if not prompt and ask:
        prompt = typer.prompt("Prompt (what the agent should do)")
    if not prompt or not prompt.strip():
        raise ParheliaError(
            "E102",
            "the task needs a prompt (nothing is asked off a terminal)",
            [
                "parhelia task create 'fix the failing tests'",
                "parhelia task create --help",
                "parhelia help tasks",
            ],
        )
    chosen = Chosen()
    backend = given.get("backend")
    if backend is None and ask:
        defaults = _defaults(rt, task_defaults_with_sources, None)
        backend = _ask("backend", defaults, chosen)
    elif backend is not None:
        chosen.values["backend"], chosen.sources["backend"] = backend, "command line"
    defaults = _defaults(rt, task_defaults_with_sources, backend)
    for key, _, _ in FIELDS:
        if key in chosen.values:
            continue
        if given.get(key) is not None:
            chosen.values[key], chosen.sources[key] = given[key], "command line"
        elif ask:
            _ask(key, defaults, chosen)
        else:
            chosen.values[key], chosen.sources[key] = defaults[key]
    return prompt, chosen


def _defaults(rt: Runtime, fn, backend: str | None) -> dict[str, tuple[Any, str]]:
    try:
        plane = rt.control.plane_id
    except ParheliaError:
        plane = None
    got = fn(rt.loaded, plane=plane, backend=backend)
    value, source = got["backend"]
    if value == "auto":
        got["backend"] = (rt.backend_name, f"{describe_source(source)}: auto")
    return got


def _ask(key: str, defaults: dict[str, tuple[Any, str]], chosen: Chosen) -> Any:
    question = dict((k, q) for k, q, _ in FIELDS)[key]
    kind = dict((k, t) for k, _, t in FIELDS)[key]
    default, source = defaults[key]
    default = "none" if key == "gpu" and not default else default
    said = describe_source(source)  # "built-in default", not "default from built-in default"
    answer = typer.prompt(
        f"{question}, {said if said.startswith('built-in') else 'default from ' + said}",
        default=default,
        type=kind,
        show_default=True,
    )
    chosen.values[key] = answer
    chosen.sources[key] = source if answer == default else "entered"
    return answer


def show_estimate_and_confirm(rt: Runtime, request: TaskRequest, *, ask: bool) -> None:
    """Print the estimate and every warning before dispatching; a standing warning needs a yes."""
    from parhelia.app import output
    from parhelia.app.textfmt import money

    est = rt.control.estimate(request)
    err = sys.stderr
    output.write(
        f"Estimate: {money(est.rate_per_hour)}/h, at most {money(est.cost_usd)} for the timeout; "
        f"{money(max(0.0, est.remaining_usd - est.cost_usd))} of the budget left after\n",
        err,
    )
    for w in est.warnings:
        output.write(f"Warning: {w}\n", err)
    if est.warnings and ask:
        typer.confirm("Dispatch anyway?", default=False, abort=True)


def confirm_destructive(
    rt: Runtime, *, yes: bool, what: str, lines: list[str], retry_cmd: str, look_cmd: str
) -> None:
    """Stop nothing unasked: on a terminal list exactly what stops and ask; off one, refuse
    without `--yes`."""
    from parhelia.app import output

    if yes:
        return
    if rt.json_out or not sys.stdin.isatty():
        raise ParheliaError(
            "E102",
            f"{what} needs confirmation; pass --yes when not at a terminal",
            [retry_cmd, look_cmd],
        )
    for line in lines:
        output.echo(f"  {line}")
    typer.confirm(f"{what.capitalize()}?", default=False, abort=True)
