"""How text looks where agentdeploy writes it (pure): what GitHub's runner reads as a workflow command, whether a
stream is a terminal a person watches, colours and symbols, one line fitted to a width, the forms a secret takes in
what is written, and the clock of the stages (`StageTimes`). console.py writes through these."""

from __future__ import annotations

import collections
import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TextIO

MASK = "***"
# Shorter values cannot be told apart from ordinary text: masking "x" would mangle every line.
MIN_MASKED_LENGTH = 4
SPARSE_SECONDS = 15.0  # plain output: a progress line at most this often
BUILD_LOG_KEPT = 200  # lines of docker output kept, to show when a condensed build fails

_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "cyan": "36"}
PREFIX_STYLES = (("error:", ("bold", "red")), ("warning:", ("bold", "yellow")), ("fix:", ("cyan",)))
# The legacy builder's log: "Step 5/18 : RUN ...", then the step's output, then "---> <id>".
BUILD_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
ENGINE_NOISE = re.compile(r"^\s*(---> |Removing intermediate container |Successfully (built|tagged) )")
OUR_BUILD_LINES = ("agentdeploy: ", "push failed")  # our build-time checks and the push retries: always kept in sight
_FALSE = ("", "0", "false", "no")


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() not in _FALSE


def runner_lines(text: str) -> list[str]:
    """`text` cut into lines as GitHub's runner reads a step's output (CR LF, CR or LF end a line)."""
    return re.split(r"\r\n|\r|\n", text)


def reads_as_command(text: str) -> bool:
    """Whether the runner could find a workflow command in `text`: a line that starts with `::` once leading
    whitespace is trimmed, or the old form `##[` anywhere in a line."""
    if "::" not in text and "##[" not in text:  # most lines: no need to cut them
        return False
    return any(line.lstrip().startswith("::") or "##[" in line for line in runner_lines(text))


def is_terminal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is a terminal a person watches (CI logs are not, even on a pseudo-terminal)."""
    if env_flag(environ, "CI") or env_flag(environ, "GITHUB_ACTIONS") or environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed, or not a real stream
        return False


def stage_key(name: str) -> str:
    """The timing key of a stage name: its first word ("image: build, push, verify" -> "image")."""
    found = re.match(r"[a-z]+", name.strip().lower())
    return found.group(0) if found else name


def seconds_text(seconds: float) -> str:
    if seconds >= 60:
        return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"
    return f"{seconds:.1f}s"


def waiting_text(what: str, elapsed: float, timeout: float, last: str) -> str:
    """The live line of a health wait: what, elapsed / timeout, and the last state seen."""
    return f"waiting for {what}: {elapsed:.0f}s / {timeout:.0f}s (last: {last})"


class Style:
    """SGR colours when enabled; the text unchanged otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        return f"\x1b[{';'.join(_SGR[s] for s in styles)}m{text}\x1b[0m"


class Symbols:
    def __init__(self, unicode: bool) -> None:
        self.ok, self.failed, self.stage, self.cached = ("✓", "✗", "▸", "·") if unicode else ("ok", "x", ">", "-")
        self.spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if unicode else "|/-\\"
        self.ellipsis = "…" if unicode else "..."


def fit_line(text: str, width: int, ellipsis: str = "…") -> str:
    text = " ".join(text.split())  # one line: no tabs, no newlines, no runs of spaces
    return text if len(text) <= width else text[: max(width - len(ellipsis), 0)] + ellipsis


def masked_forms(value: str) -> set[str]:
    """The forms a secret takes in what is written: as it is, JSON-escaped (ASCII or not), in a Python repr, and
    each of its lines; only those long enough to tell apart from ordinary text."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1]}
    forms.update(line.strip() for line in value.splitlines())
    return {form for form in forms if len(form) >= MIN_MASKED_LENGTH}


class StageTimes:
    """Seconds per stage key, each key under the key that was being timed when it started (for the summary)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._timings: dict[str, float] = {}
        self._parents: dict[str, str | None] = {}
        self._clocks: list[str] = []

    @contextlib.contextmanager
    def timed(self, key: str) -> Iterator[None]:
        if key in self._clocks:
            yield
            return
        self._parents.setdefault(key, self._clocks[-1] if self._clocks else None)
        self._timings.setdefault(key, 0.0)
        self._clocks.append(key)
        start = self.clock()
        try:
            yield
        finally:
            self._clocks.remove(key)
            self._timings[key] += self.clock() - start

    def record(self, key: str, seconds: float) -> None:
        self._parents.setdefault(key, self._clocks[-1] if self._clocks else None)
        self._timings[key] = self._timings.get(key, 0.0) + seconds

    @property
    def timings(self) -> dict[str, float]:
        return {key: round(seconds, 2) for key, seconds in self._timings.items()}

    def summary(self, separator: str) -> str:
        """Each outer stage with its inner ones in brackets; one outermost stage is the total."""
        children: dict[str | None, list[str]] = collections.defaultdict(list)
        for key in self._timings:
            children[self._parents.get(key)].append(key)

        def one(key: str) -> str:
            text = f"{key} {seconds_text(self._timings[key])}"
            inner = children.get(key)
            return text + (f" ({', '.join(one(k) for k in inner)})" if inner else "")

        roots = children.get(None, [])
        if len(roots) == 1 and children.get(roots[0]):
            total = roots[0]
            return separator.join([*(one(k) for k in children[total]), f"total {seconds_text(self._timings[total])}"])
        return separator.join(one(key) for key in roots)


class BuildCondenser:
    """The docker output on a terminal: a finished line per build step (cached, or how long it took), the
    step's latest output on the live line, and the last BUILD_LOG_KEPT lines kept for a failure. It writes
    through the console's live line (`draw`) and its messages (`message`)."""

    def __init__(
        self,
        *,
        draw: Callable[[str, str], None],
        message: Callable[[str], None],
        width: Callable[[], int],
        clock: Callable[[], float],
        symbols: Symbols,
        style: Style,
    ) -> None:
        self.draw, self.message, self.width, self.clock = draw, message, width, clock
        self.symbols, self.style = symbols, style
        self.kept: collections.deque[str] = collections.deque(maxlen=BUILD_LOG_KEPT)
        self.step: tuple[str, float] | None = None
        self.cached = False

    def line(self, text: str) -> None:
        self.kept.append(text)
        step = BUILD_STEP.match(text)
        if step:
            self.finish_step()
            self.step = (f"[{step.group(1)}/{step.group(2)}] {step.group(3)}", self.clock())
            self.cached = False
            self.draw(self.step[0], self.symbols.stage)
        elif text.strip() == "---> Using cache":
            self.cached = True
        elif text.startswith(OUR_BUILD_LINES):
            self.message("  " + text)
        elif not ENGINE_NOISE.match(text):
            shown = f"{self.step[0]}: {text.strip()}" if self.step else text.strip()
            self.draw(shown, self.symbols.stage)

    def finish_step(self, *, failed: bool = False) -> None:
        if self.step is None:
            return
        label, started = self.step
        self.step = None
        symbols, style = self.symbols, self.style
        if failed:
            mark, status = style(symbols.failed, "red"), style("failed", "red")
        elif self.cached:
            mark, status = style(symbols.cached, "dim"), style("cached", "dim")
        else:
            mark, status = style(symbols.ok, "green"), style(seconds_text(self.clock() - started), "dim")
        room = self.width() - 1 - len(symbols.ok) - 12
        self.message(f"  {mark} {fit_line(label, max(room, 20), symbols.ellipsis)}  {status}")
