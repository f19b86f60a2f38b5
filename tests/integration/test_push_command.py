"""`agentdeploy push`: deploy's image stage alone, for a release workflow that attests the pushed digest before it
deploys it. Run as a user (and a workflow) runs it: the real CLI process, the real engine, the registry on
127.0.0.1:5000, and the registry asked over HTTP what it holds."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.errors import ExitCode
from testkit import REGISTRY, Run, git, http_get

pytestmark = pytest.mark.docker

MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


@dataclass
class Agent:
    """An agent in a git checkout of its own, pushed to a repository of its own."""

    config: Path
    name: str
    port: int
    repository: str  # inside the registry, e.g. it/0123abcd
    base: str  # the base image, under a name of this test's own
    docker: Any

    @property
    def checkout(self) -> Path:
        return self.config.parent.parent

    @property
    def container(self) -> str:
        return f"agentdeploy-push-{self.port}"

    @property
    def registry_repository(self) -> str:
        return f"{REGISTRY}/{self.repository}"

    def write(self, *, prompt: str = "Be kind.", registry: bool = True, tag: str | None = None) -> None:
        """The config, with the git_sha tag strategy unless a fixed `tag` is given (custom, or `latest`)."""
        if tag == "latest":
            strategy = ", tag_strategy: latest"
        elif tag is not None:
            strategy = f", tag_strategy: custom, custom_tag: {tag}"
        else:
            strategy = ""
        registry_line = f"  registry: {{url: '{REGISTRY}', repository: {self.repository}{strategy}}}\n"
        self.config.write_text(
            f"name: {self.name}\n"
            "description: pushed before it is deployed\n"
            "model: {provider: openai, name: gpt-4o}\n"
            "instructions: {file: prompt.md}\n"
            "deployment:\n"
            f"  port: {self.port}\n"
            f"{registry_line if registry else ''}"
            "  health: {path: /health, timeout_seconds: 10}\n"
            "  environment: {LOG_LEVEL: info}\n"
            "  secrets: {API_KEY: '${API_KEY}'}\n"
            f"  build: {{base_image: '{self.base}'}}\n"
            f"  target: {{docker: {{container_name: {self.container}}}}}\n"
        )
        (self.config.parent / "prompt.md").write_text(prompt)

    def commit(self, message: str = "agent") -> str:
        git(self.checkout, "add", ".")
        git(self.checkout, "commit", "-q", "-m", message)
        return git(self.checkout, "rev-parse", "HEAD")

    def cli(self, *argv: str, environ: dict[str, str] | None = None) -> Run:
        """`python -m agentdeploy COMMAND CONFIG ARGS...` as a process of its own. Without `environ`, the
        deployment's secret is not set: push must not need it."""
        done = subprocess.run(
            [sys.executable, "-m", "agentdeploy", argv[0], str(self.config), *argv[1:]],
            capture_output=True,
            text=True,
            env=environ or {"PATH": "/usr/bin:/bin"},
            timeout=300,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def registry_digest(self, tag: str) -> str:
        """Docker-Content-Digest of the tag, straight from the registry (not through agentdeploy)."""
        request = urllib.request.Request(
            f"http://{REGISTRY}/v2/{self.repository}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.headers["Docker-Content-Digest"])

    def containers(self) -> list[str]:
        found = self.docker.containers.list(all=True, filters={"label": f"dev.agentdeploy.agent={self.name}"})
        return [container.name for container in found]

    def images(self) -> list[str]:
        """Every image on the engine built for this agent (the label the build puts on it)."""
        found = self.docker.images.list(filters={"label": f"org.opencontainers.image.title={self.name}"})
        return [str(image.id) for image in found]

    def state_files(self) -> list[Path]:
        return list(self.config.parent.glob(".agentdeploy/*"))


@pytest.fixture
def agent(
    tmp_path: Path, docker_client: Any, base_image: str, free_port: Callable[[], int], repository_name: str
) -> Iterator[Agent]:
    checkout = tmp_path / "repo"
    (checkout / "agent").mkdir(parents=True)
    git(checkout, "init", "-q", "-b", "main")
    unique = repository_name.split("/")[1]
    name = f"push-{unique}"  # labels name the agent: this test's images and containers only
    # The skip depends on the base image's id. Other test sessions import the shared base again (a new id under
    # the same name) whenever they start, so this test builds on a name of its own that keeps the id it had.
    base = f"agentdeploy-test-base-{unique}:1"
    docker_client.images.get(base_image).tag(*base.split(":"))
    made = Agent(checkout / "agent" / "agent.yaml", name, free_port(), repository_name, base, docker_client)
    yield made
    for container in made.containers():
        with contextlib.suppress(Exception):
            docker_client.containers.get(container).remove(force=True)
    for image in made.images():
        with contextlib.suppress(Exception):
            docker_client.images.remove(image, force=True)
    with contextlib.suppress(Exception):
        docker_client.images.remove(base)  # the name only: the image stays under its shared name


def test_push_leaves_the_image_in_the_registry_and_runs_nothing(agent: Agent) -> None:
    agent.write()
    sha = agent.commit()
    pushed = agent.cli("push", "--json")  # API_KEY, the deployment's secret, is not set: building needs no secret
    assert pushed.code == ExitCode.OK, pushed.err
    data = pushed.data
    tag = sha[:7]
    assert data["status"] == "pushed"
    assert data["repository"] == agent.registry_repository  # actions/attest-build-provenance's subject-name
    assert data["image_tag"] == tag
    assert data["digest"].startswith("sha256:")
    assert data["digest"] == agent.registry_digest(tag)  # what the registry serves under the tag
    assert data["image"] == f"{agent.registry_repository}@{data['digest']}"
    assert data["skipped_build"] is False
    assert data["image_id"] in agent.images()
    assert {"image", "pull", "build", "push"} <= set(data["timings"])
    assert data["timings"]["push"] <= data["timings"]["image"]  # the upload, inside the whole image stage
    assert f"pushed {agent.registry_repository}:{tag}, digest {data['digest']} (verified" in pushed.err
    assert agent.containers() == []  # no target was asked to run anything
    assert agent.state_files() == []  # and no record was read into being or written
    assert not (agent.config.parent / ".agentdeploy").exists()


def test_a_second_push_of_the_same_commit_builds_nothing(agent: Agent) -> None:
    agent.write()
    sha = agent.commit()
    first = agent.cli("push", "--json")
    assert first.code == ExitCode.OK, first.err

    again = agent.cli("push")  # text output: the image by digest, and that nothing was built
    assert again.code == ExitCode.OK, again.err
    assert again.out == f"pushed: {first.data['image']} (nothing built: identical inputs)\n"
    assert "nothing to build" in again.err
    assert "building" not in again.err and "pushing" not in again.err

    as_json = agent.cli("push", "--json")
    assert as_json.code == ExitCode.OK, as_json.err
    assert as_json.data["skipped_build"] is True
    assert as_json.data["digest"] == first.data["digest"] == agent.registry_digest(sha[:7])
    assert as_json.data["image"] == first.data["image"]
    assert "build" not in as_json.data["timings"] and "push" not in as_json.data["timings"]
    assert agent.containers() == [] and agent.state_files() == []


def test_deploy_right_after_push_builds_nothing_and_runs_that_digest(agent: Agent) -> None:
    agent.write()
    agent.commit()
    pushed = agent.cli("push", "--json")
    assert pushed.code == ExitCode.OK, pushed.err

    deployed = agent.cli("deploy", "--json", environ={"PATH": "/usr/bin:/bin", "API_KEY": "sk-push-test-secret"})
    assert deployed.code == ExitCode.OK, deployed.err
    data = deployed.data
    assert data["status"] == "succeeded"
    assert data["skipped_build"] is True
    assert "nothing to build" in deployed.err and "building" not in deployed.err
    assert (data["digest"], data["image"]) == (pushed.data["digest"], pushed.data["image"])
    assert http_get(f"http://127.0.0.1:{agent.port}/health")[0] == 200
    assert agent.docker.containers.get(agent.container).labels["dev.agentdeploy.image"] == pushed.data["image"]
    record = json.loads((agent.config.parent / ".agentdeploy" / f"{agent.name}.local.json").read_text())
    assert record["current"]["digest"] == pushed.data["digest"]


def test_push_without_a_registry_is_refused_before_anything_is_built(agent: Agent) -> None:
    agent.write(registry=False)
    agent.commit()
    refused = agent.cli("push", "--json")
    assert refused.code == ExitCode.USAGE == 2
    assert refused.out == ""
    assert f"error: {agent.config} has no `registry:` in its deployment section" in refused.err
    assert "nothing was built" in refused.err
    assert "fix: add `registry: {url: HOST[:PORT], repository: ORG/NAME}`" in refused.err
    assert "building" not in refused.err
    assert agent.images() == [] and agent.containers() == [] and agent.state_files() == []


def test_a_missing_file_the_config_names_stops_push_before_the_build(agent: Agent) -> None:
    agent.write()
    (agent.config.parent / "prompt.md").unlink()
    refused = agent.cli("push")
    assert refused.code == ExitCode.CONTEXT, refused.err
    assert "prompt.md" in refused.err
    assert "building" not in refused.err
    assert agent.images() == []


def test_a_tag_that_names_other_content_is_refused_unless_move_tag(agent: Agent) -> None:
    agent.write(tag="v1", prompt="Be kind.")
    agent.commit()
    first = agent.cli("push", "--json")
    assert first.code == ExitCode.OK, first.err
    held = first.data["digest"]

    agent.write(tag="v1", prompt="Be brief.")  # other content under the same tag
    agent.commit("other content")
    refused = agent.cli("push", "--json")
    assert refused.code == ExitCode.REGISTRY == 7, refused.err
    assert refused.out == ""
    assert f"{agent.registry_repository}:v1 already names other content ({held})" in refused.err
    assert "--move-tag" in refused.err
    assert agent.registry_digest("v1") == held  # the tag still names what it named

    moved = agent.cli("push", "--json", "--move-tag")
    assert moved.code == ExitCode.OK, moved.err
    assert moved.data["digest"] != held
    assert agent.registry_digest("v1") == moved.data["digest"]

    agent.write(tag="latest", prompt="Be kind.")
    agent.commit("latest")
    assert agent.cli("push").code == ExitCode.OK
    agent.write(tag="latest", prompt="Be curt.")
    agent.commit("latest moves")
    latest = agent.cli("push", "--json")
    assert latest.code == ExitCode.OK, "latest is meant to move, without --move-tag: " + latest.err
    assert agent.registry_digest("latest") == latest.data["digest"]
    assert agent.containers() == [] and agent.state_files() == []
