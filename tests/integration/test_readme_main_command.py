"""The README's main command, as a newcomer types it, deploys the example agent to local Docker, where the
real HoloDeck runtime serves it and answers (its verify turn and ours) through a fake model on loopback."""

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

from testkit import ROOT, offline_agent_env, post_json

pytestmark = [pytest.mark.docker, pytest.mark.realruntime]
UPSTREAM_BASE = "ghcr.io/justinbarias/holodeck-base:latest"


def test_readme_main_command_ends_with_a_url_that_answers(
    docker_client: Any, real_base: str, fake_llm: Any, tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^agentdeploy deploy (examples/\S+/agent\.yaml)$", readme, re.MULTILINE)
    assert match, "README.md must show the main command `agentdeploy deploy examples/<agent>/agent.yaml`"
    example = ROOT / match.group(1)
    # Nothing can be pulled here: the real-runtime base (built like upstream's) stands in under its name.
    repository, tag = UPSTREAM_BASE.rsplit(":", 1)
    docker_client.images.get(real_base).tag(repository, tag)
    copy = tmp_path / "examples" / example.parent.name
    shutil.copytree(example.parent, copy)  # the state file lands in the copy, not the repository
    # The only change: the agent talks to the fake model, and nothing it does can leave the machine.
    data = yaml.safe_load((copy / "agent.yaml").read_text())
    data["deployment"]["environment"].update(offline_agent_env(fake_llm.base_url))
    (copy / "agent.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    command = [sys.executable, "-m", "agentdeploy", "deploy", str(copy / "agent.yaml")]
    environ = {**os.environ, "OPENAI_API_KEY": "sk-readme-test-key"}  # the README says to export it
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=environ)
        assert result.returncode == 0, result.stderr
        last = result.stdout.strip().splitlines()[-1]
        assert last == "succeeded: http://127.0.0.1:8080"
        with urllib.request.urlopen("http://127.0.0.1:8080/health", timeout=5) as response:
            assert json.load(response)["status"] == "healthy"
        status, answer = post_json("http://127.0.0.1:8080/agent/hello-agent/chat", {"message": "What is agentdeploy?"})
        assert status == 200 and "ships HoloDeck agents" in str(answer["content"]), answer
    finally:
        subprocess.run(
            [sys.executable, "-m", "agentdeploy", "destroy", str(copy / "agent.yaml"), "--yes"],
            capture_output=True,
            check=False,
        )
        docker_client.images.remove(UPSTREAM_BASE)
