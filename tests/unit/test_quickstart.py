"""scripts/quickstart, the README's first command: what it does on machines that lack something.

The machine is staged with stand-ins for the system commands it calls (docker, dockerd, systemctl,
sudo) on PATH, each recording its calls; the success path on a real engine is the README session test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import ROOT


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    """A copy of the parts quickstart uses, a .venv whose agentdeploy records its arguments, and a bin/."""
    project = tmp_path / "clone"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "quickstart", project / "scripts" / "quickstart")
    (project / ".venv" / "bin").mkdir(parents=True)
    stub(
        project / ".venv" / "bin",
        "agentdeploy",
        'echo "agentdeploy $*" >> "$CALLS"; echo "succeeded: http://127.0.0.1:8080"',
    )
    stub(project / ".venv" / "bin", "python", f'exec {sys.executable} "$@"')
    (tmp_path / "bin").mkdir()
    for tool in ("id", "seq", "sleep", "printf", "cat", "sh", "dirname", "env", "touch", "nohup"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, tmp_path / "bin" / tool)
    os.symlink(sys.executable, tmp_path / "bin" / "python3")
    return project


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def run(project: Path, **environ: str) -> tuple[int, str, list[str]]:
    calls = project.parent / "calls"
    calls.touch()
    result = subprocess.run(
        ["/bin/bash", str(project / "scripts" / "quickstart")],
        capture_output=True,
        text=True,
        env={"PATH": str(project.parent / "bin"), "CALLS": str(calls), "TMPDIR": str(project.parent), **environ},
        timeout=120,
        check=False,
    )
    return result.returncode, result.stderr, calls.read_text().splitlines()


def test_without_the_key_it_says_so_before_anything_else(machine: Path) -> None:
    code, err, calls = run(machine)
    assert code == 1
    assert err.strip() == (
        "quickstart: the hello agent calls OpenAI: set its key first, e.g. export OPENAI_API_KEY=sk-...  "
        "(then run this again)"
    )
    assert calls == []


def test_without_docker_it_names_what_to_install(machine: Path) -> None:
    code, err, calls = run(machine, OPENAI_API_KEY="sk-test")
    assert code == 1
    assert err.strip().startswith("quickstart: Docker is not installed: install Docker Engine")
    assert calls == []


def test_an_installed_engine_that_is_not_running_is_started_then_the_agent_deployed(machine: Path) -> None:
    bin_dir = machine.parent / "bin"
    running = machine.parent / "engine-running"
    stub(bin_dir, "docker", f'echo "docker $*" >> "$CALLS"; [ -e {running} ]')
    stub(bin_dir, "dockerd", f'echo "dockerd $*" >> "$CALLS"; touch {running}')  # as root (the id stand-in)
    stub(bin_dir, "id", "echo 0")
    code, err, calls = run(machine, OPENAI_API_KEY="sk-test")
    assert code == 0, err
    assert "the Docker engine is installed but not running: starting it" in err
    assert calls[0] == "docker info"  # it looked first
    assert "dockerd " in calls  # then started the engine itself (no systemd here)
    assert calls[-1] == "agentdeploy deploy examples/hello-agent/agent.yaml"


def test_an_engine_it_may_not_start_is_named_with_the_command(machine: Path) -> None:
    bin_dir = machine.parent / "bin"
    stub(bin_dir, "docker", 'echo "docker $*" >> "$CALLS"; exit 1')
    stub(bin_dir, "dockerd", 'echo "dockerd $*" >> "$CALLS"')
    stub(bin_dir, "id", "echo 1000")  # not root, and no sudo
    code, err, calls = run(machine, OPENAI_API_KEY="sk-test")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "quickstart: starting the engine needs root: run  sudo systemctl start docker  (or sudo dockerd &), "
        "then run this again"
    )
    assert not any(call.startswith(("dockerd", "agentdeploy")) for call in calls)
