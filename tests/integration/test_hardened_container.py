"""The local agent runs like a production container: no capabilities, no privilege gain, a read-only root with
tmpfs only where the runtime writes, memory/cpu/pids limits from deployment.resources, and under host networking
it is told to listen on target.docker.bind (127.0.0.1 unless the config says otherwise). Checked with the
engine's own inspect of the container deploy started, and from inside it."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.cli import main
from agentdeploy.errors import ExitCode
from testkit import Run, http_get

pytestmark = pytest.mark.docker


@dataclass
class Agent:
    config: Path
    port: int
    container: str

    def write(self, extra: str = "", docker: str = "") -> None:
        self.config.write_text(
            "name: hardened-agent\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
            "deployment:\n"
            f"  port: {self.port}\n"
            "  health: {path: /health, timeout_seconds: 20}\n"
            "  build: {base_image: 'agentdeploy-test-base:1'}\n"
            f"  target: {{docker: {{container_name: {self.container}{docker}}}}}\n" + extra
        )

    def deploy(self) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(["deploy", str(self.config), "--json"], environ={"PATH": "/usr/bin:/bin"}, out=out, err=err)
        return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture
def agent(tmp_path: Path, base_image: str, free_port: Callable[[], int], docker_client: Any) -> Iterator[Agent]:
    project = tmp_path / "agent"
    project.mkdir()
    (project / "prompt.md").write_text("Be kind.")
    port = free_port()
    made = Agent(project / "agent.yaml", port, f"agentdeploy-hardened-{port}")
    yield made
    for name in (made.container, made.container + "-previous"):
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True, v=True)


def test_the_deployed_container_is_confined(agent: Agent, docker_client: Any) -> None:
    agent.write()
    result = agent.deploy()
    assert result.code == ExitCode.OK, result.err
    inspected = docker_client.api.inspect_container(agent.container)
    host = inspected["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    # The defaults of deployment.resources: 1 vCPU, 2Gi (and no swap beyond it), 512 processes.
    assert (host["NanoCpus"], host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (
        10**9,
        2 * 1024**3,
        2 * 1024**3,
        512,
    )
    # Writable: /tmp, the runtime's cache in its working directory, and the image's own (empty) home.
    assert host["Tmpfs"] == {
        "/tmp": "rw,noexec,nosuid,nodev,uid=10001,gid=10001",
        "/app/.holodeck": "rw,noexec,nosuid,nodev,uid=10001,gid=10001",
        "/home/agent": "rw,exec,nosuid,nodev,uid=10001,gid=10001",
    }
    assert host["NetworkMode"] == "host"  # this engine has no bridge: the agent is told where to listen
    assert "HOLODECK_HOST=127.0.0.1" in inspected["Config"]["Env"]
    assert inspected["Config"]["Labels"]["dev.agentdeploy.bind"] == "127.0.0.1"
    assert http_get(f"http://127.0.0.1:{agent.port}/health")[0] == 200

    container = docker_client.containers.get(agent.container)

    def run(command: str) -> tuple[int, str]:
        code, output = container.exec_run(["/bin/sh", "-c", command])
        return code, output.decode()

    _, output = run("touch /app/.written 2>&1; touch /etc/.written 2>&1")
    assert output.count("Read-only file system") == 2, output
    for writable in ("/tmp", "/app/.holodeck", "/home/agent"):
        assert run(f"echo ok > {writable}/probe && cat {writable}/probe") == (0, "ok\n"), writable
    # The agent's processes hold no capability, and cannot gain one (NoNewPrivs).
    _, status = run("cat /proc/1/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["CapEff"].strip() == "0" * 16 and fields["CapBnd"].strip() == "0" * 16
    assert fields["NoNewPrivs"].strip() == "1"


def test_resources_and_bind_come_from_the_config(agent: Agent, docker_client: Any) -> None:
    agent.write("  resources: {cpu: 0.5, memory: 768Mi, pids: 128}\n", docker=", bind: 0.0.0.0")
    result = agent.deploy()
    assert result.code == ExitCode.OK, result.err
    inspected = docker_client.api.inspect_container(agent.container)
    host = inspected["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (5 * 10**8, 768 * 1024**2, 128)
    assert "HOLODECK_HOST=0.0.0.0" in inspected["Config"]["Env"]
    assert result.data["url"] == f"http://127.0.0.1:{agent.port}"  # a wildcard is reached on loopback

    # A limit changed in the config is a change to deploy: the container is replaced with the new limit.
    agent.write("  resources: {cpu: 0.5, memory: 1Gi, pids: 128}\n", docker=", bind: 0.0.0.0")
    again = agent.deploy()
    assert again.code == ExitCode.OK and again.data["status"] == "succeeded", again.err
    assert docker_client.api.inspect_container(agent.container)["HostConfig"]["Memory"] == 1024**3


def test_a_bad_bind_or_limit_is_refused_before_anything_runs(agent: Agent, docker_client: Any) -> None:
    agent.write("  resources: {cpu: 0, memory: 2GB}\n", docker=", bind: localhost")
    result = agent.deploy()
    assert result.code == ExitCode.CONFIG, result.err
    lines = agent.config.read_text().splitlines()

    def line_of(text: str) -> int:
        return next(number for number, line in enumerate(lines, 1) if text in line)

    errors = [line for line in result.err.splitlines() if line.startswith(("error", "  "))]
    assert any(
        f"{agent.config}:{line_of('bind: localhost')}:" in line and "'localhost' is not an IP address" in line
        for line in errors
    ), result.err
    assert any(
        f"{agent.config}:{line_of('memory: 2GB')}:" in line and "'2GB' is not a memory size" in line for line in errors
    ), result.err
    assert "cpu 0 is not positive" in result.err
    assert docker_client.containers.list(all=True, filters={"name": agent.container}) == []


def test_a_path_the_image_writes_to_is_a_volume_seeded_from_the_image_and_removed_with_it(
    agent: Agent, docker_client: Any
) -> None:
    # The image ships a cache under /opt/cache that its programs also write to (npm's offline cache, say).
    agent.write(docker=", writable: [/opt/cache]")
    (agent.config.parent / "Dockerfile").write_text(
        "FROM agentdeploy-test-base:1\nUSER root\nRUN mkdir -p /opt/cache && echo shipped > /opt/cache/index "
        "&& chown -R 10001:10001 /opt/cache\nCOPY agent.yaml prompt.md /app/\nUSER 10001:10001\nWORKDIR /app\n"
        f"ENV PORT={agent.port}\n"
        'ENTRYPOINT ["/bin/sh", "-c", "exec holodeck serve /app/agent.yaml --port $PORT"]\n'
    )
    agent.config.write_text(
        agent.config.read_text().replace("{base_image: 'agentdeploy-test-base:1'}", "{dockerfile: Dockerfile}")
    )
    result = agent.deploy()
    assert result.code == ExitCode.OK, result.err
    inspected = docker_client.api.inspect_container(agent.container)
    [volume] = [mount for mount in inspected["Mounts"] if mount["Destination"] == "/opt/cache"]
    assert volume["Type"] == "volume" and volume["RW"] is True
    # An image of its own, of user 10001 with no HOME: /tmp and .holodeck/ in its WORKDIR are tmpfs (no home known).
    assert sorted(inspected["HostConfig"]["Tmpfs"]) == ["/app/.holodeck", "/tmp"]
    container = docker_client.containers.get(agent.container)
    code, output = container.exec_run(["/bin/sh", "-c", "cat /opt/cache/index && echo more >> /opt/cache/index"])
    assert (code, output.decode()) == (0, "shipped\n")

    destroyed = main(["destroy", str(agent.config), "--yes"], environ={"PATH": "/usr/bin:/bin"}, out=io.StringIO())
    assert destroyed == ExitCode.OK
    assert docker_client.volumes.list(filters={"name": volume["Name"]}) == []  # nothing left behind


def test_a_writable_path_must_be_absolute(agent: Agent, docker_client: Any) -> None:
    agent.write(docker=", writable: [opt/cache, /opt/../etc]")
    result = agent.deploy()
    assert result.code == ExitCode.CONFIG, result.err
    assert "'opt/cache' is not an absolute path below /" in result.err
    assert "'/opt/../etc' is not an absolute path below /" in result.err
    assert docker_client.containers.list(all=True, filters={"name": agent.container}) == []
