"""The local target survives interruption: real signals sent to a real CLI process at each point of a
release (during the build, after the old container stopped, during the gate, during the rollback), and a
closed output pipe. Afterwards either the old version serves or the new verified one; `status` and `plan`
report an unfinished transition and change nothing, and `repair`, `deploy` and `rollback` repair it and say so."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.cli import main
from agentdeploy.errors import ExitCode
from testkit import http_get

pytestmark = pytest.mark.docker

IMAGE_LABEL = "dev.agentdeploy.image"


@dataclass
class Process:
    """A CLI run in its own process, its stderr read line by line as it comes."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    seen: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self.seen:
                self.lines.append(line.rstrip("\n"))
                self.seen.notify_all()
        with self.seen:
            self.lines.append("<eof>")
            self.seen.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        with self.seen:
            found = self.seen.wait_for(
                lambda: any(text in line for line in self.lines) or "<eof>" in self.lines, timeout
            )
        assert found and any(text in line for line in self.lines), f"never printed {text!r}:\n" + self.output

    def finish(self, timeout: float = 90) -> int:
        code = self.popen.wait(timeout)
        with self.seen:
            self.seen.wait_for(lambda: "<eof>" in self.lines, 10)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Agent:
    config: Path
    port: int
    environ: dict[str, str]
    docker: Any

    @property
    def container(self) -> str:
        return f"agentdeploy-sig-{self.port}"

    def write(
        self,
        version: str,
        *,
        unhealthy: bool = False,
        crash: bool = False,
        start_delay: int = 0,
        health_path: str = "/health",
        timeout: int = 60,
        base: str = "agentdeploy-test-base:1",
    ) -> None:
        environment = {"LOG_LEVEL": "info"}
        if unhealthy:
            environment["AGENT_TEST_UNHEALTHY"] = "1"
        if crash:
            environment["AGENT_TEST_CRASH"] = "1"
        if start_delay:
            environment["AGENT_TEST_START_DELAY"] = str(start_delay)
        self.config.write_text(
            "name: sig-agent\n"
            f"description: version {version}\n"
            "model: {provider: openai, name: gpt-4o}\n"
            "instructions: {file: prompt.md}\n"
            "deployment:\n"
            f"  port: {self.port}\n"
            f"  health: {{path: {health_path}, timeout_seconds: {timeout}}}\n"
            f"  environment: {json.dumps(environment)}\n"
            "  secrets: {API_KEY: '${API_KEY}'}\n"
            f"  build: {{base_image: '{base}'}}\n"
            f"  target: {{docker: {{container_name: {self.container}}}}}\n"
        )
        (self.config.parent / "prompt.md").write_text("Be kind.")

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv[:1], str(self.config), *argv[1:]], environ=self.environ, out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    def start(self, *argv: str, stdout: int = subprocess.DEVNULL, merge: bool = False) -> Process:
        popen = subprocess.Popen(
            [sys.executable, "-m", "agentdeploy", *argv[:1], str(self.config), *argv[1:]],
            stdout=stdout,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            text=True,
            env=self.environ,
            # As from a terminal: Ctrl-C's default, also when this test run was started in the background (where
            # the shell hands SIGINT on ignored, and a program rightly keeps ignoring it).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        process = Process(popen)
        if not merge:
            threading.Thread(target=process.read, daemon=True).start()
        return process

    def serving(self) -> str:
        """The version that answers on the agent's port now ("" when nothing answers)."""
        try:
            status, body = http_get(f"http://127.0.0.1:{self.port}/config")
        except OSError:
            return ""
        if status != 200:
            return ""
        return next((line.split()[-1] for line in body.splitlines() if line.startswith("description:")), "")

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.config.parent / ".agentdeploy" / "sig-agent.local.json").read_text()))

    def containers(self) -> dict[str, str]:
        """Our containers by name, with the image each runs."""
        found = {}
        for name in (self.container, self.container + "-previous"):
            with contextlib.suppress(Exception):
                container = self.docker.containers.get(name)
                found[name] = f"{container.labels.get(IMAGE_LABEL, '')} {container.status}"
        return found


