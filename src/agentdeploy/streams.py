"""Output streams that a reader may close (`agentdeploy status | head -1`, a log viewer that quits).

A closed pipe must never interrupt a release or turn into an internal error: once the reader is gone,
what would have been written is dropped and the run carries on (the state file and the exit code still
say how it ended).
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import TextIO, cast


class ReaderGone:
    """A text stream that stops writing, quietly, when its reader has gone away."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def _lost(self, error: OSError) -> None:
        if not isinstance(error, BrokenPipeError) and error.errno not in (errno.EPIPE, errno.EINVAL):
            raise error
        self.gone = True
        # The interpreter flushes the real stream at exit: point its descriptor at /dev/null so that
        # last flush cannot fail either (what Python's docs advise for SIGPIPE).
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def write(self, text: str) -> int:
        if self.gone:
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as error:
            self._lost(error)
            return len(text)

    def flush(self) -> None:
        if self.gone:
            return
        try:
            self._stream.flush()
        except OSError as error:
            self._lost(error)

    def isatty(self) -> bool:
        return not self.gone and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def guarded(stream: TextIO) -> TextIO:
    """`stream`, made safe against a reader that goes away (it behaves as a TextIO everywhere else)."""
    return cast(TextIO, ReaderGone(stream))
