"""The README's newcomer path, typed as the README has it: the code blocks of the quick start and of "The
main job", in order, as written, in a clean shell (only PATH, HOME and the variables the README has the user
export), in a clone of its own (its own port and container name, so a running example of the user's is never
touched). It takes the README's "this machine cannot reach ghcr.io" path, as this machine must: `agentdeploy
base build` (which finds the base the real-runtime tests use by its content key: it builds nothing here that
those have built) and the `base_image` line it prints, put where the README says. The real HoloDeck runtime
serves the agent and answers (its verify turn and ours) through a fake model on loopback.

Still unlike a newcomer: the quick start's first `scripts/quickstart` is not run (on a machine that can reach
ghcr.io it would pull upstream's base, and tests reach only 127.0.0.0/8); the copy of the config is committed
with the agent pointed at the fake model (OPENAI_BASE_URL and the offline settings in its
deployment.environment, which the README does not have users set); the clone's .venv is this one."""

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


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of the fenced code blocks of `text`, in order (comment and blank lines of ```sh left
    out)."""
    found = []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", text, re.DOTALL):
        lines = body.splitlines()
        if language == "sh":
            lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        found.append((language, lines))
    return found


def newcomer_path() -> list[str]:
    """The commands a newcomer on a machine that cannot reach ghcr.io types, and `EDIT <yaml>` where the README
    has them change the config."""
    readme = (ROOT / "README.md").read_text()
    quick = [(language, lines) for language, lines in blocks(section(readme, "Quick start")) if language != ""]
    assert [lines for _, lines in quick] == [
        ["export OPENAI_API_KEY=sk-...", "scripts/quickstart"],
        [".venv/bin/agentdeploy base build"],
        ["  build:", "    base_image: agentdeploy/holodeck-base:0.7.1-<key>"],
        ["scripts/quickstart"],
        [".ci/run"],  # it runs this very test suite
    ], quick
    assert quick[2][0] == "yaml"
    path = [quick[0][1][0]]  # the key; its `scripts/quickstart` would pull from ghcr.io (see the docstring)
    path += [*quick[1][1], "EDIT " + "\n".join(quick[2][1]), *quick[3][1]]
    main = [line for language, lines in blocks(section(readme, "The main job")) if language == "sh" for line in lines]
    assert main[:3] == [
        ". .venv/bin/activate",
        "export OPENAI_API_KEY=sk-...",
        f"agentdeploy deploy {EXAMPLE}/agent.yaml",
    ]
    return [*path, *main]


def put_base_line(config: Path, edit: str, printed: str) -> str:
    """What the README has the user do with the line `base build` printed: its name, in the YAML it shows, under
    `deployment:` of the example. Returns the name."""
    match = re.fullmatch(r"deployment\.build\.base_image: (\S+)", printed)
    assert match, printed
    name = match.group(1)
    snippet = yaml.safe_load(edit.replace("agentdeploy/holodeck-base:0.7.1-<key>", name))
    data = yaml.safe_load(config.read_text())
    data["deployment"].update(snippet)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return name


def test_every_command_of_the_newcomer_path_does_what_the_readme_says(
    docker_client: Any, real_base: str, fake_llm: Any, tmp_path: Path, free_port: Any
) -> None:
    path = newcomer_path()

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
    assert "build" not in data["deployment"]  # the example names no base: upstream's, unless the user sets one
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    git(clone, "init", "-q", "-b", "main")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "clone")
    commit = git(clone, "rev-parse", "HEAD")[:7]

    # A clean shell: what a login shell has (docker lives in /usr/local/bin here), an empty home, and what the
    # README has the user export or source, carried from command to command as one shell session would.
    home = tmp_path / "home"
    home.mkdir()
    environ = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home)}
    session: list[str] = []
    state_file = clone / EXAMPLE / ".agentdeploy" / "hello-agent.local.json"
    url = f"http://127.0.0.1:{port}"
    images: list[str] = []
    printed_base = ""
    try:
        for command in path:
            if command.startswith("EDIT "):
                assert put_base_line(config, command.removeprefix("EDIT "), printed_base) == real_base
                continue
            if command.startswith(("export ", ". ")):
                session.append(command)
                continue
            result = subprocess.run(
                ["/bin/bash", "-c", "\n".join(["set -e", *session, command])], cwd=clone, env=environ,
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            assert result.returncode == 0, f"{command}\n{result.stderr}"
            assert "Traceback" not in result.stderr and "internal error" not in result.stderr, command
            state = json.loads(state_file.read_text()) if state_file.exists() else {}
            words = command.split()
            if words[-2:] == ["base", "build"]:
                # Found by its content key (the real-runtime tests' base), not built again.
                printed_base = result.stdout.strip()
                assert printed_base == f"deployment.build.base_image: {real_base}", result.stdout
                assert "found (built earlier from the same recipe)" in result.stderr, result.stderr
            elif words[0] == "scripts/quickstart" or words[:2] == ["agentdeploy", "deploy"]:
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
        # Both versions are tagged as what they are: the commit plus uncommitted changes (the base line, then the
        # edited instructions too), each its own content.
        history = json.loads(state_file.read_text())["history"]
        tags = [entry["tag"] for entry in history if entry["action"] == "deploy"]
        assert len(set(tags)) == 2 and all(tag.startswith(f"{commit}-dirty-") for tag in tags), tags
        assert git(clone, "status", "--porcelain", "--", EXAMPLE + "/instructions.md") == ""  # undone
    finally:
        for name in (container, container + "-previous"):
            for leftover in docker_client.containers.list(all=True, filters={"name": name}):
                leftover.remove(force=True)
