"""The README's commands are the CLI's: every row of its command table, and every `agentdeploy ...` line it shows
elsewhere, names a command whose `--help` lists each flag the README gives it. Read from the README as it is, so a
command added to the table (and to the CLI) is checked with no change here."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import pytest

from testkit import ROOT

README = (ROOT / "README.md").read_text()


def table_commands(readme: str) -> list[str]:
    """The first cells of the command table: `agentdeploy deploy CONFIG... [--parallel N] ...`."""
    return re.findall(r"^\| `(agentdeploy [^`]*)` \|", readme, re.M)


def other_commands(readme: str) -> list[str]:
    """Every other command line the README shows: inline code, and the lines of its shell blocks."""
    inline = re.findall(r"(?<!\| )`(agentdeploy [^`]*)`", readme)
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", readme, re.S))
    return sorted({*inline, *re.findall(r"^(agentdeploy .*)$", blocks, re.M)})


@functools.cache
def help_text(*words: str) -> tuple[int, str]:
    """`agentdeploy WORDS --help` as a user runs it: its exit code and what it prints."""
    result = subprocess.run(
        [sys.executable, "-m", "agentdeploy", *words, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"},
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def parse(line: str) -> tuple[list[str], list[str], list[str]]:
    """A README command line: flags before the command, the command's words (`deploy`, `base build`), its flags."""
    text = line.replace("\\|", " ")  # `[--push\|--no-push]`: a pipe escaped inside a table cell
    text = text.split(" | ")[0].split(" #")[0]  # a pipe into another program; a shell comment
    tokens = text.split()
    assert tokens[0] == "agentdeploy", line
    index = 1
    before: list[str] = []
    while index < len(tokens) and tokens[index].startswith("-"):
        before.append(tokens[index])
        index += 1
    words: list[str] = []
    while index < len(tokens) and re.fullmatch(r"[a-z][a-z-]*", tokens[index]):
        words.append(tokens[index])
        index += 1
    flags = re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", " ".join(tokens[index:]))
    return before, words, flags


def lists(help_output: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_output) is not None


def missing(line: str) -> list[str]:
    """What the README line claims that `--help` does not show: the command, or each flag it lacks."""
    before, words, flags = parse(line)
    code, shown = help_text(*words)
    if code != 0 or not shown.startswith(f"usage: {' '.join(['agentdeploy', *words])}"):
        return [f"command {' '.join(words)!r}"]
    _, top = help_text()
    return [flag for flag in before if not lists(top, flag)] + [flag for flag in flags if not lists(shown, flag)]


def test_the_readme_has_its_command_table() -> None:
    commands = {tuple(parse(line)[1]) for line in table_commands(README)}
    assert len(commands) >= 10, commands
    assert {("deploy",), ("plan",), ("rollback",), ("status",), ("destroy",)} <= commands


@pytest.mark.parametrize("line", table_commands(README), ids=lambda line: " ".join(parse(line)[1]))
def test_each_command_in_the_table_and_its_flags_are_in_its_help(line: str) -> None:
    assert missing(line) == []


@pytest.mark.parametrize("line", other_commands(README), ids=lambda line: line.split(" #")[0].strip())
def test_every_other_command_line_in_the_readme_uses_real_flags(line: str) -> None:
    assert missing(line) == []


def test_a_flag_or_command_the_cli_lacks_is_reported() -> None:
    assert missing("agentdeploy deploy CONFIG... [--json] [--no-such-flag] [--push\\|--no-pusher]") == [
        "--no-such-flag",
        "--no-pusher",
    ]
    assert missing("agentdeploy --no-such-global status CONFIG") == ["--no-such-global"]
    assert missing("agentdeploy no-such-command CONFIG --json") == ["command 'no-such-command'"]
    # --json is deploy's, not logs': a flag must be the command's own.
    assert missing("agentdeploy logs CONFIG --json") == ["--json"]


def test_the_parser_reads_the_readmes_forms() -> None:
    assert parse("agentdeploy rollback CONFIG [--to previous\\|TAG\\|DIGEST\\|REVISION] [--json]") == (
        [],
        ["rollback"],
        ["--to", "--json"],
    )
    assert parse("agentdeploy logs examples/hello-agent/agent.yaml --tail 20     # the output (-f follows it)") == (
        [],
        ["logs"],
        ["--tail"],
    )
    assert parse("agentdeploy status | head -1") == ([], ["status"], [])
    assert parse("agentdeploy --no-color deploy ...") == (["--no-color"], ["deploy"], [])
    assert parse("agentdeploy base build [--push]") == ([], ["base", "build"], ["--push"])
