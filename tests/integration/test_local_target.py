"""The local Docker target end to end, through the CLI a user runs: deploy, automatic rollback,
manual rollback, the skip path, secrets, status, logs, destroy."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.cli import main
from agentdeploy.errors import ExitCode
from agentdeploy.targets.ports import port_in_use
from testkit import REGISTRY, Run, http_get

pytestmark = pytest.mark.docker


@dataclass
class Project:
    config: Path
    port: int
    repository: str
    environ: dict[str, str]
    docker: Any
    registry: str = REGISTRY

    def write(
        self,
        tag: str,
        *,
        unhealthy: bool = False,
        crash: bool = False,
        prompt: str = "Be kind.",
        registry: bool = True,
        base: str = "agentdeploy-test-base:1",
        health_timeout: int = 6,
    ) -> None:
        environment = '{LOG_LEVEL: info, AGENT_TEST_UNHEALTHY: "1"}' if unhealthy else "{LOG_LEVEL: info}"
        if crash:
            environment = '{LOG_LEVEL: info, AGENT_TEST_CRASH: "1"}'
        registry_line = (
            f"  registry: {{url: '{self.registry}', repository: {self.repository}, "
            f"tag_strategy: custom, custom_tag: {tag}}}\n"
            if registry
            else ""
        )
        self.config.write_text(
            "name: local-agent\n"
            f"description: version {tag}\n"  # what /config shows: the runtime's copy has no deployment section
            "model: {provider: openai, name: gpt-4o}\n"
            "instructions: {file: prompt.md}\n"
            "deployment:\n"
            f"  port: {self.port}\n"
            f"{registry_line}"
            f"  health: {{path: /health, timeout_seconds: {health_timeout}}}\n"
            f"  environment: {environment}\n"
            "  secrets: {API_KEY: '${API_KEY}'}\n"
            f"  build: {{base_image: '{base}'}}\n"
            "  target: {docker: {container_name: " + self.container + "}}\n"
        )
        (self.config.parent / "prompt.md").write_text(prompt)

    @property
    def container(self) -> str:
        return f"agentdeploy-it-{self.port}"

    def run(self, *argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv[:1], str(self.config), *argv[1:]], environ=self.environ, out=out, err=err)
        return Run(code, out.getvalue(), err.getvalue())

    def served_config(self) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.port}/config")
        assert status == 200
        return body

    def runtime_config(self) -> str:
        """The config as the runtime must read it: the file as written, up to its deployment section."""
        text = self.config.read_text()
        return text[: text.index("deployment:\n")]

    def state(self) -> dict[str, Any]:
        return json.loads((self.config.parent / ".agentdeploy" / "local-agent.local.json").read_text())


@pytest.fixture
def project(
    tmp_path: Path, docker_client: Any, base_image: str, free_port: Callable[[], int], repository_name: str
) -> Iterator[Project]:
    directory = tmp_path / "agent"
    directory.mkdir()
    sentinel = f"SENTINEL-{repository_name.split('/')[1]}"
    environ = {"API_KEY": sentinel, "PATH": "/usr/bin:/bin"}
    made = Project(directory / "agent.yaml", free_port(), repository_name, environ, docker_client)
    yield made
    for name in (made.container, made.container + "-previous"):
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True)


def test_deploy_auto_rollback_manual_rollback_destroy(project: Project) -> None:
    project.write("v1")
    first = project.run("deploy", "--json")
    assert first.code == ExitCode.OK, first.err
    v1 = first.data
    assert v1["status"] == "succeeded" and v1["url"] == f"http://127.0.0.1:{project.port}"
    assert v1["image"] == f"{REGISTRY}/{project.repository}@{v1['digest']}"  # deployed by digest
    assert http_get(v1["url"] + "/health")[0] == 200
    v1_config = project.runtime_config()
    assert project.served_config() == v1_config
    # The revision reads like Azure's <app>--<suffix>: the container's name and its id as `docker ps` shows it.
    v1_id = project.docker.containers.get(project.container).id
    assert v1["revision"] == f"{project.container}--{v1_id[:12]}" == project.state()["current"]["revision"]

    # v2 fails its health gate: removed, v1 back, exit code and state say rolled-back.
    project.write("v2", unhealthy=True)
    second = project.run("deploy", "--json")
    assert second.code == ExitCode.ROLLED_BACK
    assert second.out == ""
    assert "health gate failed: not healthy at " in second.err and "(last answer: HTTP 404)" in second.err
    assert re.search(
        r"error: the new version failed its health gate .*; rolled back to " + re.escape(v1["image"]), second.err
    )
    # The agent's last lines are in the error itself, after its first line.
    error = second.err.splitlines()
    error = error[next(i for i, line in enumerate(error) if line.startswith("error: ")) + 1 :]
    assert error == [
        "  the agent's last 1 log line(s):",
        f"    {project.container}: fake holodeck serving /app/agent.yaml on {project.port}",
        "  fix: read the output above, fix the agent, and deploy again",
    ]
    assert project.served_config() == v1_config
    state = project.state()
    assert [(h["tag"], h["status"]) for h in state["history"]] == [("v2", "rolled-back"), ("v1", "succeeded")]
    assert state["current"]["image"] == v1["image"]
    assert project.docker.containers.get(project.container).labels["dev.agentdeploy.image"] == v1["image"]

    # A healthy v3, then rollback (previous -> v1), then forward again by tag, then by digest.
    project.write("v3", prompt="Be brief.")
    third = project.run("deploy", "--json")
    assert third.code == ExitCode.OK, third.err
    v3_config = project.served_config()
    assert "description: version v3" in v3_config and "deployment" not in v3_config

    back = project.run("rollback", "--json")
    assert back.code == ExitCode.OK, back.err
    assert back.data["image"] == v1["image"] and back.data["image_tag"] == "v1"
    assert "no rebuild" in back.err and "building" not in back.err
    summary = back.err.splitlines()[-3:-1]  # what the user reads last: what it went back to; the container short
    assert summary == [
        f"image     rolled back to v1 ({v1['digest']}), no build",
        f"revision  {back.data['revision'][:12]} (before: {back.data['previous_revision']})",
    ]
    assert len(back.data["revision"]) == 64  # --json keeps the container id whole
    assert project.served_config() == v1_config
    assert project.state()["current"]["action"] == "rollback"

    forward = project.run("rollback", "--to", "v3", "--json")
    assert forward.code == ExitCode.OK, forward.err
    assert project.served_config() == v3_config
    by_digest = project.run("rollback", "--to", v1["digest"], "--json")
    assert by_digest.code == ExitCode.OK and by_digest.data["digest"] == v1["digest"]
    assert project.served_config() == v1_config

    unknown = project.run("rollback", "--to", "v9")
    assert unknown.code == ExitCode.NOTHING_TO_ROLL_BACK
    assert "no earlier successful deployment matches 'v9'" in unknown.err and "known tags: v1, v3" in unknown.err

    status = project.run("status", "--json")
    assert status.data["live"]["state"] == "running"
    assert status.data["current"]["tag"] == "v1"

    logs = project.run("logs", "--tail", "5")
    assert f"fake holodeck serving /app/agent.yaml on {project.port}" in logs.out

    refused = project.run("destroy")
    assert refused.code == ExitCode.USAGE
    destroyed = project.run("destroy", "--yes")
    assert destroyed.code == ExitCode.OK
    assert destroyed.out.strip() == f"removed {project.container}"
    leftovers = project.docker.containers.list(all=True, filters={"label": "dev.agentdeploy.agent=local-agent"})
    assert [c.name for c in leftovers if c.name.startswith(project.container)] == []
    assert project.state()["current"] is None


def test_identical_inputs_skip_build_and_push(project: Project) -> None:
    project.write("v1")
    first = project.run("deploy", "--json")
    assert first.code == ExitCode.OK, first.err
    project.write("v1")  # same content, same tag
    unchanged = project.run("deploy", "--json")
    assert unchanged.code == ExitCode.OK and unchanged.data["status"] == "unchanged"
    assert "NO_CHANGE" in unchanged.err and "building" not in unchanged.err
    again = project.run("deploy", "--json", "--force")
    assert again.code == ExitCode.OK, again.err
    assert again.data["skipped_build"] is True
    assert again.data["digest"] == first.data["digest"]
    assert "nothing to build" in again.err
    assert "building" not in again.err and "pushing" not in again.err


def test_unhealthy_first_deploy_has_nothing_to_roll_back_to(project: Project) -> None:
    project.write("v1", unhealthy=True)
    result = project.run("deploy")
    assert result.code == ExitCode.DEPLOY
    assert "nothing to roll back to" in result.err
    assert project.state()["current"] is None


def test_local_only_deploy_without_registry(project: Project) -> None:
    project.write("unused", registry=False)
    result = project.run("deploy", "--json")
    assert result.code == ExitCode.OK, result.err
    assert result.data["image"].startswith("sha256:")  # the local image id: nothing was pushed
    assert http_get(result.data["url"] + "/health")[0] == 200
    # Found again by name, not by listing every image the engine holds: the build carries an inputs tag too.
    [inputs_tag] = [
        tag for tag in project.docker.images.get(result.data["image"]).tags if ":agentdeploy-inputs-" in tag
    ]
    assert re.fullmatch(r"agentdeploy/[a-z0-9-]+:agentdeploy-inputs-[0-9a-f]{32}", inputs_tag)
    again = project.run("deploy", "--json", "--force")
    assert again.data["skipped_build"] is True and again.data["image"] == result.data["image"]


def test_secret_never_leaves_the_runtime(project: Project, tmp_path: Path) -> None:
    project.write("v1")
    sentinel = project.environ["API_KEY"]
    result = project.run("deploy", "--json")
    assert result.code == ExitCode.OK, result.err
    # The running agent does get it, at run time.
    status, env = http_get(f"http://127.0.0.1:{project.port}/env")
    assert status == 200 and f"API_KEY={sentinel}" in env.splitlines()
    # Nowhere else: output, image config, history, layers, files the tool wrote.
    assert sentinel not in result.out + result.err
    image = project.docker.images.get(result.data["image"])
    assert sentinel not in json.dumps(project.docker.api.inspect_image(image.id))
    assert sentinel not in json.dumps(image.history())
    exported = b"".join(image.save(named=False))
    assert sentinel.encode() not in exported
    written = [p for p in project.config.parent.rglob("*") if p.is_file()]
    assert any(p.name == "local-agent.local.json" for p in written)
    for path in written:
        assert sentinel not in path.read_text(errors="replace"), path


def test_missing_variables_deploy_nothing(project: Project) -> None:
    project.write("v1")
    project.environ.pop("API_KEY")
    result = project.run("deploy")
    assert result.code == ExitCode.CONFIG
    assert "${API_KEY} is not set" in result.err
    assert not (project.config.parent / ".agentdeploy").exists()
    assert project.docker.containers.list(all=True, filters={"name": project.container}) == []


def test_cache_is_seeded_from_the_registry_on_an_empty_engine(
    project: Project, docker_client: Any, tmp_path: Path
) -> None:
    """CI runners start with an empty engine: the previous image is pulled and used as cache."""
    # A base image no other test shares, so no local build cache can help.
    base = docker_client.images.get("agentdeploy-test-base:1")
    layer = b"".join(base.save(named=False))
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(layer)) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("layer.tar"))
        rootfs = archive.extractfile(member).read()  # type: ignore[union-attr]
    fresh = f"agentdeploy-test-base:seed-{project.port}"
    docker_client.api.import_image_from_data(rootfs, repository=fresh.split(":")[0], tag=fresh.split(":")[1])
    project.write("v1")
    project.config.write_text(project.config.read_text().replace("agentdeploy-test-base:1", fresh))
    assert project.run("deploy").code == ExitCode.OK
    assert project.run("destroy", "--yes").code == ExitCode.OK
    # Empty the engine of everything built on that base.
    for image in docker_client.images.list(name=f"{REGISTRY}/{project.repository}"):
        docker_client.images.remove(image.id, force=True)
    project.write("v2", prompt="A changed prompt.")
    project.config.write_text(project.config.read_text().replace("agentdeploy-test-base:1", fresh))
    result = project.run("deploy")
    assert result.code == ExitCode.OK, result.err
    assert f"layer cache seeded from {REGISTRY}/{project.repository}:agentdeploy-cache" in result.err
    # Everything before the agent's files, which come last (USER root, the runtime check's COPY and RUN, COPY home/,
    # COPY workdir/, WORKDIR, ENV, USER, EXPOSE, HEALTHCHECK, ENTRYPOINT, CMD); then the files and the labels.
    assert re.search(r"built \S+:v2 \(12/15 steps from cache\)", result.err), result.err  # 15 with FROM
    docker_client.images.remove(fresh, force=True)


def test_rollback_to_a_vanished_image_pulls_it_by_digest(project: Project, docker_client: Any) -> None:
    project.write("v1")
    v1 = project.run("deploy", "--json").data
    project.write("v2", prompt="second")
    assert project.run("deploy").code == ExitCode.OK
    docker_client.images.remove(v1["image"], force=True)  # gone from the engine, still in the registry
    back = project.run("rollback", "--json")
    assert back.code == ExitCode.OK, back.err
    assert f"pulling {v1['image']}" in back.err
    assert back.data["image"] == v1["image"]


def test_wrong_registry_credentials_stop_before_anything_runs(project: Project, auth_registry: Any) -> None:
    project.registry = auth_registry.host
    project.environ.update(REGISTRY_USERNAME=auth_registry.username, REGISTRY_PASSWORD="not-the-password")
    project.write("v1")
    result = project.run("deploy")
    assert result.code == ExitCode.REGISTRY
    assert (
        f"error: registry {auth_registry.host} refused the credentials from REGISTRY_USERNAME/REGISTRY_PASSWORD"
        in result.err
    )
    assert "fix: set REGISTRY_USERNAME and REGISTRY_PASSWORD" in result.err
    assert "not-the-password" not in result.err + result.out
    assert project.docker.containers.list(all=True, filters={"name": project.container}) == []


def test_credentials_stored_by_docker_login_are_used(
    project: Project, auth_registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    token = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))  # where `docker login` writes
    project.registry = auth_registry.host
    project.write("v1")
    result = project.run("deploy", "--json")
    assert result.code == ExitCode.OK, result.err
    assert f"registry {auth_registry.host}: credentials from docker login" in result.err
    assert result.data["image"].startswith(f"{auth_registry.host}/{project.repository}@sha256:")


def test_digest_mismatch_stops_the_release(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentdeploy.image.registry import RegistryClient

    real = RegistryClient.manifest_digest

    def tampered(self: RegistryClient, repository: str, reference: str) -> str | None:
        digest = real(self, repository, reference)
        # Someone else pushed the same tag between our push and our check.
        return "sha256:" + "0" * 64 if reference == "v1" and digest else digest

    monkeypatch.setattr(RegistryClient, "manifest_digest", tampered)
    project.write("v1")
    result = project.run("deploy")
    assert result.code == ExitCode.REGISTRY
    assert "digest mismatch for" in result.err and "the registry serves sha256:" + "0" * 64 in result.err
    assert project.docker.containers.list(all=True, filters={"name": project.container}) == []
    assert not (project.config.parent / ".agentdeploy" / "local-agent.local.json").exists()


def test_bring_your_own_dockerfile(project: Project) -> None:
    project.write("v1", registry=False)
    project.config.write_text(
        project.config.read_text().replace(
            "  build: {base_image: 'agentdeploy-test-base:1'}\n", "  build: {dockerfile: docker/Dockerfile}\n"
        )
    )
    dockerfile = project.config.parent / "docker" / "Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text(
        "FROM agentdeploy-test-base:1\n"
        "COPY agent.yaml prompt.md /srv/\n"
        "ENV PORT=" + str(project.port) + "\n"
        'ENTRYPOINT ["/bin/sh", "-c", "exec holodeck serve /srv/agent.yaml --port $PORT"]\n'
    )
    result = project.run("deploy", "--json")
    assert result.code == ExitCode.OK, result.err
    assert project.served_config() == project.config.read_text()
    labels = project.docker.images.get(result.data["image"]).labels
    assert labels["org.opencontainers.image.title"] == "local-agent"  # labels still go through the build API
    again = project.run("deploy", "--json", "--force")
    assert again.data["skipped_build"] is True
    dockerfile.write_text(dockerfile.read_text() + "LABEL changed=yes\n")
    changed = project.run("deploy", "--json")
    assert changed.code == ExitCode.OK and changed.data["skipped_build"] is False


def test_plan_and_drift_on_the_local_engine(project: Project) -> None:
    project.write("v1", registry=False)
    created = project.run("plan", "--json")
    assert created.data["items"][0]["action"] == "CREATE"
    assert project.run("deploy").code == ExitCode.OK
    assert project.run("plan", "--json").data["items"][0]["action"] == "NO_CHANGE"
    project.config.write_text(project.config.read_text().replace("timeout_seconds: 6", "timeout_seconds: 7"))
    [item] = project.run("plan", "--json").data["items"]
    assert item["action"] == "UPDATE"
    # The image carries agent.yaml without its deployment section: a deployment setting rebuilds nothing.
    assert item["changes"] == ["deployment.health.timeout_seconds"]
    project.docker.containers.get(project.container).remove(force=True)  # someone removed it by hand
    [item] = project.run("plan", "--json").data["items"]
    assert item["action"] == "DRIFT" and item["drift"] == ["recorded as deployed, but it does not exist"]
    assert project.run("deploy", "--fail-on-drift").code == ExitCode.DEPLOY
    repaired = project.run("deploy", "--json")
    assert repaired.code == ExitCode.OK and http_get(repaired.data["url"] + "/health")[0] == 200


def test_a_crash_looping_version_fails_at_once_with_its_exit_code_and_log(project: Project) -> None:
    project.write("v1")
    assert project.run("deploy").code == ExitCode.OK
    # A long health timeout: the gate must not wait for it when the container crashes.
    project.write("v2", crash=True, health_timeout=600)
    result = project.run("deploy", "--json")
    assert result.code == ExitCode.ROLLED_BACK, result.err
    [gate] = [line for line in result.err.splitlines() if line.startswith("health gate failed")]
    assert re.fullmatch(
        r"health gate failed: the container exited with code 3(, restarted \d+ time\(s\) by its restart policy)?: "
        r"it crashes at start-up",
        gate,
    ), gate
    # Its last log lines in the error itself, with the secret it printed masked (once per start: the restart policy).
    error = result.err.splitlines()
    error = error[next(i for i, line in enumerate(error) if line.startswith("error: ")) + 1 :]
    assert error[0] == f"  the agent's last {len(error) - 2} log line(s):" and len(error) >= 3
    assert set(error[1:-1]) == {f"    {project.container}: fake holodeck: cannot load the agent, token ***"}
    assert error[-1] == "  fix: read the output above, fix the agent, and deploy again"
    assert project.environ["API_KEY"] not in result.err
    assert "description: version v1" in project.served_config()  # v1 is back


def test_the_base_image_id_is_part_of_the_build_fingerprint(project: Project, docker_client: Any) -> None:
    from testkit import busybox_rootfs

    base = f"agentdeploy-test-base:fingerprint-{project.port}"
    docker_client.api.import_image_from_data(busybox_rootfs(), repository=base.split(":")[0], tag=base.split(":")[1])
    try:
        project.write("v1", registry=False, base=base)
        assert project.run("deploy").code == ExitCode.OK
        same = project.run("deploy", "--force")
        assert same.code == ExitCode.OK and "nothing to build" in same.err
        # The base is rebuilt under the same name (a new id): the agent is built on it, not skipped.
        docker_client.api.import_image_from_data(
            busybox_rootfs(("head",)), repository=base.split(":")[0], tag=base.split(":")[1]
        )
        rebuilt = project.run("deploy", "--force", "--json")
        assert rebuilt.code == ExitCode.OK, rebuilt.err
        assert "nothing to build" not in rebuilt.err and rebuilt.data["skipped_build"] is False
        new_base_id = docker_client.images.get(base).id
        labels = docker_client.images.get(rebuilt.data["image"]).labels
        assert labels["dev.agentdeploy.base-image-id"] == new_base_id
    finally:
        docker_client.images.remove(base, force=True)


def test_a_base_image_that_cannot_be_pulled_names_the_setting(project: Project) -> None:
    missing = f"{REGISTRY}/nobody/holodeck-base:{project.port}"
    project.write("v1", registry=False, base=missing)
    result = project.run("deploy")
    assert result.code == ExitCode.BUILD, result.err
    line = next(i for i, text in enumerate(project.config.read_text().splitlines(), 1) if "base_image" in text)
    assert f"error: the base image {missing} (deployment.build.base_image, {project.config}:{line}:" in result.err
    assert (
        f"cannot be pulled: {REGISTRY} has no such image (manifest for {missing} not found: manifest unknown: "
        "manifest unknown)\n  fix: check the name and tag; or build a HoloDeck base on this machine with "
        "`agentdeploy base build` and set deployment.build.base_image to the name it prints\n"
    ) in result.err
    assert project.docker.containers.list(all=True, filters={"name": project.container}) == []


def test_a_base_on_a_registry_this_machine_cannot_reach_offers_to_build_one_here(project: Project) -> None:
    # The engine's own words for a host that does not resolve (offline, or no DNS for ghcr.io): the fix is a
    # base built here, not `docker login`. (.invalid never resolves: nothing leaves the machine.)
    missing = "nonexistent.invalid/holodeck-base:1"
    project.write("v1", registry=False, base=missing)
    result = project.run("deploy")
    assert result.code == ExitCode.BUILD, result.err
    line = next(i for i, text in enumerate(project.config.read_text().splitlines(), 1) if "base_image" in text)
    where = re.escape(f"{project.config}:{line}:")
    assert re.search(
        rf"^error: the base image {re.escape(missing)} \(deployment.build.base_image, {where}\d+\) cannot be "
        r"pulled: this machine cannot reach nonexistent.invalid \(Get \"https://nonexistent.invalid/v2/\": dial tcp: "
        r"lookup nonexistent.invalid( on \S+)?: no such host\)\n"
        r"  fix: build a HoloDeck base on this machine with `agentdeploy base build` and set "
        r"deployment.build.base_image to the name it prints; or, where a proxy leads out, give the Docker engine "
        r"its proxy settings$",
        result.err,
        re.M,
    ), result.err
    assert "docker login" not in result.err
    assert project.docker.containers.list(all=True, filters={"name": project.container}) == []


def test_a_base_with_another_holodeck_version_stops_the_build(project: Project, tmp_path: Path) -> None:
    recipe = tmp_path / "old-base"
    recipe.mkdir()
    (recipe / "Dockerfile").write_text("FROM agentdeploy-test-base:1\nENV FAKE_HOLODECK_VERSION=0.6.0\n")
    old = f"agentdeploy-test-base:old-{project.port}"
    project.docker.images.build(path=str(recipe), tag=old, rm=True)
    try:
        project.write("v1", registry=False, base=old)
        result = project.run("deploy")
        assert result.code == ExitCode.BUILD, result.err
        [error] = [line for line in result.err.splitlines() if line.startswith("error:")]
        assert error == (
            "error: the base image's holodeck is 0.6.0, the agent needs holodeck-ai[openai-agents]==0.7.1; "
            "use a base image that has it"
        )
    finally:
        project.docker.images.remove(old, force=True)


def test_a_registry_tag_is_never_moved_to_other_content_unless_asked(project: Project) -> None:
    project.write("v1", prompt="Be kind.")
    first = project.run("deploy", "--json")
    assert first.code == 0, first.err
    held = first.data["digest"]
    history = project.state()["history"]

    project.write("v1", prompt="Be brief.")  # other content under the same tag
    refused = project.run("deploy")
    assert refused.code == ExitCode.REGISTRY, refused.err
    assert f"{project.registry}/{project.repository}:v1 already names other content ({held})" in refused.err
    assert "--move-tag" in refused.err
    assert project.state()["history"] == history  # nothing ran, nothing recorded
    assert _registry_digest(project, "v1") == (200, held)  # the tag still names what was deployed

    moved = project.run("deploy", "--json", "--move-tag")
    assert moved.code == 0, moved.err
    assert moved.data["digest"] != held
    assert _registry_digest(project, "v1")[1] == moved.data["digest"]

    project.write("latest", prompt="Be kind.")
    assert project.run("deploy").code == 0
    project.write("latest", prompt="Be curt.")  # latest is meant to move
    assert project.run("deploy").code == 0, "latest must move without --move-tag"


def _registry_digest(project: Project, tag: str) -> tuple[int, str]:
    import urllib.request

    request = urllib.request.Request(
        f"http://{project.registry}/v2/{project.repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, str(response.headers["Docker-Content-Digest"])


def test_a_rotated_secret_is_planned_and_deployed_as_an_update(project: Project) -> None:
    project.write("v1", registry=False)
    assert project.run("deploy").code == 0
    project.environ["API_KEY"] = "SENTINEL-rotated-0001"
    plan = project.run("plan", "--json")
    [item] = plan.data["items"]
    assert (item["action"], item["changes"]) == ("UPDATE", ["secret API_KEY (a new value)"])
    assert "SENTINEL-rotated-0001" not in plan.out + plan.err
    deployed = project.run("deploy", "--json")
    assert deployed.code == 0 and deployed.data["status"] == "succeeded", deployed.err
    status, env = http_get(f"http://127.0.0.1:{project.port}/env")
    assert status == 200 and "API_KEY=SENTINEL-rotated-0001" in env.splitlines()


def _own_command() -> str:
    return Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]


def test_a_port_another_program_holds_fails_before_the_build_naming_it(project: Project) -> None:
    project.write("v1", registry=False)
    with socket.socket() as listener:  # this test's own process holds the agent's port
        listener.bind(("127.0.0.1", project.port))
        listener.listen()
        result = project.run("deploy")
    assert result.code == ExitCode.DEPLOY, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: port {project.port} on 127.0.0.1 is in use by process {os.getpid()} "
        f"({_own_command()}): the agent could not listen there (nothing was built)"
    ], result.err
    assert "fix: stop process" in result.err and "deployment.port" in result.err
    assert "Step 1/" not in result.err and "nothing to build" not in result.err  # no build was started
    assert not project.docker.containers.list(all=True, filters={"name": project.container})
    assert not (project.config.parent / ".agentdeploy" / "local-agent.local.json").exists()


def test_a_port_another_container_holds_is_named(project: Project, docker_client: Any) -> None:
    # (Our own running version on the port is replaced, not refused: every redeploy test here goes through it.)
    squatter = docker_client.containers.run(
        "agentdeploy-test-base:1",
        ["httpd", "-f", "-p", f"127.0.0.1:{project.port}"],
        name=f"{project.container}-squatter",
        detach=True,
        network_mode="host",
    )
    try:
        _wait_listening(project.port)
        project.write("v1", registry=False)
        result = project.run("deploy")
        assert result.code == ExitCode.DEPLOY, result.err
        errors = [line for line in result.err.splitlines() if line.startswith("error:")]
        assert errors == [
            f"error: port {project.port} on 127.0.0.1 is in use by container {project.container}-squatter: the agent "
            "could not listen there (nothing was built)"
        ], result.err
        assert not project.docker.containers.list(all=True, filters={"name": f"^/{project.container}$"})
    finally:
        squatter.remove(force=True)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while not port_in_use("127.0.0.1", port):
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


def _env_names(project: Project) -> set[str]:
    container = project.docker.containers.get(project.container)
    return {item.partition("=")[0] for item in container.attrs["Config"]["Env"]}


def test_one_off_variables_reach_the_agent_and_no_other_variable_does(project: Project) -> None:
    """`deploy --env NAME=VALUE --env NAME`: exactly those reach the container; values masked, never recorded."""
    project.write("v1")
    assert project.run("deploy").code == ExitCode.OK
    before = _env_names(project)
    typed, exported = "typed-value-9b8e4c", "shell-value-7f3a21"
    project.environ.update({"FROM_SHELL": exported, "NOT_GIVEN": "never-forwarded-1c2d"})

    # The config is unchanged (NO_CHANGE): --env still brings a new version, the only way its values arrive.
    result = project.run("deploy", "--json", "--env", "GIVEN_HERE=" + typed, "--env", "FROM_SHELL")
    assert result.code == ExitCode.OK, result.err
    assert _env_names(project) - before == {"GIVEN_HERE", "FROM_SHELL"}
    assert before - _env_names(project) == set()
    status, env = http_get(f"http://127.0.0.1:{project.port}/env")
    assert status == 200
    assert {"GIVEN_HERE=" + typed, "FROM_SHELL=" + exported} <= set(env.splitlines())
    assert not any(line.startswith("NOT_GIVEN=") for line in env.splitlines())
    # Named in the plan as secrets; their values in no output and not in the state file.
    assert "GIVEN_HERE (secret)" in result.err and "FROM_SHELL (secret)" in result.err
    for value in (typed, exported):
        assert value not in result.out + result.err
        assert value not in (project.config.parent / ".agentdeploy" / "local-agent.local.json").read_text()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "GITHUB_TOKEN",
            "error: --env GITHUB_TOKEN: a variable of the CI runner or of agentdeploy (GITHUB_*, ACTIONS_*, RUNNER_*, "
            "AGENTDEPLOY_*, AZURE_FEDERATED_TOKEN*) is never given to the agent this way",
        ),
        ("1ST=x", "error: --env '1ST=x': '1ST' is not a variable name"),
        ("UNSET_HERE", "error: --env UNSET_HERE: UNSET_HERE is not set in this shell"),
        ("API_KEY=other", "error: --env API_KEY: agent.yaml already gives the agent API_KEY"),
        ("PORT=9", "error: --env PORT: the image sets PORT itself"),
    ],
)
def test_a_one_off_variable_that_cannot_be_given_stops_the_deploy_before_anything(
    project: Project, given: str, message: str
) -> None:
    project.write("v1")
    project.environ["GITHUB_TOKEN"] = "ghs_runner_token"
    result = project.run("deploy", "--env", given)
    assert result.code == ExitCode.USAGE
    assert message in result.err.splitlines()
    assert "Traceback" not in result.err and "building" not in result.err
    assert not (project.config.parent / ".agentdeploy").exists()
    assert project.docker.containers.list(all=True, filters={"name": project.container}) == []
