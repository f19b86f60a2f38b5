"""What a person sees: the real command line as its own process, on a pseudo-terminal and through a pipe.

`fakes/offline_cli.py` is `agentdeploy` with a stand-in Docker engine (a real legacy-builder log streamed
through the real image stage) and the process target (the agent as a local process, its gate showing
live lines), so none of this needs Docker. A terminal is a real pty (sized 120 columns); what it shows
is rebuilt from the bytes (`screen`: carriage returns overwrite, colour codes dropped).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentdeploy.console import Console
from agentdeploy.errors import ExitCode
from agentdeploy.terminal import SPARSE_SECONDS, waiting_text
from fakes.offline_cli import BUILD_LOG, BUILT_ID, FAILED_AT, FAILURE
from testkit import ROOT

OFFLINE_CLI = ROOT / "tests" / "fakes" / "offline_cli.py"
TOKEN = "tok-3f9a-SECRET-7c21"
SGR = re.compile(r"\x1b\[[0-9;]*m")
RELEASE_KEYS = {"status", "url", "revision", "previous_revision", "image", "image_tag", "digest", "skipped_build"}


def drain(master: int) -> str:
    """Everything written to a pty so far (it hands the output over in pieces), then close it."""
    raw = b""
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        raw += chunk
    os.close(master)
    return raw.decode()


def screen(raw: str) -> list[str]:
    """The lines a terminal shows for `raw`: colour dropped, each carriage return back to column 0."""
    lines = []
    for physical in SGR.sub("", raw).replace("\r\n", "\n").split("\n"):
        cells: list[str] = []
        column = 0
        for char in physical:
            if char == "\r":
                column = 0
                continue
            if column < len(cells):
                cells[column] = char
            else:
                cells.append(char)
            column += 1
        lines.append("".join(cells).rstrip())
    return [line for line in lines if line]


class Agent:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.config = directory / "agent.yaml"
        (directory / "prompt.md").write_text("Be kind.")
        self.config.write_text(
            "name: toy\n"
            "model: {provider: openai, name: gpt-4o}\n"
            "instructions: {file: prompt.md}\n"
            "deployment:\n"
            f"  port: {port}\n"
            "  health: {timeout_seconds: 5}\n"
            "  environment: {LOG_LEVEL: info}\n"
            "  secrets: {AGENT_TOKEN: '${AGENT_TOKEN}'}\n"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        # Nothing from this test run's environment that decides the output (CI, NO_COLOR, TERM, ...).
        return {"PATH": os.environ["PATH"], "HOME": str(self.directory), "AGENT_TOKEN": TOKEN, **extra}

    def command(self, *argv: str) -> list[str]:
        return [sys.executable, str(OFFLINE_CLI), *argv]

    def pipe(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*argv), cwd=self.directory, env=self.env(**env), capture_output=True, text=True, timeout=60
        )

    def tty(self, *argv: str, **env: str) -> tuple[int, str]:
        """Run with stdin, stdout and stderr on one pseudo-terminal; (exit code, everything it wrote)."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        process = subprocess.Popen(
            self.command(*argv),
            cwd=self.directory,
            env=self.env(**{"TERM": "xterm", **env}),
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        output = b""
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: the terminal's other side is closed
                        break
                    if not chunk:
                        break
                    output += chunk
                elif process.poll() is not None:
                    break
            code = process.wait(timeout=60)
        finally:
            os.close(master)
        return code, output.decode()


@pytest.fixture
def agent(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Agent]:
    made = Agent(tmp_path, free_port())
    yield made
    with contextlib.suppress(Exception):  # the agent process the target left running
        made.pipe("destroy", "agent.yaml", "--target", "process", "--yes")


