"""`agentdeploy base build` against the real engine: the real base (the one the real-runtime tests serve agents
on) found by its content key through the command, or built by it when this machine has none; a name of the
user's given to it; and a starting image on a registry this machine cannot reach, told as such."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.image.base import KEY_LABEL

pytestmark = [pytest.mark.docker, pytest.mark.realruntime]
PROBE = "id -u; holodeck --version; python3 -c 'import agents, openai; print(openai.__version__)'"


def base_build(*argv: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentdeploy", "base", "build", *argv],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home)}, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip


def test_the_command_makes_the_real_base_once_and_names_it_for_the_config(
    docker_client: Any, real_base: str, tmp_path: Path, free_port: Any
) -> None:
    result = base_build("--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert made["image"] == real_base and made["built"] is False  # the tests' base: built once per machine
    assert made["base_image_line"] == f"deployment.build.base_image: {real_base}"
    assert made["holodeck"] == "holodeck-ai[openai-agents]==0.7.1"
    image = docker_client.images.get(real_base)
    assert image.labels[KEY_LABEL] == made["key"] and real_base.endswith(f":0.7.1-{made['key']}")
    # Upstream's shape, with the runtime the agent image's build-time check asks for.
    assert image.attrs["Config"]["User"] == "holodeck" and image.attrs["Config"]["WorkingDir"] == "/app"
    probe = docker_client.containers.run(
        real_base,
        entrypoint=["sh", "-c", PROBE],
        remove=True,
        network_mode="none",
    )
    assert probe.decode().split("\n")[:3] == ["1000", "holodeck, version 0.7.1", "2.44.0"]

    # A name of the user's (their registry's, say): the same image, found by its key, tagged so.
    mine = f"agentdeploy-test/our-holodeck-base:{free_port()}"
    try:
        named = base_build("--tag", mine, home=tmp_path)
        assert named.returncode == 0, named.stderr
        assert named.stdout == f"deployment.build.base_image: {mine}\n"
        assert docker_client.images.get(mine).id == image.id
    finally:
        docker_client.images.remove(mine)  # the tag only: the base keeps its own name


def test_a_starting_image_on_a_registry_this_machine_cannot_reach(tmp_path: Path) -> None:
    result = base_build("--from", "nonexistent.invalid/python:3.11-slim", home=tmp_path)
    assert result.returncode == 6, result.stderr
    last = result.stderr.splitlines()[-2:]
    assert last[0].startswith(
        "error: the starting image nonexistent.invalid/python:3.11-slim (--from) cannot be pulled: this machine "
        'cannot reach nonexistent.invalid (Get "https://nonexistent.invalid/v2/": dial tcp: lookup nonexistent.invalid'
    ), last
    assert last[0].endswith(": no such host)")
    assert last[1] == (
        "  fix: name an image this engine has (docker images), or leave out --from to start from a Debian rootfs "
        "made here with mmdebstrap; or, where a proxy leads out, give the Docker engine its proxy settings"
    )
