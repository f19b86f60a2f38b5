"""Trust boundaries of the output channels: text from the agent or the target becomes no workflow command in the
Actions log, no markup in the job summary, and no secret reaches any channel (the log, annotations, outputs, the
summary, the state record, `--json`). The log is read by GitHub's own rules (tests/runner_log.py), the summary by
GitHub's own markdown renderer (cmark-gfm)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from html import escape as html_escape
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from agentdeploy.console import Console
from agentdeploy.errors import ConfigError, DeployError, ExitCode, Location, Problem
from agentdeploy.github.console import GitHubConsole, annotate
from agentdeploy.github.inputs import ActionInputs
from agentdeploy.github.summary import Details, several_summary_markdown, summary_markdown
from agentdeploy.release.commands import Command
from agentdeploy.release.outcomes import Many, Outcome
from agentdeploy.state.store import DeploymentRecord, DeploymentState, StateStore
from agentdeploy.terminal import MASK
from runner_log import annotations, shown_log, workflow_commands
from testkit import ROOT

SECRET = "sk-live-0123456789abcdef"

HOSTILE = [
    "::error title=spoofed::pwned",
    "  ::set-output name=url::http://evil.example",  # the runner trims leading whitespace first
    "\t::ADD-MASK::ready",  # command names match without regard to case
    'not ready {"ready":false}\r::warning::a carriage return ends a line for the runner',
    "the agent said ##[error]the old form counts anywhere in a line",
    "first line\n::stop-commands::guess\n::error::behind a stop of its own",
]


def _action_console() -> tuple[GitHubConsole, io.StringIO]:
    out = io.StringIO()
    return GitHubConsole(out), out


@pytest.mark.parametrize("said", HOSTILE)
def test_no_line_of_text_from_outside_becomes_a_workflow_command(said: str) -> None:
    console, out = _action_console()
    console.info(f"error: the new version failed its health gate: /ready: {said}")
    console.data(said)
    console.warn(Problem(f"the agent answered: {said}", hint=said))
    console.summary([("reason", said)])
    with console.stage(f"release {said}"):  # a stage's name becomes a group's title: escaped, one line
        console.info(said)
    log = out.getvalue()
    commands = workflow_commands(log)
    assert [c.name for c in commands] == ["group", "endgroup"], commands
    assert commands[0].data == f"release {said}"
    shown = shown_log(log)
    for line in said.splitlines():  # what the agent said is still there to read, as it was written
        assert line in shown


def test_ordinary_lines_are_written_as_they_are() -> None:
    console, out = _action_console()
    console.info("starting toy from sha256:abc (http://[::1]:8080)")
    console.data("succeeded: http://127.0.0.1:8080")
    assert out.getvalue() == "starting toy from sha256:abc (http://[::1]:8080)\nsucceeded: http://127.0.0.1:8080\n"


def test_a_child_console_of_several_agents_fences_what_its_prefix_does_not_cover() -> None:
    console, out = _action_console()
    console.child("alpha").info("answer ##[error title=spoofed]pwned\r::error::and a line of its own")
    assert workflow_commands(out.getvalue()) == []
    assert "[alpha] answer ##[error title=spoofed]pwned" in shown_log(out.getvalue())


def test_a_mask_issued_inside_the_build_block_is_still_read_and_the_block_still_holds() -> None:
    """The docker build's output sits in a stop-commands block; a mask issued meanwhile (another agent's secrets)
    must reach the runner, and the output after it must still command nothing."""
    console, out = _action_console()
    with console.untrusted():
        console.info("Step 1/4 : FROM base\n::error::from a RUN step")
        console.mask([SECRET])
        console.info("::set-output name=url::http://evil.example")
    console.info(f"after the build: {SECRET}")
    commands = workflow_commands(out.getvalue())
    assert [(c.name, c.data) for c in commands] == [("add-mask", SECRET)]
    assert f"after the build: {MASK}" in shown_log(out.getvalue())


def test_a_multi_line_secret_is_masked_whole_and_line_by_line() -> None:
    """GitHub masks a log line at a time: a multi-line value is given to it line by line as well."""
    console, out = _action_console()
    key = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----"
    console.mask([key])
    console.info("the agent logged QUJDREVGR0hJSktMTU5PUA== at start-up")
    masks = [c.data for c in workflow_commands(out.getvalue()) if c.name == "add-mask"]
    assert masks == [key, "-----BEGIN KEY-----", "QUJDREVGR0hJSktMTU5PUA==", "-----END KEY-----"]
    assert "the agent logged *** at start-up" in shown_log(out.getvalue())


def test_annotations_are_masked_and_their_properties_escaped_as_the_toolkit_does() -> None:
    console, out = _action_console()
    console.mask([SECRET])
    error = ConfigError(
        "agent.yaml has 1 problem",
        problems=[
            Problem(
                f"the agent echoed {SECRET}\n::error title=spoofed::pwned",
                location=Location("agents/a,b:c/agent.yaml", 4, 3),
                key="deployment.x,title=spoofed:",
                hint="remove it",
            )
        ],
    )
    annotate(console, error)
    [annotation] = annotations(out.getvalue())
    assert annotation.properties == {
        "title": "deployment.x,title=spoofed:",
        "file": "agents/a,b:c/agent.yaml",
        "line": "4",
        "endline": "4",
        "col": "3",
        "endcolumn": "3",
    }
    assert annotation.data == f"the agent echoed {MASK}\n::error title=spoofed::pwned (fix: remove it)"


def test_json_masks_a_secret_in_every_form_it_is_written() -> None:
    """`--json` escapes what it writes: a secret with a quote, a backslash or a non-ASCII letter is written
    escaped, and must be masked in that form too; so must one quoted with Python's repr in a message."""
    odd = 'pa"ss\\wörd-42'
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err, environ={})
    console.mask([odd])
    console.json({"error": f"the agent answered {odd}", "quoted": f"answer {odd!r}", odd: "as a key"})
    written = out.getvalue()
    assert json.loads(written) == {
        "error": f"the agent answered {MASK}",
        "quoted": f"answer '{MASK}'",
        MASK: "as a key",
    }
    for form in (odd, json.dumps(odd)[1:-1], repr(odd)[1:-1]):
        assert form not in written


