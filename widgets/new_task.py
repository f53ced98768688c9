"""The guided prompt for new work: smart defaults, a live cost estimate, and warnings before dispatch.

Every field starts from a default and says where that default came from, the estimate and the
warnings follow each keystroke, and nothing leaves the screen until `validate()` accepts it, so a
bad value is explained inline instead of failing later in the dispatcher.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from parhelia.state.costs import GPU_RATES, RateTable, estimate_task, hourly_rate
from parhelia.state.errors import ParheliaError
from parhelia.state.requests import (
    TaskRequest,
    budget_warnings,
    proactive_warnings,
    validate,
)
from parhelia.widgets.formatting import money

FIELDS = ("backend", "gpu", "cpu", "memory_mib", "timeout_minutes")
_NO_GPU = "none"


@dataclass(frozen=True)
class NewTaskDefaults:
    """Prefilled values (keys backend, gpu, cpu, memory_mib, timeout_minutes) and where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]


# field widget id -> (its key in `NewTaskDefaults`, its label's title)
FIELD_KEYS = {
    "backend": ("backend", "Backend"),
    "gpu": ("gpu", "GPU"),
    "cpu": ("cpu", "CPU cores"),
    "memory": ("memory_mib", "Memory MiB"),
    "timeout": ("timeout_minutes", "Timeout minutes"),
}


def _number(text: str, field: str, unit: str, convert: Callable[[float], float]) -> float:
    """Parse a typed number, or raise the same E101 validation raises for a bad range."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ParheliaError(
            "E101",
            f"{field} {text.strip()!r} is not a number of {unit}",
            [f"type a number of {unit}", "parhelia task create --help"],
            attempted=f"validate {field}",
        ) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ParheliaError(
            "E101",
            f"{field} {text.strip()!r} is not a finite number of {unit}",
            [f"type a number of {unit}", "parhelia task create --help"],
            attempted=f"validate {field}",
        )
    if convert is int and value != int(value):
        raise ParheliaError(
            "E101",
            f"{field} {text.strip()!r} must be a whole number of {unit}",
            [f"type a whole number of {unit}", "parhelia task create --help"],
            attempted=f"validate {field}",
        )
    return convert(value)


def _selected(select: Select) -> str | None:
    """A Select's value as a string, or None while it has no selection (Select.NULL)."""
    value = select.value
    return value if isinstance(value, str) else None


