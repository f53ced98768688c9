"""The command palette's dashboard commands, built from the screen's, the app's and the focused
pane's BINDINGS, so the palette, the footer and the help pane can never list different actions."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ActionsProvider(Provider):
    """Every dashboard action by name (with its key), runnable from ctrl+p."""

    def _actions(self):
        app, screen = self.app, self.screen
        seen = set()
        widgets = [w for w in (screen.focused,) if w is not None]
        owners = [screen, app, *widgets]
        for owner, bindings in ((o, o.BINDINGS) for o in owners):
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