def test_the_state_record_is_saved_through_the_masker(tmp_path: Path) -> None:
    console = Console(io.StringIO(), io.StringIO(), environ={})
    console.mask([SECRET])
    store = StateStore(
        tmp_path / "toy.local.json", agent="toy", environment="local", target="docker", redact=console.redact
    )
    state = DeploymentState("toy", "local", "docker")
    failed = DeploymentRecord(
        action="deploy",
        status="failed",
        started_at="2026-12-05T17:00:00Z",
        message=f"the new version failed its health gate: /ready: HTTP 200 {SECRET}",
        url=f"http://127.0.0.1:8080/?key={SECRET}",
    )
    state.add(failed)
    state.pending = failed
    store.save(state)
    text = store.path.read_text()
    assert SECRET not in text
    saved = store.load()
    assert saved.history[0].message == "the new version failed its health gate: /ready: HTTP 200 ***"
    assert saved.pending is not None and saved.pending.url == "http://127.0.0.1:8080/?key=***"
    assert state.history[0].message.endswith(SECRET)  # the run's own copy is left as it was


# -- the job summary, rendered as GitHub renders it -------------------------------------------------------------


def _html(markdown: str) -> str:
    # Unsafe: raw HTML kept, as GitHub keeps the HTML its sanitiser allows; what we write must hold none.
    return str(cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE))


HOSTILE_MARKDOWN = (
    'not ready <img src="https://evil.example/pixel"> | **Status** | succeeded |\n\n### Deployed\n'
    "[approve here](https://evil.example) or https://evil.example or www.evil.example or ops@evil.example "
    "`code` ~~gone~~ $x^2$ &amp; ![i](https://evil.example/i.png)"
)


def _inputs(command: str = "deploy") -> ActionInputs:
    return ActionInputs.from_env({"AGENTDEPLOY_COMMAND": command})


