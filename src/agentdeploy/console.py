"""Where output goes: data on stdout, messages on stderr (so `--json | jq` works).

Every secret value registered with `mask` is replaced by *** in everything printed (messages, data,
live lines, the condensed build output), as a last line of defence behind not printing secrets in the
first place. Masking happens before anything is cut to the terminal's width, so a cut never leaves
half a secret. The same masker serves every other channel (`redact`, `redact_value`): the Action's
annotations, outputs and job summary, the state record, `--json`. A secret is masked in the forms it
takes in what we write: as it is, JSON-escaped (`--json`, a JSON body quoted in a message), as Python
writes it with `!r`, and each line of a multi-line value (GitHub masks a log line at a time).

Inside GitHub Actions (`GITHUB_ACTIONS` set: the Action, or the CLI in a workflow's `run:` step) the
runner carries out every workflow command it finds in what we print, and some of what we print comes
from outside (an agent's /ready body, its chat answer, its log, an Azure error body, the docker build).
So every line goes through `_write`, which writes text the runner could read as a command (a line that
starts with `::` once leading whitespace is trimmed, or `##[` anywhere: actions/runner ActionCommand.cs;
a line ends at CR as well as LF) inside a `::stop-commands::TOKEN` ... `::TOKEN::` block with a token
made for it: shown as written, commanding nothing. `--json` writes `##[` as `#\u0023[` instead (the same
JSON), so its output stays JSON. Only the Action's console (github/action.py) issues commands.

How it looks depends on where each stream goes, decided per stream:

- a terminal (and neither `CI` nor `GITHUB_ACTIONS` set, and `TERM` is not `dumb`): colour (unless
  `NO_COLOR` has a value or `--no-color` was given), symbols, a live line that overwrites itself
  (`progress`), stage headers, and the docker build output condensed to one line per step (all of it
  with `verbose`, and the last lines of it whenever the build fails);
- anything else (a pipe, a file, a CI log): plain text, no escape sequences, no carriage returns;
  `progress` prints a line at most every SPARSE_SECONDS, and the build output is printed whole.

Stages are timed: `stage(name)` (a section of the output: a header here, a log group in the Action)
and `timed(key)` (only the clock) add their elapsed seconds under a short stable key (deploy, plan,
image, pull, build, push, release, gate, ...); `timings` is what `--json`, the Action's `timings`
output and the job summary report.

No terminal library: what is needed here is a dozen SGR codes and one line redrawn with a carriage
return, and everything written must pass through the masking above. rich would cost ~40 ms of import
and three more packages in every Action install, and its live displays redraw from a thread with
their own cropping, which is where a secret could slip past `_clean`.

Several agents at once (release/many.py): each agent's run writes through `child(name)`, a console on the
same streams that shares the masked values (every agent's secrets are masked in every agent's lines) and
one lock (a line is written whole), prefixes each line of its messages with `[name] `, keeps its own
timings, and draws nothing live: no live line, no condensed build, no stage headers or log groups, since
several runs write at once. Its progress lines are the sparse ones.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from agentdeploy.errors import Problem
from agentdeploy.terminal import (
    MASK,
    PREFIX_STYLES,
    SPARSE_SECONDS,
    BuildCondenser,
    StageTimes,
    Style,
    Symbols,
    env_flag,
    fit_line,
    is_terminal,
    masked_forms,
    reads_as_command,
    seconds_text,
    stage_key,
)


class _Shared:
    """What a console and its children share: the values to mask, the lock that keeps lines whole, and (the
    Action) the stop-commands token of the block of outside output being written, if one is open."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.lock = threading.RLock()
        self.fence: str | None = None


