"""The runner's channels: the log (workflow commands, masks, log groups, fenced outside text), annotations, the
step outputs (GITHUB_OUTPUT) and the job summary file (GITHUB_STEP_SUMMARY). Everything written is masked first."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import TextIO

from agentdeploy.console import Console
from agentdeploy.errors import AgentDeployError, Location
from agentdeploy.jsonvalue import JsonValue


class GitHubConsole(Console):
    """Everything on stdout, in order, so the runner sees commands and text as they happened. Plain text
    always (a runner's log is no terminal); the build output whole, each outermost stage a log group.

    The runner carries out every workflow command it finds in the step's output, so only `command` issues
    them (masks, groups, annotations; escaped as the toolkit's command.ts does: %, CR and LF in the message,
    also `:` and `,` in a property). Any other text the runner could read as a command (what an agent, a
    target or the docker build said, quoted in a message) is fenced by `Console._write`."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out, out, environ={"GITHUB_ACTIONS": "true"}, interactive=False)

    def command(self, name: str, properties: Mapping[str, object] | None = None, message: str = "") -> None:
        """Issue a workflow command: its message and properties masked and escaped. Inside a block of outside
        output the runner reads no command, so the block is closed around it and opened again."""
        from actions_toolkit.command import Command

        shown = {key: self.redact(str(value)) for key, value in (properties or {}).items()}
        line = str(Command(name, shown, message if name == "add-mask" else self.redact(message)))
        with self.lock:
            fence = self._shared.fence
            if fence is not None:
                self.out.write(f"::{fence}::\n")
            self.out.write(line + "\n")
            if fence is not None:
                self._shared.fence = self._open_fence(line)
            self.out.flush()

    def _open_fence(self, text: str) -> str:
        token = self._fence_token(text)
        self.out.write(f"::stop-commands::{token}\n")
        return token

    def mask(self, values: list[str]) -> None:
        with self.lock:  # the command is a line of its own, also with several agents writing at once
            for value in values:
                if value.strip() and value not in self._secrets:
                    # ::add-mask:: before the value can appear anywhere; GitHub masks a line at a time, so each
                    # line of a multi-line value too.
                    lines = [line for line in value.splitlines() if line.strip()]
                    for form in dict.fromkeys([value, *(lines if len(lines) > 1 else [])]):
                        self.command("add-mask", {}, form)
            super().mask(values)

    def _section_start(self, name: str) -> None:
        self.command("group", {}, name)

    def _section_end(self, name: str, *, failed: bool, seconds: float) -> None:
        self.command("endgroup")

    @contextlib.contextmanager
    def untrusted(self) -> Iterator[None]:
        with self.lock:
            if self._shared.fence is not None:  # already inside a block (another agent's build)
                opened = False
            else:
                self._shared.fence, opened = self._open_fence(""), True
                self.out.flush()
        try:
            yield
        finally:
            if opened:
                with self.lock:
                    self.out.write(f"::{self._shared.fence}::\n")
                    self._shared.fence = None
                    self.out.flush()


def write_outputs(console: Console, outputs: Mapping[str, str]) -> None:
    from actions_toolkit import core

    for name, value in outputs.items():
        core.set_output(name, console.redact(value))  # file command with a random delimiter


def results_json(console: Console, entries: list[JsonValue]) -> str:
    """The `results` output: the entries masked before they are written as JSON (so an escaped secret is too)."""
    return json.dumps(console.redact_value(entries), separators=(",", ":"))


def append_summary(environ: Mapping[str, str], console: Console, markdown: str) -> None:
    path = environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(console.redact(markdown)[: 1024 * 1024 - 1024] + "\n")  # GitHub keeps 1 MiB per step


def annotate(console: GitHubConsole, error: AgentDeployError) -> None:
    """::error annotations, on the file and line when there is one (masked and escaped by `console.command`)."""

    def emit(message: str, title: str, location: Location | None = None) -> None:
        # Only the properties there are: core.error would write every one, empty ones too.
        spot = {}
        if location is not None:
            spot = {
                "file": location.file,
                "line": location.line,
                "endLine": location.line,
                "col": location.column,
                "endColumn": location.column,
            }
        console.command("error", {"title": title} | {k: v for k, v in spot.items() if v is not None}, message)

    def with_hint(message: str, hint: str | None) -> str:
        return message + (f" (fix: {hint})" if hint else "")

    located = [p for p in error.problems if p.location is not None and p.location.line is not None]
    if error.location is not None and error.location.line is not None:
        emit(error.message, "agentdeploy", error.location)
    for problem in located:
        emit(with_hint(problem.message, problem.hint), problem.key or "agentdeploy", problem.location)
    if not located and error.location is None:
        emit(with_hint(error.message, error.hint), "agentdeploy")
