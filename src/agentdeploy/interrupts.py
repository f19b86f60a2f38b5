"""Signals during a release: Ctrl-C (SIGINT) and a cancelled workflow (SIGINT, then SIGTERM) ask the
release to stop at its next safe point instead of cutting a change to the target in half.

Outside `deferred()` a signal interrupts at once, as usual (nothing has been changed yet). Inside it,
the signal is only noted: the target's gate sees `requested()` and rolls back, so the run ends with the
previous version serving. SIGKILL cannot be caught: the pending entry in the state file (written before
the first change) lets the next run repair what was left.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

CAUGHT = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """One run's record of the signals it was sent while a release was under way."""

    def __init__(self) -> None:
        self._received = ""

    def requested(self) -> str:
        """The name of the signal that asked the release to stop ("" when none did)."""
        return self._received

    def _note(self, number: int, frame: FrameType | None) -> None:
        # Only a flag: printing from a signal handler can re-enter a write that was cut short.
        self._received = self._received or signal.Signals(number).name

    @contextlib.contextmanager
    def deferred(self) -> Iterator[Interrupts]:
        """Signals are noted, not raised, until the block ends. Only the main thread can take signals."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.getsignal(number) for number in CAUGHT}
        for number in CAUGHT:
            signal.signal(number, self._note)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