def test_a_terminal_gets_colour_a_line_per_build_step_live_lines_and_a_summary(agent: Agent) -> None:
    code, raw = agent.tty("deploy", "agent.yaml", "--target", "process")
    assert code == ExitCode.OK, raw
    assert "\x1b[1;32msucceeded\x1b[0m" in raw and "\x1b[1m▸ image: build, push, verify\x1b[0m" in raw
    shown = screen(raw)
    # The build: one finished line per step (how long it took, or cached), none of the engine's own lines.
    steps = [line for line in shown if re.match(r"^  . \[\d/4\] ", line)]
    assert [re.sub(r"\d+\.\ds$", "<s>", line) for line in steps] == [
        "  ✓ [1/4] FROM agentdeploy-test-base:1  <s>",
        "  · [2/4] COPY --chown=0:0 app/ /app/  cached",
        "  ✓ [3/4] RUN /agentdeploy/check-runtime.sh 0.7.1  <s>",
        '  ✓ [4/4] CMD ["holodeck", "serve", "/app/agent.yaml"]  <s>',
    ]
    assert not [line for line in shown if line.startswith("Step ") or "--->" in line or "intermediate" in line]
    assert "  agentdeploy: holodeck-ai 0.7.1 is in the base" in shown  # our build-time check stays in sight
    # The health wait was a live line (masked), drawn over and gone when the release ended.
    wait = waiting_text(f"{agent.url}/health", 2, 5, "starting, token ***")
    assert f"\r\x1b[36m⠸\x1b[0m {wait}" in raw
    assert TOKEN not in raw and not [line for line in shown if "waiting for" in line]
    # The summary, and the status line last.
    assert f"image     {BUILT_ID}" in shown
    assert re.search(r"^revision  \d+$", "\n".join(shown), re.M)
    [timing] = [line for line in shown if line.startswith("time ")]
    assert re.fullmatch(
        r"time      plan \d+\.\ds · image \d+\.\ds \(pull \d+\.\ds, build \d+\.\ds\) · "
        r"release \d+\.\ds \(gate \d+\.\ds\) · total \d+\.\ds",
        timing,
    ), timing
    assert shown[-1] == f"✓ succeeded: {agent.url}"


@pytest.mark.parametrize(
    ("flags", "env"),
    [((), {"NO_COLOR": "1"}), ((), {"NO_COLOR": "false"}), (("--no-color",), {})],
    ids=["NO_COLOR=1", "NO_COLOR=false", "--no-color"],  # any value but the empty string
)
def test_no_colour_when_asked_yet_still_a_terminal(agent: Agent, flags: tuple[str, ...], env: dict[str, str]) -> None:
    code, raw = agent.tty(*flags, "deploy", "agent.yaml", "--target", "process", **env)
    assert code == ExitCode.OK, raw
    assert "\x1b" not in raw  # no escape sequence at all
    shown = screen(raw)
    assert "\r" in raw.replace("\r\n", "")  # the live lines are still drawn over
    assert "  · [2/4] COPY --chown=0:0 app/ /app/  cached" in shown and not any(s.startswith("Step ") for s in shown)
    assert shown[-1] == f"✓ succeeded: {agent.url}"


def test_the_flag_also_goes_after_the_command_and_an_empty_no_color_is_unset(agent: Agent) -> None:
    code, raw = agent.tty("deploy", "agent.yaml", "--target", "process", "--no-color", NO_COLOR="")
    assert code == ExitCode.OK and "\x1b" not in raw
    code, raw = agent.tty("status", "agent.yaml", "--target", "process", NO_COLOR="")
    assert code == ExitCode.OK
    code, raw = agent.tty("deploy", "agent.yaml", "--target", "process", "--force", NO_COLOR="")
    assert code == ExitCode.OK and "\x1b[1;32msucceeded\x1b[0m" in raw


def _plain(text: str, agent: Agent) -> list[str]:
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert lines[lines.index(BUILD_LOG[0]) : lines.index(BUILD_LOG[-1]) + 1] == BUILD_LOG  # the whole build log
    [timing] = [line for line in lines if line.startswith("time ")]
    assert re.fullmatch(
        r"time      plan \d+\.\ds; image \d+\.\ds \(pull \d+\.\ds, build \d+\.\ds\); "
        r"release \d+\.\ds \(gate \d+\.\ds\); total \d+\.\ds",
        timing,
    ), timing
    assert TOKEN not in text and "waiting for" not in text  # a wait under SPARSE_SECONDS prints nothing
    return lines


