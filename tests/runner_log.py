"""What GitHub's runner reads as workflow commands in a step's output: the rules of actions/runner, written out
from its source (src/Runner.Common/ActionCommand.cs, src/Runner.Worker/ActionCommandManager.cs), so a test can
see a log the way the runner acts on it, not the way our code meant it.

- The output is read a line at a time; a line ends at CR LF, CR or LF (.NET's StreamReader.ReadLine).
- `::name key=value,key=value::data` is a command when the line starts with it after leading whitespace is
  trimmed; names are matched without regard to case. Data is unescaped (%0D, %0A, %25), and so are property
  values (also %3A and %2C).
- The old form `##[name key=value;key=value]data` is a command wherever it appears in the line.
- Only registered names count. `::stop-commands::TOKEN` stops all processing until a command named TOKEN
  (`::TOKEN::`, or `##[TOKEN]`) is seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The command extensions the runner registers (ActionCommandManager.cs, FileCommandManager aside).
REGISTERED = frozenset(
    {
        *("add-mask", "add-matcher", "remove-matcher", "debug", "notice", "warning", "error"),
        *("group", "endgroup", "echo", "save-state", "set-output", "set-env", "add-path", "stop-commands"),
    }
)
ANNOTATIONS = ("error", "warning", "notice")
_DATA = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
_V1 = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%25", "%"))


@dataclass(frozen=True)
class WorkflowCommand:
    name: str  # lower case
    properties: dict[str, str] = field(default_factory=dict)
    data: str = ""


def _unescape(text: str, mappings: tuple[tuple[str, str], ...]) -> str:
    for escaped, plain in mappings:
        text = text.replace(escaped, plain)
    return text


def _v2(line: str, registered: set[str]) -> WorkflowCommand | None:
    message = line.lstrip()
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    info = message[2:end]
    name, _, rest = info.partition(" ")
    if name.lower() not in registered:
        return None
    properties = {}
    for pair in (p for p in rest.strip().split(",") if p):
        key, sep, value = pair.partition("=")
        if key and sep and value:
            properties[key.lower()] = _unescape(value, _PROPERTY)
    return WorkflowCommand(name.lower(), properties, _unescape(message[end + 2 :], _DATA))


def _v1(line: str, registered: set[str]) -> WorkflowCommand | None:
    start = line.find("##[")
    if start < 0:
        return None
    close = line.find("]", start)
    if close < 0:
        return None
    name, _, rest = line[start + 3 : close].partition(" ")
    if name.lower() not in registered:
        return None
    properties = {}
    for pair in (p for p in rest.split(";") if p):
        key, sep, value = pair.partition("=")
        if key and sep and value:
            properties[key.lower()] = _unescape(value, _V1)
    return WorkflowCommand(name.lower(), properties, _unescape(line[close + 1 :], _V1))


def runner_lines(output: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", output)


def read(output: str) -> tuple[list[WorkflowCommand], list[str]]:
    """(every command the runner would carry out for this output, in order; the log it shows). Stop-commands
    and its resume token are honoured and not listed; an add-mask line shows as `::add-mask::***`."""
    registered = set(REGISTERED)
    stopped: str | None = None
    found: list[WorkflowCommand] = []
    shown: list[str] = []
    for line in runner_lines(output):
        command = _v2(line, registered) or _v1(line, registered)
        if command is None or stopped is not None:
            shown.append(line)
            if command is not None and command.name == stopped:
                registered.discard(stopped)
                stopped = None
            continue
        if command.name == "stop-commands":
            stopped = command.data.lower()
            registered.add(stopped)
        else:
            found.append(command)
        shown.append("::add-mask::***" if command.name == "add-mask" else line)
    return found, shown


def workflow_commands(output: str) -> list[WorkflowCommand]:
    return read(output)[0]


def shown_log(output: str) -> str:
    return "\n".join(read(output)[1])


def annotations(output: str) -> list[WorkflowCommand]:
    return [command for command in workflow_commands(output) if command.name in ANNOTATIONS]
