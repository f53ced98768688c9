"""The command palette's dashboard commands, built from the app's and the focused pane's BINDINGS,
so the palette, the footer and the help pane can never list different actions."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ActionsProvider(Provider):
    """Every dashboard action by name (with its key), runnable from ctrl+p."""

    def _actions(self):
        app = self.app
        seen = set()
        widgets = [w for w in (app.focused,) if w is not None]
        for owner, bindings in [(app, app.BINDINGS), *((w, w.BINDINGS) for w in widgets)]:
            for b in bindings:
                if b.action in seen or b.action.startswith("focus_") or not b.description:
                    continue
                seen.add(b.action)
                key = b.key_display or b.key
                help_text = f"{b.tooltip or b.description} ({key})"
                yield b.description, help_text, partial(owner.run_action, b.action)

    async def discover(self) -> Hits:
        for name, help_text, run in self._actions():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, run in self._actions():
            score = matcher.match(f"{name} {help_text}")
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