def test_a_pipe_gets_plain_text(agent: Agent) -> None:
    result = agent.pipe("deploy", "agent.yaml", "--target", "process")
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout == f"succeeded: {agent.url}\n"  # data only, as scripts read it
    lines = _plain(result.stderr, agent)
    assert f"image     {BUILT_ID}" in lines and not [line for line in lines if line.startswith("▸")]


@pytest.mark.parametrize("env", [{"CI": "true"}, {"GITHUB_ACTIONS": "true"}, {"TERM": "dumb"}], ids=str)
def test_a_ci_log_gets_plain_text_even_on_a_terminal(agent: Agent, env: dict[str, str]) -> None:
    code, raw = agent.tty("deploy", "agent.yaml", "--target", "process", **env)
    assert code == ExitCode.OK, raw
    lines = _plain(raw.replace("\r\n", "\n"), agent)  # the pty's own line endings aside
    assert lines[-1] == f"succeeded: {agent.url}"


def test_verbose_shows_the_whole_build_log_on_a_terminal(agent: Agent) -> None:
    code, raw = agent.tty("deploy", "agent.yaml", "--target", "process", "--verbose")
    assert code == ExitCode.OK, raw
    shown = screen(raw)
    assert shown[shown.index(BUILD_LOG[0]) : shown.index(BUILD_LOG[-1]) + 1] == BUILD_LOG
    assert "\x1b[" in raw  # still a terminal: colour


def test_a_failed_build_shows_its_output_on_a_terminal(agent: Agent) -> None:
    code, raw = agent.tty("deploy", "agent.yaml", "--target", "process", FAKE_BUILD_FAIL="1")
    assert code == ExitCode.BUILD, raw
    shown = screen(raw)
    assert "  ✗ [3/4] RUN /agentdeploy/check-runtime.sh 0.7.1  failed" in shown
    expected = [*BUILD_LOG[:FAILED_AT], FAILURE]
    start = shown.index(f"docker output (the last {len(expected)} lines):")
    assert shown[start + 1 : start + 1 + len(expected)] == ["    " + line for line in expected]
    assert "error: cannot install holodeck-ai==0.7.1: the base image has no pip" in shown
    assert "✗ image: build, push, verify: stopped after" in "\n".join(shown)


def test_json_reports_how_long_each_stage_took(agent: Agent) -> None:
    result = agent.pipe("deploy", "agent.yaml", "--target", "process", "--json")
    assert result.returncode == ExitCode.OK, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= RELEASE_KEYS and data["status"] == "succeeded"  # every output it had, still there
    timings = data["timings"]
    assert set(timings) == {"deploy", "plan", "image", "pull", "build", "release", "gate"}
    assert all(isinstance(value, float) and value >= 0 for value in timings.values())
    assert timings["gate"] >= 0.15  # the target's gate showed three live lines 0.05 s apart
    assert timings["deploy"] >= timings["image"] >= timings["build"] and timings["release"] >= timings["gate"]
    assert timings["deploy"] + 0.02 >= timings["plan"] + timings["image"] + timings["release"]

    again = agent.pipe("deploy", "agent.yaml", "--target", "process", "--json")
    data = json.loads(again.stdout)
    assert data["status"] == "unchanged" and set(data["timings"]) == {"deploy", "plan"}  # nothing built or released


# -- the console itself --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_secret_in_a_live_line_is_masked_before_the_line_is_cut() -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    with open(slave, "w", encoding="utf-8", closefd=True) as terminal:
        console = Console(terminal, terminal, environ={"TERM": "xterm"})
        assert console.live
        console.mask([TOKEN])
        console.progress("x" * 30 + TOKEN)  # cut at 39 columns, the secret would be cut in two
        console.progress(f"token={TOKEN}")
        console.info("done")
    text = drain(master)
    assert not [part for part in (TOKEN[:4], TOKEN[4:12], TOKEN[-6:]) if part in text]
    assert "x" * 30 + "***" in text and "token=***" in text
    assert screen(text) == ["done"]  # the live line was taken away before the message


