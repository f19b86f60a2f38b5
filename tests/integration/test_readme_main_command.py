"""The README's newcomer path, command by command, as a newcomer types them: the quick start, then every
command of "The main job", in order, in a clone of its own (its own port and container name, so a
running example of the user's is never touched). The real HoloDeck runtime serves the agent and
answers (its verify turn and ours) through a fake model on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit import ROOT, git, offline_agent_env, post_json

pytestmark = [pytest.mark.docker, pytest.mark.realruntime]
EXAMPLE = "examples/hello-agent"


def section(readme: str, title: str) -> str:
    start = readme.index(f"\n## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def commands(text: str) -> list[str]:
    """The lines of the ```sh blocks of `text`, in order (comment lines and blank lines left out)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        found += [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return found


def newcomer_path() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    quick = commands(section(readme, "Quick start"))
    # `.ci/run` is the second quick-start command: it runs this very test suite.
    assert quick[-1] == ".ci/run", quick
    main = commands(section(readme, "The main job"))
    assert f"agentdeploy deploy {EXAMPLE}/agent.yaml" in main, main
    return [*quick[:-1], *main]


def test_every_command_of_the_newcomer_path_does_what_the_readme_says(
    docker_client: Any, real_base: str, fake_llm: Any, tmp_path: Path, free_port: Any
) -> None:
    path = newcomer_path()
    assert path[:2] == ["export OPENAI_API_KEY=sk-...", "scripts/quickstart"], path

    # A clone of the parts the path uses, committed, with a .venv that is this one.
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "quickstart", clone / "scripts" / "quickstart")
    shutil.copy(ROOT / ".gitignore", clone / ".gitignore")
    shutil.copytree(ROOT / EXAMPLE, clone / EXAMPLE, ignore=shutil.ignore_patterns(".agentdeploy"))
    os.symlink(Path(sys.executable).parent.parent, clone / ".venv")
    port = free_port()
    container = f"agentdeploy-readme-test-{port}"
    config = clone / EXAMPLE / "agent.yaml"
    data = yaml.safe_load(config.read_text())
    data["deployment"]["port"] = port
    data["deployment"].setdefault("target", {})["docker"] = {"container_name": container}
    data["deployment"]["environment"].update(offline_agent_env(fake_llm.base_url))
    # Nothing can be pulled here: the real-runtime base (built like upstream's, from real parts) stands in for
    # upstream's, under its own content-keyed name, which nothing else on the machine removes or retags.
    data["deployment"].setdefault("build", {})["base_image"] = real_base
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    git(clone, "init", "-q", "-b", "main")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "clone")
    commit = git(clone, "rev-parse", "HEAD")[:7]

    environ = {
        **os.environ,
        "PATH": f"{clone / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "GIT_AUTHOR_NAME": "newcomer",
        "GIT_AUTHOR_EMAIL": "newcomer@example.invalid",
        "GIT_COMMITTER_NAME": "newcomer",
        "GIT_COMMITTER_EMAIL": "newcomer@example.invalid",
    }
    state_file = clone / EXAMPLE / ".agentdeploy" / "hello-agent.local.json"
    url = f"http://127.0.0.1:{port}"
    images: list[str] = []
    try:
        for command in path:
            if command.startswith("export "):
                name, _, value = command.removeprefix("export ").partition("=")
                environ[name] = value
                continue
            result = subprocess.run(
                command, shell=True, executable="/bin/bash", cwd=clone, env=environ,
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            assert result.returncode == 0, f"{command}\n{result.stderr}"
            assert "Traceback" not in result.stderr and "internal error" not in result.stderr, command
            state = json.loads(state_file.read_text()) if state_file.exists() else {}
            words = command.split()
            if words[0] == "scripts/quickstart" or words[:2] == ["agentdeploy", "deploy"]:
                # The main job's own deploy right after the quick start finds nothing to change.
                expected = "unchanged" if images and state["current"]["image"] == images[-1] else "succeeded"
                assert result.stdout.strip().splitlines()[-1] == f"{expected}: {url}", command
                assert state["current"]["status"] == "succeeded"
                images.append(state["current"]["image"])
                status, answer = post_json(f"{url}/agent/hello-agent/chat", {"message": "What is agentdeploy?"})
                assert status == 200 and "ships HoloDeck agents" in str(answer["content"]), answer
            elif words[:2] == ["agentdeploy", "status"]:
                assert re.search(rf"container {container}: running, health healthy", result.stdout), result.stdout
            elif words[:2] == ["agentdeploy", "logs"]:
                assert result.stdout.strip(), "the agent's log is empty"
            elif words[:2] == ["agentdeploy", "rollback"]:
                assert state["current"]["image"] == images[0]  # the first version serves again
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    assert json.load(response)["status"] == "healthy"
            elif words[:2] == ["agentdeploy", "destroy"]:
                assert not docker_client.containers.list(all=True, filters={"name": container})
        # The edited instructions made a second version, tagged as what it is: not the commit's content.
        tags = [entry["tag"] for entry in json.loads(state_file.read_text())["history"] if entry["action"] == "deploy"]
        assert tags[0].startswith(f"{commit}-dirty-") and tags[-1] == commit, tags
        assert git(clone, "status", "--porcelain", "--", EXAMPLE + "/instructions.md") == ""  # undone
    finally:
        for name in (container, container + "-previous"):
            for leftover in docker_client.containers.list(all=True, filters={"name": name}):
                leftover.remove(force=True)