class Console:
    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        environ: Mapping[str, str] | None = None,
        no_color: bool = False,
        verbose: bool = False,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        self.out = out
        self.err = err
        self._shared = _Shared()
        self.prefix = ""  # a child's `[name] ` before each line of its messages (several agents at once)
        self.sectioned = True  # stage headers (a terminal) and log groups (the Action); a child has none
        self.verbose = verbose
        self.clock = clock
        self.in_actions = env_flag(env, "GITHUB_ACTIONS")  # the runner reads workflow commands from what we print
        # live lines, headers, condensed build output: only where a person watches stderr
        self.live = is_terminal(err, env) if interactive is None else interactive
        out_live = is_terminal(out, env) if interactive is None else interactive
        colour = not no_color and not env.get("NO_COLOR")
        self.style = Style(self.live and colour)
        self.out_style = Style(out_live and colour)
        encoding = (getattr(err, "encoding", None) or "").lower().replace("-", "")
        self._unicode = encoding == "utf8"
        self.symbols = Symbols(self.live and self._unicode)
        self.out_symbols = Symbols(self._unicode) if out_live else None
        self._columns = env.get("COLUMNS", "")
        self._times = StageTimes(clock)
        self._sections = 0
        # the live line (a terminal) or the sparse progress lines (anything else)
        self._live_chars = 0
        self._spin = 0
        self._sparse_since: float | None = None
        self._condenser: BuildCondenser | None = None

    # -- several agents at once -------------------------------------------------------------------
    def child(self, prefix: str) -> Console:
        """A console for one of several runs at once: the same streams, the masked values shared both ways,
        `[prefix] ` before each line of its messages, its own timings, plain output (no live line, no
        condensed build, no stage headers or groups). A subclass's own behaviour (the Action's masks and
        stop-commands) is kept."""
        made = copy.copy(self)
        made.prefix = prefix
        made.sectioned = False
        made.live = False
        made.style = Style(False)
        made.symbols = Symbols(False)
        made._times, made._sections = StageTimes(self.clock), 0
        made._live_chars, made._spin, made._sparse_since, made._condenser = 0, 0, None, None
        return made

    @property
    def lock(self) -> threading.RLock:
        """Held while a line is written; shared with children, so lines of runs at once never mix."""
        return self._shared.lock

    # -- masking ---------------------------------------------------------------------------------
    @property
    def _secrets(self) -> list[str]:
        return self._shared.secrets

    def mask(self, values: list[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        masked = {form for value in values for form in masked_forms(value)}
        with self._shared.lock:
            self._shared.secrets = sorted({*self._shared.secrets, *masked}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every secret value registered with `mask` replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    _clean = redact

    def redact_value(self, value: Any) -> Any:
        """A JSON-like value (dicts, lists, strings, numbers) with every string in it redacted, keys too: for what
        is serialised (`--json`, the Action's `results`), masked before it is escaped."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact(str(key)): self.redact_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value

    # -- data and messages -----------------------------------------------------------------------
    def data(self, text: str) -> None:
        with self._shared.lock:
            self._end_progress()
            self._write(self.out, self._clean(text if text.endswith("\n") else text + "\n"))

    def json(self, value: Any) -> None:
        text = json.dumps(self.redact_value(value), indent=2, sort_keys=True)
        if self.in_actions:  # `##[` occurs only inside JSON strings, where `#` may be written escaped
            text = text.replace("##[", "#\\u0023[")
        self.data(text)

    def _write(self, stream: TextIO, text: str) -> None:
        """Every finished line goes out here (masked already, ending in a newline). Inside GitHub Actions, text
        the runner could read as a command is written in a stop-commands block of its own."""
        with self._shared.lock:
            if not self.in_actions or self._shared.fence is not None or not reads_as_command(text):
                stream.write(text)
            else:
                token = self._fence_token(text)
                stream.write(f"::stop-commands::{token}\n{text}" + ("" if text.endswith("\n") else "\n"))
                stream.write(f"::{token}::\n")
            stream.flush()

    @staticmethod
    def _fence_token(text: str) -> str:
        """A stop-commands token nobody can guess, and not in `text` (the block ends only where we end it)."""
        token = uuid.uuid4().hex
        while token in text:
            token = uuid.uuid4().hex
        return token

    def info(self, text: str) -> None:
        text = self._clean(text)
        if self._condenser is not None:
            self._condenser.line(text)
            return
        self._message(self._decorate(text))

    def warn(self, problem: Problem) -> None:
        self.info("warning: " + problem.render().replace("\n", "\n  "))

    def done(self, status: str, detail: str, *, ok: bool = True) -> None:
        """The last line of a release, on stdout: `succeeded: http://...` (a symbol and colour on a terminal)."""
        text = f"{status}: {detail}" if detail else status
        if self.out_symbols is not None:
            mark, colour = (self.out_symbols.ok, "green") if ok else (self.out_symbols.failed, "red")
            text = f"{self.out_style(mark, colour)} {self.out_style(status, 'bold', colour)}" + (
                f": {detail}" if detail else ""
            )
        self.data(text)

    def summary(self, rows: list[tuple[str, str]]) -> None:
        """Aligned `name  value` lines on stderr (the details of the final result)."""
        rows = [(name, value) for name, value in rows if value]
        if not rows:
            return
        width = max(len(name) for name, _ in rows)
        self._message(
            "\n".join(f"{self.style(name.ljust(width), 'dim')}  {self._clean(value)}" for name, value in rows)
        )

    def _decorate(self, text: str) -> str:
        if not self.style.enabled:
            return text
        lines = []
        for line in text.split("\n"):
            body = line.lstrip(" ")
            for prefix, styles in PREFIX_STYLES:
                if body.startswith(prefix):
                    line = line[: len(line) - len(body)] + self.style(prefix, *styles) + body[len(prefix) :]
                    break
            lines.append(line)
        return "\n".join(lines)

    def _message(self, text: str) -> None:
        """A finished line (already masked) on stderr, after the live line is taken away."""
        with self._shared.lock:
            self._end_progress()
            self._write(self.err, self._prefixed(text) + "\n")

    def _prefixed(self, text: str) -> str:
        """Each line with a child's `[name] ` before it (so no line of it begins with `::`, a workflow command;
        the Action's stop-commands still wrap the build output)."""
        if not self.prefix:
            return text
        return "\n".join(f"[{self.prefix}] {line}" for line in text.split("\n"))

    # -- the live line ---------------------------------------------------------------------------
    def progress(self, text: str) -> None:
        """A line that shows what is being waited for. On a terminal it overwrites itself until the next
        message; elsewhere one line is printed after SPARSE_SECONDS of waiting, and then at most that often."""
        text = self._clean(text)
        if self.live:
            self._spin += 1
            spinner = self.symbols.spinner[self._spin % len(self.symbols.spinner)]
            self._draw(text, lead=spinner)
            return
        now = self.clock()
        if self._sparse_since is None:
            self._sparse_since = now
        elif now - self._sparse_since >= SPARSE_SECONDS:
            self._sparse_since = now
            with self._shared.lock:
                self._write(self.err, self._prefixed(text) + "\n")

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.err.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        if columns <= 0:  # not known (a pseudo-terminal nobody sized): COLUMNS, or 80
            columns = int(self._columns) if self._columns.isdigit() else 80
        return columns

    def _draw(self, text: str, *, lead: str = "") -> None:
        """Overwrite the live line with `text` (already masked), cut to the terminal's width."""
        room = self._width() - 1 - (len(lead) + 1 if lead else 0)
        shown = fit_line(text, max(room, 10), self.symbols.ellipsis)
        chars = len(shown) + (len(lead) + 1 if lead else 0)
        pad = " " * max(self._live_chars - chars, 0)
        prefix = self.style(lead, "cyan") + " " if lead else ""
        self.err.write("\r" + prefix + shown + pad)
        self.err.flush()
        self._live_chars = chars

    def _end_progress(self) -> None:
        """Take the live line away (a terminal) and end a run of progress lines."""
        self._sparse_since = None
        if self._live_chars:
            self.err.write("\r" + " " * self._live_chars + "\r")
            self.err.flush()
            self._live_chars = 0

    # -- stages and timings ----------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str, key: str | None = None) -> Iterator[None]:
        """A named part of the run: a header on a terminal, a collapsible log group in GitHub Actions (only
        the outermost: groups do not nest), timed under `key` (default: the first word of the name)."""
        outermost = self._sections == 0 and self.sectioned
        self._sections += 1
        if outermost:
            self._end_progress()
            self._section_start(self._clean(name))
        start = self.clock()
        failed = True
        try:
            with self.timed(key or stage_key(name)):
                yield
            failed = False
        finally:
            self._sections -= 1
            if outermost:
                self._end_progress()
                self._section_end(self._clean(name), failed=failed, seconds=self.clock() - start)

    def _section_start(self, name: str) -> None:
        if self.live:
            self._message(self.style(f"{self.symbols.stage} {name}", "bold"))

    def _section_end(self, name: str, *, failed: bool, seconds: float) -> None:
        if self.live and failed:
            self._message(self.style(f"{self.symbols.failed} {name}: stopped after {seconds_text(seconds)}", "red"))

    def timed(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Add the time spent inside to `key` (once: a key already being timed is not counted twice)."""
        return self._times.timed(key)

    def record(self, key: str, seconds: float) -> None:
        """Add a duration measured elsewhere (a target's own clock, say)."""
        self._times.record(key, seconds)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per key, in the order the stages started (outer before inner)."""
        return self._times.timings

    def timing_summary(self) -> str:
        """`plan 0.1s · image 14.5s (build 12.3s, push 2.0s) · release 5.0s (gate 4.0s) · total 19.9s`."""
        return self._times.summary(" · " if self.live and self._unicode else "; ")

    # -- output we do not control ----------------------------------------------------------------
    @contextlib.contextmanager
    def untrusted(self) -> Iterator[None]:
        """Output we do not control (the docker build and push log): GitHub must not read commands from it.
        On a terminal (without verbose) it is condensed to a line per build step and a live line."""
        if not self.live or self.verbose or self._condenser is not None:
            yield
            return
        condenser = BuildCondenser(
            draw=lambda text, lead: self._draw(text, lead=lead),
            message=self._message,
            width=self._width,
            clock=self.clock,
            symbols=self.symbols,
            style=self.style,
        )
        self._condenser = condenser
        try:
            yield
        except Exception:
            self._condenser = None
            condenser.finish_step(failed=True)
            kept = list(condenser.kept)
            if kept:
                self._message(self.style(f"docker output (the last {len(kept)} lines):", "bold"))
                for line in kept:
                    self._message("    " + line)
            raise
        else:
            self._condenser = None
            condenser.finish_step()
        finally:
            self._condenser = None
            self._end_progress()