def test_plain_progress_prints_a_line_at_most_every_sparse_seconds() -> None:
    clock, err = Clock(), io.StringIO()
    console = Console(io.StringIO(), err, environ={}, clock=clock)
    console.mask([TOKEN])
    for step in range(0, 46, 5):  # 0, 5, ... 45 s of waiting
        clock.now = 100.0 + step
        console.progress(f"waited {step}s, token {TOKEN}")
    console.info("healthy")
    clock.now += 1
    console.progress("a new wait starts over")
    assert SPARSE_SECONDS == 15
    assert err.getvalue().splitlines() == [
        "waited 15s, token ***",
        "waited 30s, token ***",
        "waited 45s, token ***",
        "healthy",
    ]


def test_stages_are_timed_by_short_keys_inner_inside_outer() -> None:
    clock, err = Clock(), io.StringIO()
    console = Console(io.StringIO(), err, environ={}, clock=clock)
    with console.timed("deploy"):
        with console.stage("plan"):
            clock.now += 0.4
        with console.stage("image: build, push, verify"):
            with console.timed("pull"):
                clock.now += 1.0
            with console.timed("build"):
                clock.now += 12.25
            with console.timed("push"):
                clock.now += 2.0
            with console.stage("push again"):  # a stage inside a stage: timed, no second header
                clock.now += 0.5
        with console.stage("release to docker"):
            clock.now += 0.5
            with console.timed("gate"):
                clock.now += 70.0
        console.record("gate", 1.0)  # measured elsewhere
    assert console.timings == {
        "deploy": 86.65,
        "plan": 0.4,
        "image": 15.75,
        "pull": 1.0,
        "build": 12.25,
        "push": 2.5,
        "release": 70.5,
        "gate": 71.0,
    }
    assert console.timing_summary() == (
        "plan 0.4s; image 15.8s (pull 1.0s, build 12.2s, push 2.5s); release 1m10.5s (gate 1m11.0s); total 1m26.7s"
    )
    assert err.getvalue() == ""  # plain output: stages print nothing of their own


def test_a_terminal_stage_that_fails_says_so() -> None:
    master, slave = pty.openpty()
    with open(slave, "w", encoding="utf-8") as terminal:
        console = Console(terminal, terminal, environ={"TERM": "xterm"}, no_color=True)
        with pytest.raises(RuntimeError), console.stage("release to docker"):
            raise RuntimeError("boom")
    assert screen(drain(master)) == ["▸ release to docker", "✗ release to docker: stopped after 0.0s"]


def test_the_azure_health_wait_shows_what_it_waits_for_and_counts_as_gate() -> None:
    """The Azure gate's wait_ready against revision states as the service reports them, on a fake clock."""
    from agentdeploy.targets.azure.release import AzureRelease
    from agentdeploy.targets.azure.settings import Adapters, AzureSettings

    clock, lines = Clock(), []
    console = Console(io.StringIO(), io.StringIO(), environ={}, clock=clock)
    states = iter(
        [
            {"provisioningState": "Provisioning", "runningState": "Activating"},
            {"provisioningState": "Provisioned", "runningState": "Running", "healthState": "None"},
            {"provisioningState": "Provisioned", "runningState": "Running", "healthState": "Healthy"},
        ]
    )

    def sleep(seconds: float) -> None:
        clock.now += seconds

    class Revisions:  # no ARM: the reads wait_ready makes
        def get_revision(self, name: str) -> dict[str, object]:
            return {"properties": next(states)}

        def get_app(self) -> dict[str, object]:
            return {"properties": {"latestReadyRevisionName": "app--v1"}}

    adapters = Adapters(
        probe=lambda url: (200, "{}"),  # type: ignore[arg-type,return-value]
        progress=lines.append,
        timed=console.timed,
        sleep=sleep,
        clock=clock,
    )
    target = AzureRelease(Revisions(), AzureSettings(resource_group="rg", app_name="app"), adapters)  # type: ignore[arg-type]
    ok, _ = target.gate.wait_ready("app--v1", 120)
    assert ok
    assert lines == [
        waiting_text(
            "revision app--v1", 0, 120, "provisioningState Provisioning, runningState Activating, healthState ?"
        ),
        waiting_text(
            "revision app--v1", 0.25, 120, "provisioningState Provisioned, runningState Running, healthState None"
        ),
    ]
    assert console.timings == {"gate": 0.62}  # 0.25 + 0.375 s of waiting
