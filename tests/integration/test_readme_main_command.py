"""The README's main command, as a newcomer types it, deploys the example agent to local Docker."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testkit import ROOT

pytestmark = pytest.mark.docker
UPSTREAM_BASE = "ghcr.io/justinbarias/holodeck-base:latest"


def test_readme_main_command_ends_with_a_url_that_answers(docker_client: Any, base_image: str, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^agentdeploy deploy (examples/\S+/agent\.yaml)$", readme, re.MULTILINE)
    assert match, "README.md must show the main command `agentdeploy deploy examples/<agent>/agent.yaml`"
    example = ROOT / match.group(1)
    # Nothing can be pulled here: the test base image stands in for the upstream base under its name.
    repository, tag = UPSTREAM_BASE.rsplit(":", 1)
    docker_client.images.get(base_image).tag(repository, tag)
    copy = tmp_path / "examples" / example.parent.name
    shutil.copytree(example.parent, copy)  # the state file lands in the copy, not the repository
    command = [sys.executable, "-m", "agentdeploy", "deploy", str(copy / "agent.yaml")]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        last = result.stdout.strip().splitlines()[-1]
        assert last == "succeeded: http://127.0.0.1:8080"
        with urllib.request.urlopen("http://127.0.0.1:8080/health", timeout=5) as response:
            assert response.status == 200
    finally:
        subprocess.run(
            [sys.executable, "-m", "agentdeploy", "destroy", str(copy / "agent.yaml"), "--yes"],
            capture_output=True,
            check=False,
        )
        docker_client.images.remove(UPSTREAM_BASE)