class NewTaskScreen(ModalScreen[TaskRequest | None]):
    """Dismisses with a validated TaskRequest, or None on escape/Cancel."""

    CSS_PATH = "new_task.tcss"
    AUTO_FOCUS = "#prompt"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "dispatch", "Dispatch"),
    ]

    def __init__(
        self,
        defaults: NewTaskDefaults,
        *,
        backends: Sequence[str],
        rates: RateTable,
        spent_usd: float,
        ceiling_usd: float,
    ) -> None:
        super().__init__()
        self.defaults = defaults
        self.backends = list(backends)
        self.rates = rates
        self.spent_usd = spent_usd
        self.ceiling_usd = ceiling_usd
        self.last_error: ParheliaError | None = None
        self._initial: dict[str, Any] = {}

    # -- composition -------------------------------------------------------------------------

    def _default(self, key: str, fallback: Any) -> Any:
        value = self.defaults.values.get(key)
        return fallback if value is None else value

    def _label(self, title: str, key: str, *, edited: bool = False) -> Label:
        return Label(self._label_text(title, key, edited=edited), id=f"label-{key}")

    def _label_text(self, title: str, key: str, *, edited: bool) -> Text:
        """`from project config` while the field holds its default; `edited` once it does not."""
        source = "edited" if edited else f"from {self.defaults.sources.get(key, 'default')}"
        return Text.assemble((title, "bold"), "\n", (source, "dim"))

    def _follow_source(self, widget_id: str | None) -> None:
        """Keep a field's "from …" label true to its value as it is edited."""
        field = FIELD_KEYS.get(widget_id or "")
        if field is None or widget_id not in self._initial:
            return
        key, title = field
        value = self.query_one(f"#{widget_id}").value
        edited = value != self._initial.get(widget_id)
        self.query_one(f"#label-{key}", Label).update(self._label_text(title, key, edited=edited))

    def compose(self) -> ComposeResult:
        yield Footer()  # this screen's own keys
        backends = list(self.backends)
        backend = self._default("backend", backends[0] if backends else "local")
        if backend not in backends:
            backends.insert(0, backend)
        gpus = [_NO_GPU, *GPU_RATES]
        gpu = self._default("gpu", _NO_GPU) or _NO_GPU
        if gpu not in gpus:
            gpus.append(gpu)
        self._initial = {  # what each field starts with: its label says "edited" once it differs
            "backend": backend,
            "gpu": gpu,
            "cpu": f"{self._default('cpu', 1.0):g}",
            "memory": str(self._default("memory_mib", 2048)),
            "timeout": str(self._default("timeout_minutes", 60)),
        }

        with Vertical(id="dialog"):
            yield Static("New task", id="title")
            form = VerticalScroll(id="form")
            form.can_focus = False  # Tab goes field to field; focus scrolls each into view
            with form:
                yield Label(Text("Prompt", style="bold"), id="label-prompt")
                yield Input(placeholder="what should the agent do?", id="prompt")
                with Grid(id="fields"):
                    with Vertical():
                        yield self._label("Backend", "backend")
                        yield Select(
                            [(b, b) for b in backends],
                            value=backend,
                            allow_blank=False,
                            id="backend",
                        )
                    with Vertical():
                        yield self._label("GPU", "gpu")
                        yield Select([(g, g) for g in gpus], value=gpu, allow_blank=False, id="gpu")
                    with Vertical():
                        yield self._label("CPU cores", "cpu")
                        yield Input(self._initial["cpu"], id="cpu")
                    with Vertical():
                        yield self._label("Memory MiB", "memory_mib")
                        yield Input(self._initial["memory"], id="memory")
                    with Vertical():
                        yield self._label("Timeout minutes", "timeout_minutes")
                        yield Input(self._initial["timeout"], id="timeout")
                yield Static(id="estimate")
                yield Static(id="warnings")
                yield Static(id="errors")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Dispatch", id="dispatch", variant="primary")

    def on_mount(self) -> None:
        self.refresh_panels()

    # -- reading the form --------------------------------------------------------------------

    def _request(self) -> TaskRequest:
        """The form as a request; raises E101 for a field that is not a number."""
        gpu = _selected(self.query_one("#gpu", Select))
        return TaskRequest(
            prompt=self.query_one("#prompt", Input).value,
            backend=_selected(self.query_one("#backend", Select)),
            gpu=None if gpu in (None, _NO_GPU) else gpu,
            cpu=_number(self.query_one("#cpu", Input).value, "cpu", "cores", float),
            memory_mib=int(_number(self.query_one("#memory", Input).value, "memory", "MiB", int)),
            timeout_minutes=int(
                _number(self.query_one("#timeout", Input).value, "timeout", "minutes", int)
            ),
        )

    def _check(self, *, require_prompt: bool) -> TaskRequest:
        """Validate the form; while typing, an empty prompt is not yet an error."""
        req = self._request()
        if not require_prompt and not req.prompt.strip():
            return replace(validate(replace(req, prompt="-")), prompt="")
        return validate(req)

    # -- the live panels ---------------------------------------------------------------------

    def refresh_panels(self, *, require_prompt: bool = False) -> TaskRequest | None:
        """Redraw estimate, warnings and errors from the form; return the request when valid."""
        estimate = self.query_one("#estimate", Static)
        warnings = self.query_one("#warnings", Static)
        errors = self.query_one("#errors", Static)
        try:
            req = self._check(require_prompt=require_prompt)
        except ParheliaError as err:
            self.last_error = err
            errors.update(Text.assemble((f"{err.code} ", "bold red"), (err.message, "red")))
            errors.display = True
            req = None
        else:
            self.last_error = None
            errors.update("")
            errors.display = False

        remaining = self.ceiling_usd - self.spent_usd
        found: list[str] = []
        if req is None:
            estimate.update(
                Text.assemble(
                    ("Estimate  ", "bold"),
                    ("- (see the error below)", "dim"),
                    f"  ·  budget left {money(max(0.0, remaining))} of {money(self.ceiling_usd)}",
                )
            )
            found += self._prompt_warnings()
        else:
            rate = hourly_rate(req.cpu, req.memory_mib, req.gpu, req.region, self.rates)
            cost = estimate_task(
                req.cpu, req.memory_mib, req.gpu, req.region, req.timeout_minutes, self.rates
            )
            estimate.update(
                Text.assemble(
                    ("Estimate  ", "bold"),
                    f"{money(rate)}/h  ·  at most ",
                    (f"{money(cost)} ", "bold"),
                    f"for {req.timeout_minutes} min  ·  budget left "
                    f"{money(max(0.0, remaining))} of {money(self.ceiling_usd)}",
                )
            )
            found += proactive_warnings(req)
            found += budget_warnings(cost, self.spent_usd, self.ceiling_usd)
        if found:
            warnings.update(Text("\n".join(f"⚠ {w}" for w in found), style="yellow"))
        else:
            warnings.update("")
        warnings.display = bool(found)
        return req

    def _prompt_warnings(self) -> list[str]:
        """Warnings that depend on the prompt and GPU still show while a number is invalid."""
        gpu = _selected(self.query_one("#gpu", Select))
        try:
            timeout = int(self.query_one("#timeout", Input).value.strip())
        except ValueError:
            timeout = 60
        req = TaskRequest(
            prompt=self.query_one("#prompt", Input).value,
            gpu=None if gpu in (None, _NO_GPU) else gpu,
            timeout_minutes=timeout,
        )
        return proactive_warnings(req)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._follow_source(event.input.id)
        self.refresh_panels()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._follow_source(event.select.id)
        self.refresh_panels()

    # -- dispatch ----------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_dispatch()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "dispatch":
            self.action_dispatch()
        else:
            self.dismiss(None)

    def action_dispatch(self) -> None:
        req = self.refresh_panels(require_prompt=True)
        if req is not None:
            self.dismiss(req)

    def action_cancel(self) -> None:
        self.dismiss(None)
