"""A request for new work, its validation, and the proactive warnings the prompt shows.

Pure rules: the dispatcher, the CLI and the guided prompt all call these, so a bad GPU name or an
absurd memory size is refused the same way everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from parhelia.state.costs import NO_GPU, UnknownGpu, normalize_gpu
from parhelia.state.errors import ParheliaError

BACKENDS = ("local", "modal")
CPU_RANGE = (0.125, 64.0)
MEMORY_RANGE_MIB = (128, 256 * 1024)
TIMEOUT_RANGE_MIN = (1, 24 * 60)

_GPU_WORDS = re.compile(
    r"\b(train|training|fine-?tun\w*|cuda|gpu|pytorch|torch|jax|inference|llm|model weights)\b",
    re.I,
)
_LONG_WORDS = re.compile(
    r"\b(refactor|migrate|whole|entire|all tests|full test suite|rewrite|port|benchmark)\b", re.I
)


@dataclass(frozen=True)
class TaskRequest:
    prompt: str
    backend: str | None = None  # None: the configured default
    gpu: str | None = None  # None or "none": no GPU
    cpu: float = 1.0
    memory_mib: int = 2048
    timeout_minutes: int = 60
    region: str | None = None
    retry_of: str | None = None

    def normalized(self) -> TaskRequest:
        gpu = self.gpu
        if gpu is not None and gpu.strip().lower() in NO_GPU:
            gpu = None
        elif gpu is not None:
            gpu = canonical_gpu(gpu)
        region = self.region or None
        return replace(self, gpu=gpu, region=region, prompt=self.prompt.strip())


def canonical_gpu(name: str) -> str:
    """Modal's spelling of a requested GPU (`h100` -> `H100`, `a100` -> `A100-40GB`); unknown names
    and counts are E101 with the valid list."""
    try:
        return normalize_gpu(name)
    except UnknownGpu as exc:
        raise ParheliaError(
            "E101",
            str(exc),
            [
                "parhelia task create PROMPT --gpu A10G",
                "parhelia task create PROMPT --gpu none",
                "parhelia help gpu",
            ],
            attempted="validate GPU type",
        ) from None


def validate(request: TaskRequest) -> TaskRequest:
    """Return the normalized request or raise E101/E102 naming the field and its valid range."""
    req = request.normalized()
    if not req.prompt:
        raise ParheliaError(
            "E102",
            "the task needs a prompt",
            ["parhelia task create 'fix the failing tests'", "parhelia help tasks"],
        )
    if req.backend is not None and req.backend not in BACKENDS:
        raise ParheliaError(
            "E101",
            f"unknown backend {req.backend!r}; valid: {', '.join(BACKENDS)}",
            ["parhelia task create PROMPT --backend local", "parhelia config show"],
        )
    if req.gpu and req.backend == "local":  # a process on this machine: no GPU to bill for
        raise ParheliaError(
            "E101",
            f"the local backend has no GPU to give ({req.gpu}); choose modal or no GPU",
            [
                "parhelia task create PROMPT --backend modal --gpu " + req.gpu,
                "parhelia task create PROMPT --gpu none",
            ],
            attempted="validate GPU type",
        )
    _in_range("cpu", req.cpu, CPU_RANGE, "cores", "--cpu 2")
    _in_range("memory", req.memory_mib, MEMORY_RANGE_MIB, "MiB", "--memory 4096")
    _in_range("timeout", req.timeout_minutes, TIMEOUT_RANGE_MIN, "minutes", "--timeout 60")
    return req


def _in_range(
    field: str, value: float, bounds: tuple[float, float], unit: str, example: str
) -> None:
    lo, hi = bounds
    if not (lo <= value <= hi):
        raise ParheliaError(
            "E101",
            f"{field} {value:g} {unit} is out of range; valid: {lo:g} to {hi:g} {unit}",
            [f"parhelia task create PROMPT {example}", "parhelia task create --help"],
            attempted=f"validate {field}",
        )


def gpu_count(gpu: str | None) -> int:
    if not gpu:
        return 0
    _, _, count = gpu.partition(":")
    return int(count) if count else 1


def proactive_warnings(req: TaskRequest) -> list[str]:
    """SPEC-20's smart-prompt warnings that depend on the request alone (budget ones need the store)."""
    out = []
    if not req.gpu and _GPU_WORDS.search(req.prompt or ""):
        out.append("The prompt mentions GPU work (training, CUDA...) but no GPU is selected.")
    if req.timeout_minutes < 15 and _LONG_WORDS.search(req.prompt or ""):
        out.append(
            f"A {req.timeout_minutes}-minute timeout is short for this kind of work; consider 60 or more."
        )
    elif req.timeout_minutes < 5:
        out.append(f"A {req.timeout_minutes}-minute timeout leaves an agent little time to work.")
    return out


def budget_warnings(cost_usd: float, spent_usd: float, ceiling_usd: float) -> list[str]:
    """The estimate against what is left of the budget: over it, or bringing spend past 80 %."""
    remaining = ceiling_usd - spent_usd
    if cost_usd > remaining:
        return [
            f"Estimated ${cost_usd:.2f} exceeds the ${max(0.0, remaining):.2f} left of the budget."
        ]
    if ceiling_usd > 0 and spent_usd + cost_usd >= 0.8 * ceiling_usd:
        return [
            f"Estimated ${cost_usd:.2f} brings spend to "
            f"{100 * (spent_usd + cost_usd) / ceiling_usd:.0f}% of the ${ceiling_usd:.2f} ceiling."
        ]
    return []
