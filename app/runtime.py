"""What a command runs against: the loaded settings, the store and the control plane, built lazily
so a command that needs none of them (help, config) imports neither SQLModel nor Modal."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parhelia.app.config import LoadedSettings
    from parhelia.state.store import Store
    from parhelia.workers.control import ControlPlane
    from parhelia.workers.read_plane import ReadPlane


@dataclass
class Runtime:
    flags: dict[str, Any] = field(default_factory=dict)
    json_out: bool = False
    # Configuration warnings (an untrusted project file, an unknown PARHELIA_* variable) go to
    # stderr once; `config show` lists them itself.
    warn_on_stderr: bool = True
    # SQLite's page cache of the store's writer (None: the store's default): the dashboard keeps
    # a small one, its heartbeat loop's pages otherwise stay resident (app/cli_tui.py).
    write_cache_kib: int | None = None

    @cached_property
    def loaded(self) -> LoadedSettings:
        import sys

        from parhelia.app.config import load_settings

        loaded = load_settings(flags=self.flags)
        if self.warn_on_stderr:
            from parhelia.app import output

            for warning in loaded.warnings:
                output.write(f"Warning: {warning}\n", sys.stderr)
        return loaded

    @property
    def settings(self):
        return self.loaded.settings

    @cached_property
    def db_url(self) -> str:
        from parhelia.app.config import data_dir, resolve_db_url

        if not self.settings.db_url:  # the default location is ours to create
            from parhelia.state.private import private_dir

            private_dir(data_dir())
        return resolve_db_url(self.settings)

    @cached_property
    def store(self) -> Store:
        from parhelia.state.store import Store

        return Store(self.db_url, write_cache_kib=self.write_cache_kib)

    @cached_property
    def backend_name(self) -> str:
        from parhelia.app.config import resolve_backend_name

        return resolve_backend_name(self.settings)

    @cached_property
    def control(self) -> ControlPlane:
        from parhelia.app.config import data_dir
        from parhelia.workers.control import ControlPlane

        return ControlPlane(
            self.store, self.settings, default_backend=self.backend_name, data_dir=data_dir()
        )

    @cached_property
    def reader(self) -> ReadPlane:
        """The control plane's read side, for a command that only reads: on an SQLite or
        `postgresql+psycopg://` store at this Parhelia's schema, over `QuickStore` (the view
        without importing SQLAlchemy, most of such a command's time: bench/cli.py); otherwise,
        or once the control plane is built, the control plane itself. What the quick store does
        not cover it asks `store` for."""
        if "control" in self.__dict__ or "store" in self.__dict__:
            return self.control
        from parhelia.state.quick_store import QuickStore

        quick = QuickStore.open(self.db_url, full=lambda: self.store)
        if quick is None:
            return self.control
        from parhelia.app.config import data_dir
        from parhelia.workers.read_plane import ReadPlane

        return ReadPlane(
            quick, self.settings, default_backend=self.backend_name, data_dir=data_dir()
        )

    def close(self) -> None:
        """Close the store if this invocation opened it (its pooled connections and files): a
        process exits anyway, but `main()` called in-process (tests, the MCP server's tools) must
        not keep one open per call."""
        reader = self.__dict__.get("reader")
        if reader is not None and reader is not self.__dict__.get("control"):
            reader.store.close()  # its quick store (the full store, if opened, is `store`)
        store = self.__dict__.get("store")
        if store is not None:
            store.close()
