"""Sandbox backends behind one protocol (`base.Backend`); built lazily so `modal` is imported only when used."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from parhelia.state.errors import ParheliaError

if TYPE_CHECKING:  # `local_root` (a read of the agents) needs neither
    from parhelia.state.settings import Settings
    from parhelia.workers.backends.base import Backend

NAMES = ("local", "modal")


def agent_program(template: str) -> str:
    """The program name the heartbeat probe looks for: the configured agent's, not always
    `claude` (a template that cannot be split is reported when a dispatch builds it)."""
    from parhelia.workers.agent_command import split_template

    try:
        return Path(split_template(template)[0]).name
    except ParheliaError:
        return "claude"


def local_root(settings: Settings, data_dir: Path) -> Path:
    """Where the local backend keeps its sandboxes (and their tmux sockets): `[local] root`, or
    `<data dir>/sandboxes`."""
    return Path(settings.local.root).expanduser() if settings.local.root else data_dir / "sandboxes"


def make_backend(name: str, settings: Settings, data_dir: Path) -> Backend:
    from parhelia.workers.backends.deadline import DeadlineBackend

    if name == "local":
        from parhelia.workers.backends.local import LocalBackend
        from parhelia.workers.checkpoint_archive import archive_root

        backend = LocalBackend(
            local_root(settings, data_dir),
            terminate_grace=settings.local.terminate_grace_seconds,
            agent_env=settings.agent.env,
            archive=archive_root(data_dir),
        )
        return DeadlineBackend(
            backend,
            settings.local.timeout_seconds,
            terminate_grace=settings.local.terminate_grace_seconds,
        )
    if name == "modal":
        from parhelia.workers.backends.modal import ModalBackend

        backend = ModalBackend(settings.modal, agent_binary=agent_program(settings.agent.command))
        return DeadlineBackend(backend, settings.modal.timeout_seconds)
    raise ParheliaError(
        "E101",
        f"unknown backend {name!r}; valid: {', '.join(NAMES)}",
        ["parhelia config show", "PARHELIA_BACKEND=local parhelia containers list"],
    )
