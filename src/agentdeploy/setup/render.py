"""A set-up plan as text: a shell script to read and run top to bottom (commands keep what later ones need in
shell variables), or as JSON; and the --check report."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from agentdeploy.jsonvalue import JsonObject
from agentdeploy.setup.model import Command, SetupPlan, Step

_SHELL_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def shell_word(word: str) -> str:
    """One argument for a POSIX shell: single-quoted, except where it names a shell variable ($NAME, ${NAME}),
    which is double-quoted so that the shell fills it in and nothing else in it is expanded."""
    if not _SHELL_VARIABLE.search(word):
        return shlex.quote(word)
    escaped = re.sub(r'(["\\`])', r"\\\1", word)
    return f'"{escaped}"'


def command_line(command: Command) -> str:
    text = " ".join(shell_word(word) for word in command.argv)
    if command.unless:
        text = " ".join(shell_word(word) for word in command.unless) + " >/dev/null 2>&1 || " + text
    return f"{command.assign}=$({text})" if command.assign else text


def script(plan: SetupPlan, header: str) -> str:
    lines = [f"# {header}", "# Run top to bottom in one shell (later commands use variables set by earlier ones)."]
    lines += [f"# note: {note}" for note in plan.notes]
    for number, step in enumerate(plan.steps, 1):
        lines += ["", f"# {number}. {step.title}", f"#    {step.why}"]
        lines += [command_line(command) for command in step.commands]
    return "\n".join(lines) + "\n"


def plan_json(plan: SetupPlan) -> JsonObject:
    return {
        "steps": [_step_json(number, step) for number, step in enumerate(plan.steps, 1)],
        "notes": list(plan.notes),
    }


def _step_json(number: int, step: Step) -> JsonObject:
    return {
        "number": number,
        "key": step.key,
        "title": step.title,
        "why": step.why,
        "commands": [command_line(command) for command in step.commands],
        "argv": [list(command.argv) for command in step.commands],
        "unless": [list(command.unless) if command.unless else None for command in step.commands],
        "checked": bool(step.expects),
    }


def report_lines(plan: SetupPlan, verdicts: Sequence[tuple[str, str]]) -> list[str]:
    """One line per step: `N. title: present`, `... missing: what`, `... not checked: why`."""
    return [
        f"{number}. {step.title}: {status}" + (f": {detail}" if detail else "")
        for number, (step, (status, detail)) in enumerate(zip(plan.steps, verdicts, strict=True), 1)
    ]
