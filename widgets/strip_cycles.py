"""Textual's `Strip` caches its results on itself; two of them can be the strip itself
(`divide` at its own length: every line the compositor draws across a whole widget;
`crop_extend` over all of it: `RichLog`'s lines, the events pane), and then the cache makes a
cycle (strip -> cache -> strip). Such a strip is not freed when the last frame lets go of it but
waits for a garbage collection, with its eight caches and its segments: under a heartbeating
fleet about 500 strips and 6,000 objects a second at 150x45, a third or more of what each young
collection walked besides the refresh's views (their time fell by a fifth without them), and
garbage the full collection walked again once promoted.

`install` makes those two return the strip itself without caching it (what they would return
from the cache), so a drawn line is freed with the frame that drew it; every other result is
cached as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.style import Style
from textual.strip import Strip

_divide = Strip.divide
_crop_extend = Strip.crop_extend


def _divide_without_cycle(self: Strip, cuts: Iterable[int]) -> list[Strip]:
    length = self.cell_length
    cuts = [cut for cut in cuts if cut <= length]
    if cuts == [length]:  # the strip whole: not cached on itself
        return [self]
    return _divide(self, cuts)


def _crop_extend_without_cycle(self: Strip, start: int, end: int, style: Style | None) -> Strip:
    if start <= 0 and end == self.cell_length:  # the strip whole: not cached on itself
        return self
    return _crop_extend(self, start, end, style)


def install() -> None:
    """Strips no longer cache themselves (idempotent; for the whole process)."""
    Strip.divide = _divide_without_cycle  # type: ignore[method-assign]
    Strip.crop_extend = _crop_extend_without_cycle  # type: ignore[method-assign]
