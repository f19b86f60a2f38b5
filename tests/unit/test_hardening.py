"""How the docker target confines a container, decided from the image's own config (pure), and the settings
that feed it: deployment.resources and target.docker.bind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agentdeploy.config.loader import load_config
from agentdeploy.config.models import ResourcesConfig
from agentdeploy.image.tags import config_hash
from agentdeploy.targets.docker import hardening, probe_address

GENERATED = {
    "User": "10001:10001",
    "WorkingDir": "/app",
    "Env": ["PATH=/usr/bin:/bin", "HOME=/home/agent", "PORT=8080"],
    "Labels": {"dev.agentdeploy.holodeck-runtime": "holodeck-ai[openai-agents]==0.7.1"},
}


def test_a_generated_image_gets_tmp_its_cache_and_its_whole_home_owned_by_its_user() -> None:
    confined = hardening(GENERATED, resources=ResourcesConfig(), bind="127.0.0.1", host_network=True)
    assert confined.writable == {
        "/tmp": "rw,noexec,nosuid,nodev,uid=10001,gid=10001",
        "/app/.holodeck": "rw,noexec,nosuid,nodev,uid=10001,gid=10001",
        "/home/agent": "rw,exec,nosuid,nodev,uid=10001,gid=10001",
    }
    assert (confined.memory, confined.nano_cpus, confined.pids) == (2 * 1024**3, 10**9, 512)
    assert confined.env == {"HOLODECK_HOST": "127.0.0.1"}


def test_on_a_bridge_the_agent_listens_inside_its_own_network() -> None:
    confined = hardening(GENERATED, resources=ResourcesConfig(), bind="127.0.0.1", host_network=False)
    assert confined.env == {}  # the port is published on the bind address instead


@pytest.mark.parametrize(
    ("image", "writable"),
    [
        # Another image's home may hold what it installed: only its cache is writable.
        (
            {"User": "holodeck", "WorkingDir": "/srv", "Env": ["HOME=/home/holodeck"]},
            {
                "/tmp": "rw,noexec,nosuid,nodev",
                "/srv/.holodeck": "rw,noexec,nosuid,nodev",
                "/home/holodeck/.cache": "rw,exec,nosuid,nodev",
            },
        ),
        # root, no WORKDIR, no HOME: the engine's defaults (/ and /root).
        (
            {"User": "", "WorkingDir": "", "Env": None},
            {
                "/tmp": "rw,noexec,nosuid,nodev",
                "/.holodeck": "rw,noexec,nosuid,nodev",
                "/root/.cache": "rw,exec,nosuid,nodev",
            },
        ),
        # A named user without HOME: its home is unknown; /tmp and the runtime's cache still are writable.
        (
            {"User": "app", "WorkingDir": "/app", "Env": []},
            {"/tmp": "rw,noexec,nosuid,nodev", "/app/.holodeck": "rw,noexec,nosuid,nodev"},
        ),
        (
            {"User": "1000", "WorkingDir": "/app", "Env": ["HOME=/"]},
            {
                "/tmp": "rw,noexec,nosuid,nodev,uid=1000,gid=1000",
                "/app/.holodeck": "rw,noexec,nosuid,nodev,uid=1000,gid=1000",
            },
        ),
    ],
)
def test_an_image_of_your_own(image: dict[str, object], writable: dict[str, str]) -> None:
    assert hardening(image, resources=ResourcesConfig(), bind="127.0.0.1", host_network=True).writable == writable


def test_limits_from_the_resources() -> None:
    confined = hardening(
        GENERATED, resources=ResourcesConfig(cpu=0.25, memory="1.5Gi", pids=64), bind="0.0.0.0", host_network=True
    )
    assert (confined.memory, confined.nano_cpus, confined.pids) == (1536 * 1024**2, 25 * 10**7, 64)
    assert confined.env == {"HOLODECK_HOST": "0.0.0.0"}


@pytest.mark.parametrize(
    ("bind", "probe"), [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("10.1.2.3", "10.1.2.3")]
)
def test_where_the_gate_probes(bind: str, probe: str) -> None:
    assert probe_address(bind) == probe


MINIMAL = "name: a\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\ndeployment:\n  port: 8080\n"


def test_configs_without_the_new_settings_keep_their_config_hash(write_agent: Callable[..., Path]) -> None:
    """Recorded deployments are compared by config hash: an upgrade must not make every agent an UPDATE."""
    plain = load_config(write_agent(MINIMAL))
    data = plain.deploy.model_dump(mode="json")
    assert "resources" not in data and "bind" not in (data["target"]["docker"] or {})
    with_docker = load_config(write_agent(MINIMAL + "  target: {docker: {container_name: x}}\n"))
    assert "bind" not in with_docker.deploy.model_dump(mode="json")["target"]["docker"]
    spelled = load_config(write_agent(MINIMAL + "  resources: {cpu: 1}\n"))
    assert config_hash(spelled) != config_hash(plain)  # a limit is part of what is deployed
