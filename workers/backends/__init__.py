"""Sandbox backends behind one protocol (`base.Backend`); built lazily so `modal` is imported only when used."""

from __future__ import annotations

from pathlib import Path

from parhelia.state.errors import ParheliaError
from parhelia.state.settings import Settings
from parhelia.workers.backends.base import Backend

NAMES = ("local", "modal")


def make_backend(name: str, settings: Settings, data_dir: Path) -> Backend:
    if name == "local":
        from parhelia.workers.backends.local import LocalBackend

        root = (
            Path(settings.local.root).expanduser()
            if settings.local.root
            else data_dir / "sandboxes"
        )
        return LocalBackend(
            root,
            terminate_grace=settings.local.terminate_grace_seconds,
            agent_env=settings.agent.env,
        )
    if name == "modal":
        from parhelia.workers.backends.modal import ModalBackend

        return ModalBackend(settings.modal)
    raise ParheliaError(
        "E101",
        f"unknown backend {name!r}; valid: {', '.join(NAMES)}",
        ["parhelia config show", "PARHELIA_BACKEND=local parhelia containers list"],
    )
