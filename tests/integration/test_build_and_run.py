"""The generated Dockerfile on the real engine: builds, serves, resists injection, rebuilds from cache."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentdeploy.cli import main
from agentdeploy.config.loader import load_config
from agentdeploy.errors import ExitCode
from agentdeploy.image.context import collect, write_context
from agentdeploy.image.dockerfile import render_dockerfile, spec_from_config
from agentdeploy.image.engine import BuildResult, build_image
from agentdeploy.image.tags import GitFacts, oci_labels
from testkit import git, git_shim, http_get

pytestmark = pytest.mark.docker

HOSTILE = "x\"\nRUN touch /pwned-env \\\n$(touch /pwned-subst) `id` 'q' ${HOME}"


def agent_yaml(base_image: str, port: int) -> str:
    return f"""
name: demo-agent
description: "evil\\nRUN touch /pwned-description\\nLABEL x=1"
model: {{provider: openai, name: gpt-4o}}
instructions: {{file: prompt.md}}
tools:
  - {{name: kb, type: vectorstore, description: kb, source: data}}
deployment:
  port: {port}
  health: {{path: /health}}
  environment:
    HOSTILE: {json.dumps(HOSTILE)}
  build:
    base_image: {base_image}
"""


@pytest.fixture
def agent(write_agent: Callable[..., Path], base_image: str, free_port: Callable[[], int]) -> Path:
    return write_agent(
        agent_yaml(base_image, free_port()),
        {"prompt.md": "Be kind.", "data/kb.txt": "facts", "data/.env": "TOKEN=sentinel"},
    )


@pytest.fixture
def cleanup(docker_client: Any) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True)


def build(agent: Path, docker_client: Any, tmp_path: Path, tag: str, lines: list[str]) -> BuildResult:
    config = load_config(agent)
    entries, _ = collect(config)
    context_dir = tmp_path / f"ctx-{len(list(tmp_path.iterdir()))}"
    write_context(entries, context_dir, render_dockerfile(spec_from_config(config)))
    labels = oci_labels(config, tag="t1", git=GitFacts(sha="f" * 40), created="2026-01-01T00:00:00Z")
    return build_image(
        docker_client,
        context_dir,
        tags=[tag],
        labels=labels,
        platform=None,
        build_args={},
        on_line=lines.append,
    )


def wait_for(url: str, seconds: float = 20) -> tuple[int, str]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return http_get(url)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_build_run_and_health(agent: Path, docker_client: Any, tmp_path: Path, cleanup: list[str]) -> None:
    lines: list[str] = []
    result = build(agent, docker_client, tmp_path, "agentdeploy-it/demo:1", lines)
    assert lines and lines[0].startswith("Step 1/")
    image = docker_client.images.get("agentdeploy-it/demo:1")
    assert image.id == result.image_id
    labels = image.labels
    assert labels["org.opencontainers.image.title"] == "demo-agent"
    assert labels["org.opencontainers.image.revision"] == "f" * 40
    assert image.attrs["Config"]["User"] == "10001:10001"
    env = dict(item.split("=", 1) for item in image.attrs["Config"]["Env"])
    assert "HOSTILE" not in env  # runtime settings are not baked into the image

    # No injected step: every history entry is one the template wrote (or a label from the API).
    base_layers = len(docker_client.images.get(load_config(agent).deploy.build.base_image).history())
    history = [entry["CreatedBy"] for entry in image.history()][::-1][base_layers:]
    keywords = [h.split("#(nop)", 1)[1].split()[0] if "#(nop)" in h else "RUN" for h in history]
    assert keywords == [
        "USER",
        "COPY",
        "RUN",
        "COPY",
        "COPY",
        "WORKDIR",
        "ENV",
        "USER",
        "EXPOSE",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
        "COPY",
        *["LABEL"] * 6,
    ]

    port = load_config(agent).deploy.port
    name = f"agentdeploy-it-{port}"
    cleanup.append(name)
    docker_client.containers.run(
        "agentdeploy-it/demo:1",
        name=name,
        network_mode="host",
        detach=True,
        environment={"HOSTILE": "runtime value"},
    )
    status, _ = wait_for(f"http://127.0.0.1:{port}/health")
    assert status == 200
    status, served_config = http_get(f"http://127.0.0.1:{port}/config")
    # The runtime reads the user's file without its deployment section (which it would refuse), and
    # otherwise byte for byte: comments, order and line breaks as written.
    original = yaml.safe_load(agent.read_text())
    assert status == 200 and yaml.safe_load(served_config) == {k: v for k, v in original.items() if k != "deployment"}
    assert agent.read_text().startswith(served_config)
    container = docker_client.containers.get(name)
    assert container.exec_run(["id", "-u"]).output.decode().strip() == "10001"
    listing = container.exec_run(["ls", "-a", "/app/data"]).output.decode().split()
    assert listing == [".", "..", "kb.txt"]  # the secret .env file stayed out
    exit_code, output = container.exec_run(["touch", "/app/prompt.md"])
    assert exit_code != 0 and "Permission denied" in output.decode()  # the agent's files are read-only
    for pwned in ("/pwned-env", "/pwned-subst", "/pwned-description"):
        assert container.exec_run(["/bin/sh", "-c", f"test -e {pwned}"]).exit_code == 1
    # The HEALTHCHECK in the image agrees with the probe.
    deadline = time.monotonic() + 40
    while docker_client.api.inspect_container(name)["State"]["Health"]["Status"] != "healthy":
        assert time.monotonic() < deadline, "the image's HEALTHCHECK never reported healthy"
        time.sleep(0.5)


def test_unchanged_agent_rebuilds_entirely_from_cache(agent: Path, docker_client: Any, tmp_path: Path) -> None:
    build(agent, docker_client, tmp_path, "agentdeploy-it/cache:1", [])
    lines: list[str] = []
    second = build(agent, docker_client, tmp_path, "agentdeploy-it/cache:2", lines)
    assert second.fully_cached, "\n".join(lines)
    assert second.steps >= 11
    # A changed agent file invalidates the copy step and what follows, nothing before it.
    # Content no earlier build had: the test base keeps its id across sessions, and so does the layer cache.
    (agent.parent / "prompt.md").write_text(f"Be kinder. ({uuid.uuid4().hex})")
    third = build(agent, docker_client, tmp_path, "agentdeploy-it/cache:3", [])
    assert not third.fully_cached
    # Every step but the agent's files (the last COPY) and the labels the API appends: USER root, the runtime check
    # (COPY, RUN), COPY home/, COPY workdir/, WORKDIR, ENV, USER, EXPOSE, HEALTHCHECK, ENTRYPOINT, CMD.
    assert third.cached_steps == 12
    assert third.steps - third.cached_steps - third.from_steps == 1 + len(third_labels(agent))


def third_labels(agent: Path) -> dict[str, str]:
    return oci_labels(load_config(agent), tag="t1", git=GitFacts(sha="f" * 40), created="2026-01-01T00:00:00Z")


def test_owners_and_modes_come_from_copy_not_from_a_run_step(agent: Path, docker_client: Any, tmp_path: Path) -> None:
    result = build(agent, docker_client, tmp_path, "agentdeploy-it/owners:1", [])
    history = [entry["CreatedBy"] for entry in docker_client.images.get(result.image_id).history()]
    assert not [step for step in history if "chown" in step and "#(nop)" not in step]  # no RUN chown layer
    container = docker_client.containers.create(result.image_id)
    try:
        members = {}
        for directory in ("/app", "/home/agent"):
            stream, _ = container.get_archive(directory)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                members |= {member.name: member for member in archive.getmembers()}
    finally:
        container.remove(force=True)
    owners = {name: (member.uid, member.gid, oct(stat.S_IMODE(member.mode))) for name, member in members.items()}
    # /app: root's, writable by the agent's group, sticky (the runtime makes .holodeck/ there, replaces nothing).
    assert owners.pop("app") == (0, 10001, "0o1775")
    # The agent's files: root's, read-only to the agent (as before: COPY's default owner, now said explicitly).
    assert owners.pop("app/prompt.md") == (0, 0, "0o644")
    assert owners.pop("app/data") == (0, 0, "0o755")
    assert owners.pop("app/data/kb.txt") == (0, 0, "0o644")
    assert owners.pop("app/agent.yaml") == (0, 0, "0o644")
    # The home: the agent's own.
    assert {owner[:2] for name, owner in owners.items() if name.startswith("agent")} == {(10001, 10001)}
    assert docker_client.images.get(result.image_id).attrs["Config"]["User"] == "10001:10001"


def test_labels_in_one_step_reach_the_image_exactly_as_given(
    agent: Path, docker_client: Any, tmp_path: Path, cleanup: list[str]
) -> None:
    """The builder's path: one LABEL step written into a copy of our Dockerfile. Quotes, backslashes, `$` and
    what looks like an instruction stay text in the label; nothing runs, nothing expands."""
    config = load_config(agent)
    entries, _ = collect(config)
    context_dir = tmp_path / "ctx-labels"
    write_context(entries, context_dir, render_dockerfile(spec_from_config(config)))
    labels = oci_labels(config, tag="t1", git=GitFacts(sha="f" * 40), created="2026-01-01T00:00:00Z")
    labels["dev.agentdeploy.hostile"] = "a\"b\\c\\ $HOME ${PATH} `touch /pwned-label` ' RUN touch /pwned \\"
    result = build_image(
        docker_client,
        context_dir,
        tags=["agentdeploy-it/labels:1"],
        labels=labels,
        platform=None,
        build_args={},
        one_label_step=True,
    )
    image = docker_client.images.get(result.image_id)
    assert {key: image.labels[key] for key in labels} == labels
    history = [entry["CreatedBy"] for entry in image.history()]
    assert sum("LABEL" in step for step in history) == 1 and "LABEL" in history[0]  # one step, the last
    assert not (context_dir / ".agentdeploy.Dockerfile").exists()  # sent beside the context, not written into it
    name = f"agentdeploy-it-labels-{uuid.uuid4().hex[:8]}"
    cleanup.append(name)
    output = docker_client.containers.run(
        result.image_id, name=name, entrypoint=["/bin/sh", "-c", "ls / /app; echo $HOME"], remove=False
    )
    assert b"pwned" not in output and b".agentdeploy.Dockerfile" not in output


def test_a_base_the_engine_has_is_not_pulled_unless_asked(
    write_agent: Callable[..., Path], base_image: str, docker_client: Any, free_port: Callable[[], int]
) -> None:
    """The base is named after a registry nothing answers at (127.0.0.1:9): any pull of it fails. The engine has it,
    so the deploy builds without asking the registry; --pull asks, and says it cannot."""
    port = free_port()
    unreachable = f"127.0.0.1:9/agentdeploy-it/local-only:{port}"
    repository, _, tag = unreachable.rpartition(":")
    docker_client.images.get(base_image).tag(repository, tag)
    config = write_agent(
        f"name: local-base-{port}\nmodel: {{provider: openai, name: gpt-4o}}\ninstructions: {{inline: hi}}\n"
        f"deployment:\n  port: {port}\n  health: {{path: /health, timeout_seconds: 20}}\n"
        f"  build: {{base_image: '{unreachable}'}}\n  target: {{docker: {{container_name: agentdeploy-it-{port}}}}}\n"
    )
    try:
        out, err = io.StringIO(), io.StringIO()
        code = main(["deploy", str(config), "--verbose"], environ={"PATH": "/usr/bin:/bin"}, out=out, err=err)
        assert code == 0, err.getvalue()
        assert "pulling" not in err.getvalue()
        out, err = io.StringIO(), io.StringIO()
        code = main(["deploy", str(config), "--pull"], environ={"PATH": "/usr/bin:/bin"}, out=out, err=err)
        assert code == ExitCode.BUILD, err.getvalue()
        assert f"the base image {unreachable} (deployment.build.base_image" in err.getvalue()
        assert "cannot be pulled: this machine cannot reach 127.0.0.1:9" in err.getvalue()
    finally:
        with contextlib.suppress(Exception):
            docker_client.containers.get(f"agentdeploy-it-{port}").remove(force=True)
        docker_client.images.remove(unreachable)


def test_plan_reads_every_git_fact_from_at_most_two_git_processes(
    write_agent: Callable[..., Path],
    base_image: str,
    free_port: Callable[[], int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    config = write_agent(
        f"name: counted-{port}\nmodel: {{provider: openai, name: gpt-4o}}\ninstructions: {{file: prompt.md}}\n"
        f"deployment:\n  port: {port}\n  build: {{base_image: '{base_image}'}}\n"
        f"  target: {{docker: {{container_name: agentdeploy-it-{port}}}}}\n",
        {"prompt.md": "Be kind.\n"},
    )
    git(config.parent, "init", "-q", "-b", "main")
    git(config.parent, "remote", "add", "origin", "git@github.com:org/agents.git")
    git(config.parent, "add", "-A")
    git(config.parent, "commit", "-q", "-m", "one")
    shim, log = git_shim(tmp_path)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    out, err = io.StringIO(), io.StringIO()
    assert main(["plan", str(config), "--json"], environ=dict(os.environ), out=out, err=err) == 0, err.getvalue()
    [item] = json.loads(out.getvalue())["items"]
    assert item["action"] == "CREATE"
    assert [line.split()[2] for line in log.read_text().splitlines()] == ["log", "status"]