def test_an_agents_words_in_the_summary_of_several_agents_are_text_not_markup() -> None:
    failed = Outcome(config="agents/a/agent.yaml", agent="alpha", target="process")
    failed.fail(DeployError(f"the new version failed its health gate: /ready: {HOSTILE_MARKDOWN}", hint="read it"))
    html = _html(several_summary_markdown(_inputs(), Many(Command.DEPLOY, [failed])))
    for markup in ("<img", "<a ", "<h3>Deployed", "<del>", "<strong>Status", "<em>"):
        assert markup not in html
    assert len(re.findall(r"<td>", html)) == 6  # one row of the table's six cells: no cell was added
    [item] = re.findall(r"<li>(.*?)</li>", html, re.S)
    assert item == (
        "<strong>alpha</strong>: <code>the new version failed its health gate: /ready: "
        + html_escape(" ".join(HOSTILE_MARKDOWN.split()))
        + "</code> (fix: read it)"
    )


def test_a_targets_values_in_the_summary_are_text_unless_plainly_a_url() -> None:
    outputs = {
        "status": "succeeded",
        "url": "https://toy.example.azurecontainerapps.io",
        "revision": "toy--``x`<b>bold</b>|",
        "image": "127.0.0.1:5000/toy@sha256:" + "ab" * 32,
        "plan": "update: image <script>x</script>",
    }
    html = _html(summary_markdown("agent.yaml", _inputs(), outputs, Details(label_url="javascript:alert(1)")))
    assert '<a href="https://toy.example.azurecontainerapps.io">' in html  # a plain URL is still a link
    assert f"<td><code>127.0.0.1:5000/toy@sha256:{'ab' * 32}</code></td>" in html
    assert "<td><code>toy--``x`&lt;b&gt;bold&lt;/b&gt;|</code></td>" in html  # its backticks close nothing
    assert "<b>" not in html and "<script>" not in html and 'href="javascript' not in html
    assert "<code>javascript:alert(1)</code> (0% until promote)" in html
    assert len(re.findall(r"<tr>", html)) == 11  # the header and ten rows, each of two cells
    assert len(re.findall(r"<td>", html)) == 20


# -- the command line in a workflow's run: step ------------------------------------------------------------------


def test_the_cli_in_a_workflow_step_prints_an_agents_words_as_text_and_its_json_stays_json(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    """`agentdeploy deploy '*/agent.yaml' --json` in a `run:` step (GITHUB_ACTIONS=true): the runner reads both
    streams. The agent (the process target's stand-in, misbehaving) answers its verify turn with commands and
    the secret it was given: no command reaches the runner, the JSON on stdout still parses and quotes the answer,
    the secret is masked everywhere."""
    directory = tmp_path / "toy"
    directory.mkdir()
    (directory / "prompt.md").write_text("Be kind.")
    (directory / "agent.yaml").write_text(
        "name: toy\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
        f"deployment:\n  port: {free_port()}\n  health: {{timeout_seconds: 2}}\n"
        "  secrets: {AGENT_TOKEN: '${AGENT_TOKEN}'}\n"
        "  verify: {chat: [{message: hello, expect: toy}]}\n"
    )
    answer = "Sure.\n::set-output name=url::http://evil ##[error title=spoofed]pwned $AGENT_TOKEN"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GITHUB_ACTIONS": "true",
        "AGENT_TOKEN": SECRET,
        "AGENT_CHAT_ANSWER": answer,
    }
    command = [sys.executable, str(ROOT / "tests" / "fakes" / "offline_cli.py")]
    try:
        result = subprocess.run(
            [*command, "deploy", "*/agent.yaml", "--target", "process", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == ExitCode.DEPLOY, result.stdout + result.stderr
        assert workflow_commands(result.stdout) == [] and workflow_commands(result.stderr) == []
        [entry] = json.loads(result.stdout)
        assert entry["status"] == "failed"
        assert entry["error"].endswith(f"{' '.join(answer.replace('$AGENT_TOKEN', MASK).split())!r}")
        assert SECRET not in result.stdout + result.stderr
        assert "##[error title=spoofed]pwned ***" in shown_log(result.stderr)  # still there to read
    finally:
        subprocess.run(
            [*command, "destroy", "toy/agent.yaml", "--target", "process", "--yes"], cwd=tmp_path, env=env, timeout=60
        )