@pytest.fixture
def agent(tmp_path: Path, docker_client: Any, base_image: str, free_port: Callable[[], int]) -> Iterator[Agent]:
    directory = tmp_path / "agent"
    directory.mkdir()
    environ = {
        "API_KEY": "SENTINEL-sig-agent-key",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    if "DOCKER_HOST" in os.environ:
        environ["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    made = Agent(directory / "agent.yaml", free_port(), environ, docker_client)
    yield made
    for name in (made.container, made.container + "-previous"):
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True)


def deployed(agent: Agent, version: str, **settings: Any) -> None:
    agent.write(version, **settings)
    code, _, err = agent.run("deploy")
    assert code == 0, err
    assert agent.serving() == version


def signalled_in_gate(agent: Agent, sent: signal.Signals) -> Process:
    """v1 serves; a deploy of an unhealthy v2 is sent `sent` while its gate waits (it would wait 60 s)."""
    deployed(agent, "v1")
    agent.write("v2", unhealthy=True)
    process = agent.start("deploy")
    process.wait_for(f"starting {agent.container} from")
    time.sleep(1)
    process.popen.send_signal(sent)
    process.finish()
    return process


def test_sigint_during_the_gate_restores_the_old_version_and_records_it(agent: Agent) -> None:
    process = signalled_in_gate(agent, signal.SIGINT)
    assert process.popen.returncode == ExitCode.INTERRUPTED, process.output
    assert "interrupted by SIGINT during the release: what served before serves again" in process.output
    assert agent.serving() == "v1"
    assert list(agent.containers()) == [agent.container]  # nothing kept aside, nothing half-done
    state = agent.state()
    assert state["pending"] is None
    latest = state["history"][0]
    assert (latest["status"], latest["message"]) == ("rolled-back", "interrupted by SIGINT during the health gate")
    assert state["current"]["image"] == state["history"][1]["image"]  # v1's record still serves
    assert "Traceback" not in process.output


def test_sigterm_during_the_gate_is_handled_like_sigint(agent: Agent) -> None:
    process = signalled_in_gate(agent, signal.SIGTERM)
    assert process.popen.returncode == ExitCode.INTERRUPTED, process.output
    assert agent.serving() == "v1"
    assert agent.state()["history"][0]["message"] == "interrupted by SIGTERM during the health gate"


def test_sigkill_during_the_gate_is_repaired_by_the_next_command(agent: Agent) -> None:
    process = signalled_in_gate(agent, signal.SIGKILL)
    v1_image = agent.state()["current"]["image"]

    # What SIGKILL leaves: the unverified v2 answers, v1 is stopped aside, the record says a release is under way.
    assert agent.serving() == "v2"
    assert agent.containers()[agent.container + "-previous"] == f"{v1_image} exited"
    pending = agent.state()["pending"]
    assert pending["status"] == "pending" and pending["run_id"].endswith(f"pid {process.popen.pid}")

    # A reader reports it and changes nothing: the unverified v2 still answers, v1 is still aside, same record.
    state_file = agent.config.parent / ".agentdeploy" / "sig-agent.local.json"
    before, containers = state_file.read_bytes(), agent.containers()
    ids = {name: agent.docker.containers.get(name).id for name in containers}
    for reader in ("status", "plan"):
        code, out, err = agent.run(reader, *(["--json"] if reader == "status" else []))
        assert code == 0, err
        assert f"unfinished: {pending['run_id']} stopped during its deploy of" in err
        assert f"; {pending['image']} serves now. Nothing was changed" in err
        assert "repaired" not in err
        assert state_file.read_bytes() == before and agent.containers() == containers
        assert {name: agent.docker.containers.get(name).id for name in containers} == ids
        assert agent.serving() == "v2"
        if reader == "status":
            reported = json.loads(out)["pending"]
            assert (reported["state"], reported["run_id"], reported["serving"]) == (
                "unfinished",
                pending["run_id"],
                pending["image"],
            )

    code, out, err = agent.run("repair", "--json")  # the explicit repair puts v1 back
    assert code == 0, err
    assert f"pid {process.popen.pid} stopped during its deploy of" in err
    assert "repaired (rolled-back)" in err
    assert json.loads(out)["status"] == "rolled-back"
    assert agent.serving() == "v1"
    assert list(agent.containers()) == [agent.container]
    state = agent.state()
    assert state["pending"] is None
    assert state["history"][0]["status"] == "rolled-back"
    assert state["history"][0]["message"].startswith(f"repaired after {pending['run_id']} died")
    assert state["current"]["image"] == v1_image


def test_the_next_deploy_after_sigkill_repairs_first_and_keeps_the_real_previous(agent: Agent) -> None:
    signalled_in_gate(agent, signal.SIGKILL)
    v1_image = agent.state()["current"]["image"]

    agent.write("v3")
    code, _, err = agent.run("deploy", "--json")
    assert code == 0, err
    assert err.index("repaired (rolled-back)") < err.index("starting")  # repaired before the release
    assert agent.serving() == "v3"
    state = agent.state()
    assert [entry["status"] for entry in state["history"][:3]] == ["succeeded", "rolled-back", "succeeded"]
    assert state["history"][0]["previous_image"] == v1_image  # v3 replaced v1, not the unverified v2


def test_sigkill_right_after_the_old_container_stopped(agent: Agent) -> None:
    deployed(agent, "v1")
    agent.write("v2", unhealthy=True)
    process = agent.start("deploy")
    process.wait_for(f"stopping the running container {agent.container}")
    for _ in range(200):  # the moment the old container is set aside
        if agent.container + "-previous" in agent.containers():
            break
        time.sleep(0.02)
    process.popen.kill()
    process.finish()
    assert agent.state()["pending"]["status"] == "pending"

    code, _, err = agent.run("repair")
    assert code == 0, err
    assert "repaired (rolled-back)" in err
    assert agent.serving() == "v1"
    assert list(agent.containers()) == [agent.container]


def test_sigkill_during_the_rollback_is_repaired(agent: Agent) -> None:
    deployed(agent, "v1", start_delay=4)  # slow to come up: the rollback's own gate takes seconds
    agent.write("v2", crash=True)
    process = agent.start("deploy")
    process.wait_for("rolling back to the previous container")
    time.sleep(0.5)
    process.popen.kill()
    process.finish()
    assert agent.state()["pending"] is not None, process.output + json.dumps(agent.state(), indent=1)

    code, _, err = agent.run("repair")
    assert code == 0, err
    assert "repaired (rolled-back)" in err
    assert agent.serving() == "v1"
    assert agent.state()["history"][0]["status"] == "rolled-back"


def test_sigint_during_the_build_changes_nothing(agent: Agent, tmp_path: Path) -> None:
    deployed(agent, "v1")
    before = agent.docker.containers.get(agent.container).id
    history = agent.state()["history"]
    # A base whose first build step takes long (an ONBUILD trigger runs within the FROM step): the signal arrives
    # while the build runs, however fast the rest of it is from the layer cache.
    slow = f"agentdeploy-test-base:slow-{agent.port}"
    recipe = tmp_path / "slow-base"
    recipe.mkdir()
    # Its own words each run: the layer cache must never hold the trigger's step from an earlier run.
    (recipe / "Dockerfile").write_text(
        f"FROM agentdeploy-test-base:1\nONBUILD RUN echo {uuid.uuid4().hex} && sleep 60\n"
    )
    agent.docker.images.build(path=str(recipe), tag=slow, rm=True)
    try:
        agent.write("v2", base=slow)
        process = agent.start("deploy", "--verbose")
        process.wait_for("Step 1/")
        process.popen.send_signal(signal.SIGINT)
        assert process.finish() == ExitCode.INTERRUPTED, process.output
    finally:
        # The engine may still be ending the interrupted build's container, which uses this base: the name goes.
        agent.docker.images.remove(slow, force=True)
    assert agent.serving() == "v1"
    assert agent.docker.containers.get(agent.container).id == before
    state = agent.state()
    assert state["pending"] is None and state["history"] == history


def test_a_closed_output_pipe_never_interrupts_a_release(agent: Agent) -> None:
    deployed(agent, "v1")
    agent.write("v2")
    # `agentdeploy deploy ... 2>&1 | head -2`: the reader goes away after two lines.
    process = agent.start("deploy", stdout=subprocess.PIPE, merge=True)
    assert process.popen.stdout is not None
    for _ in range(2):
        process.popen.stdout.readline()
    process.popen.stdout.close()
    assert process.popen.wait(90) == 0
    assert agent.serving() == "v2"
    state = agent.state()
    assert state["pending"] is None and state["history"][0]["status"] == "succeeded"


@pytest.mark.parametrize("command", ["status", "image"])
def test_a_reader_that_goes_away_is_not_an_error(agent: Agent, command: str) -> None:
    deployed(agent, "v1")
    process = subprocess.run(
        f"{sys.executable} -m agentdeploy {command} {agent.config} | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        env=agent.environ,
        timeout=60,
        check=False,
    )
    assert process.stdout.strip() == "0", process.stderr
    assert "internal error" not in process.stderr and "Traceback" not in process.stderr


def test_an_automatic_rollback_judges_the_old_version_by_its_own_health_path(agent: Agent) -> None:
    deployed(agent, "v1", timeout=15)
    agent.write("v2", health_path="/healthz", timeout=3)  # the fake runtime has no /healthz: v2 fails its gate
    code, _, err = agent.run("deploy")
    assert code == ExitCode.ROLLED_BACK, err
    assert "did not recover" not in err
    assert agent.serving() == "v1"


def test_a_manual_rollback_judges_the_version_by_the_settings_it_was_deployed_with(agent: Agent) -> None:
    deployed(agent, "v1")  # /health
    deployed(agent, "v2", health_path="/config")  # served on /config too
    agent.write("v3", health_path="/healthz", timeout=3)  # today's config: a path v1 does not have
    code, _, err = agent.run("rollback", "--to", "previous")
    assert code == 0, err
    assert agent.serving() == "v1"


def test_rollback_after_the_first_deploy_says_there_is_nothing_earlier(agent: Agent) -> None:
    deployed(agent, "v1")
    code, _, err = agent.run("rollback")
    assert code == ExitCode.NOTHING_TO_ROLL_BACK
    assert "nothing earlier to roll back to: only the version that serves now is recorded" in err
    assert agent.serving() == "v1"


def test_status_right_after_a_passed_gate_says_healthy(agent: Agent) -> None:
    deployed(agent, "v1")
    code, out, err = agent.run("status", "--json")  # within the HEALTHCHECK's first interval
    assert code == 0, err
    live = json.loads(out)["live"]
    assert (live["state"], live["health"]) == ("running", "healthy")
    agent.docker.containers.get(agent.container).exec_run(["rm", "/tmp/www/health"])
    code, out, _ = agent.run("status", "--json")
    assert json.loads(out)["live"]["health"] == "unhealthy"
