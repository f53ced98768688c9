"""`parhelia help [TOPIC|CODE]` and `parhelia examples [TOPIC]`: topics, error codes with their
recovery commands, worked examples."""

from __future__ import annotations

import difflib
from typing import Annotated

import typer

from parhelia.app import output
from parhelia.app.cli_common import JsonOpt, runtime
from parhelia.state.errors import CATALOGUE, RESERVED, ParheliaError


def help_(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument(help="A topic or an error code.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Help on a topic (workflow, tasks, containers, budget, errors, config...) or an error code (E200)."""
    from parhelia.app.help_texts import TOPICS, explain, render_error_help

    rt = runtime(ctx, json_out)
    if topic is None:
        text = (
            TOPICS["workflow"]
            + "\n\nTopics: "
            + ", ".join(TOPICS)
            + "\nErrors: parhelia help E200 (any code)"
        )
        return output.success(
            {"topics": list(TOPICS), "codes": list(CATALOGUE)}, json_out=rt.json_out, human=text
        )
    key = topic.upper() if topic.upper() in CATALOGUE else topic.lower()
    if key in CATALOGUE:
        e = CATALOGUE[key]
        return output.success(
            {
                "code": e.code,
                "title": e.title,
                "explanation": explain(key),
                "recovery": list(e.recovery),
                "topic": e.topic,
                "reserved": key in RESERVED,
            },
            json_out=rt.json_out,
            human=render_error_help(key),
        )
    if key in TOPICS:
        return output.success(
            {"topic": key, "text": TOPICS[key]}, json_out=rt.json_out, human=TOPICS[key]
        )
    close = difflib.get_close_matches(key, [*TOPICS, *CATALOGUE], n=1)
    raise ParheliaError(
        "E101",
        f"no help topic {topic!r}; topics: {', '.join(TOPICS)}; or an error code E100-E901",
        [f"parhelia help {close[0]}" if close else "parhelia help errors", "parhelia help"],
    )


def examples(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument()] = None,
    json_out: JsonOpt = False,
) -> None:
    """Worked examples (gpu, budget, tasks, containers)."""
    from parhelia.app.help_texts import EXAMPLES

    rt = runtime(ctx, json_out)
    if topic is None:
        text = "\n\n".join(f"# {k}\n{v}" for k, v in EXAMPLES.items())
        return output.success(EXAMPLES, json_out=rt.json_out, human=text)
    if topic.lower() not in EXAMPLES:
        raise ParheliaError(
            "E101",
            f"no examples for {topic!r}; topics: {', '.join(EXAMPLES)}",
            ["parhelia examples gpu", "parhelia examples"],
        )
    output.success(
        {"topic": topic, "examples": EXAMPLES[topic.lower()]},
        json_out=rt.json_out,
        human=EXAMPLES[topic.lower()],
    )
