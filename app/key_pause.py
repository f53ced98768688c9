"""The refresh thread gives way to a key press until the frame that shows it is written.

A key and a refresh share one interpreter: under a heartbeating fleet at 10,000 containers the
refresh's Python (a read of every row, their views, the pane's orders) is 100-150 ms a second,
and a key press met it at every step (bench/tui.py). So from a key's arrival to the first frame
written after the key was handled, the refresh thread waits at its pause points (`wait`: between
slices of its read and between its phases), and a refresh collected meanwhile is held and shown
after that frame (`hold`): drawn in the key's frame, the key would wait for both.

The frame is the one Textual writes out (`App._display`). Its callbacks "after refresh" came
before that frame was drawn (the screen, idle until the widget's repaint reached it, ran them
first), so a pause that ended there let the refresh run beside the key's frame.

Bounded twice: a refresh waits at most KEY_WAIT_SECONDS in all (a budget, not a deadline from its
start: a refresh slowed by a busy machine still gives way), so a held key cannot keep the view
from moving; and a key whose handling draws nothing ends the pause after KEY_FRAME_SECONDS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App
    from textual.dom import DOMNode
    from textual.timer import Timer

KEY_WAIT_SECONDS = 0.25
KEY_FRAME_SECONDS = 0.1


class KeyPause:
    """One app's pause for keys. The main thread reports a key's arrival, its forwarding and
    each frame written; the refresh thread calls `start_refresh` once per refresh and `wait` at
    each of its points; a refresh collected on the main thread asks `hold` first."""

    def __init__(self, app: App) -> None:
        self._app = app
        self.done = threading.Event()  # clear from a key's arrival to the frame after it
        self.done.set()
        self._handled = False  # the last key was handled: the next frame written shows it
        self._timer: Timer | None = None  # ends the pause if that frame never comes
        self.held: Callable[[], object] | None = None  # a refresh collected meanwhile
        self.left = 0.0  # seconds the running refresh may still wait (the refresh thread's)
        # when the last key came (`time.perf_counter`): a collection due waits for a quiet moment
        # (`app/gc_schedule.py`)
        self.last_key = float("-inf")

    def key_arrived(self) -> None:
        """A key is about to be forwarded: the refresh thread pauses from now."""
        self.last_key = time.perf_counter()
        self.done.clear()
        self._handled = False

    def key_forwarded(self, target: DOMNode) -> None:
        """The key is in `target`'s queue: once handled (a callback behind it), the next frame
        written ends the pause; the fallback timer ends it if no frame comes."""
        if not target.call_after_refresh(self._mark_handled):
            self.frame_done()  # a widget gone meanwhile takes no callback
        if self._timer is not None:  # an earlier key's: this key's frame is awaited now
            self._timer.stop()
        self._timer = self._app.set_timer(KEY_FRAME_SECONDS, self.frame_done)

    def _mark_handled(self) -> None:
        self._handled = True

    def frame_written(self) -> None:
        """A frame was written out: the first after the key was handled shows what it did."""
        if self._handled:
            self._handled = False
            self.frame_done()

    def frame_done(self) -> None:
        """The key's frame is drawn (or never will be): the refresh thread goes on, and a
        refresh held meanwhile is shown now."""
        self.done.set()
        held, self.held = self.held, None
        if held is not None:
            self._app.call_later(held)

    def hold(self, show: Callable[[], object]) -> bool:
        """Whether `show` (a refresh collected now, on the main thread) waits for a key's
        frame; if so it is called after that frame."""
        if self.done.is_set():
            return False
        self.held = show
        return True

    def start_refresh(self) -> None:
        """A refresh begins (refresh thread): its budget of waiting is whole again."""
        self.left = KEY_WAIT_SECONDS

    def wait(self) -> None:
        """The refresh thread's pause point: wait while a key's frame is awaited, within what is
        left of this refresh's budget."""
        if self.done.is_set() or self.left <= 0:
            return
        t = time.monotonic()
        self.done.wait(self.left)
        self.left -= time.monotonic() - t
