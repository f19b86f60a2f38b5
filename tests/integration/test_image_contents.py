"""What goes into an image built from the user's own Dockerfile: the files they meant, never the secrets that sit
beside them (a git-ignored .env, keys, .git), unless their .dockerignore asks for one by name."""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentdeploy.cli import main
from agentdeploy.errors import ExitCode
from testkit import Run

pytestmark = pytest.mark.docker

SECRET = "sk-live-do-not-ship-0123456789"


def git(directory: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=directory,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def own_dockerfile_project(tmp_path: Path, base_image: str, free_port: Callable[[], int]) -> Path:
    """An agent with its own `COPY . /app/` Dockerfile, and secrets lying in its directory (git-ignored)."""
    project = tmp_path / "agent"
    project.mkdir()
    port = free_port()
    (project / "agent.yaml").write_text(
        "name: own-dockerfile\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
        "deployment:\n"
        f"  port: {port}\n"
        "  health: {path: /health, timeout_seconds: 20}\n"
        "  build: {dockerfile: Dockerfile}\n"
        f"  target: {{docker: {{container_name: agentdeploy-own-{port}}}}}\n"
    )
    (project / "prompt.md").write_text("Be kind.\n")
    (project / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY . /app/\nENV PORT={port}\n"
        'ENTRYPOINT ["/bin/sh", "-c", "exec holodeck serve /app/agent.yaml --port $PORT"]\n'
    )
    (project / ".gitignore").write_text(".env\nid_rsa\n*.pem\n")
    (project / "data").mkdir()
    (project / "data" / "faq.md").write_text("Q: why? A: because.\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "first")
    (project / ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
    (project / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    (project / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\nsecret\n")
    (project / "config.pem").write_text("-----BEGIN CERTIFICATE-----\npublic\n")
    (project / "data" / ".env.production").write_text(f"TOKEN={SECRET}\n")
    return project


@pytest.fixture
def cleanup(docker_client: Any, own_dockerfile_project: Path) -> Iterator[None]:
    yield
    port = yaml.safe_load((own_dockerfile_project / "agent.yaml").read_text())["deployment"]["port"]
    for name in (f"agentdeploy-own-{port}", f"agentdeploy-own-{port}-previous"):
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True)


def deploy(project: Path) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main(["deploy", str(project / "agent.yaml"), "--json"], environ={"PATH": "/usr/bin:/bin"}, out=out, err=err)
    return Run(code, out.getvalue(), err.getvalue())


def files_in_image(docker_client: Any, image: str, directory: str = "/app") -> dict[str, bytes]:
    """Every regular file under `directory` of the image (read from a created, never started, container)."""
    container = docker_client.containers.create(image)
    try:
        stream, _ = container.get_archive(directory)
        found = {}
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            for member in archive.getmembers():
                if member.isfile():
                    handle = archive.extractfile(member)
                    assert handle is not None
                    found[member.name.removeprefix(directory.strip("/") + "/")] = handle.read()
        return found
    finally:
        container.remove(force=True)


def test_secrets_beside_an_own_dockerfile_stay_out_of_the_image(
    own_dockerfile_project: Path, docker_client: Any, cleanup: None
) -> None:
    project = own_dockerfile_project
    result = deploy(project)
    assert result.code == ExitCode.OK, result.err

    files = files_in_image(docker_client, result.data["image"])
    assert sorted(files) == [".gitignore", "Dockerfile", "agent.yaml", "data/faq.md", "prompt.md"]
    assert all(SECRET.encode() not in content for content in files.values())
    [warning] = [line for line in result.err.splitlines() if "left out of the build context" in line]
    assert warning == (
        "warning: left out of the build context (secrets, version control): .env, .git/, config.pem, "
        "data/.env.production, id_rsa, server.pem"
    )
    assert "fix: to send one on purpose, name it with ! in .dockerignore (e.g. !config.pem)" in result.err


def test_a_dockerignore_may_send_one_of_them_by_name(
    own_dockerfile_project: Path, docker_client: Any, cleanup: None
) -> None:
    project = own_dockerfile_project
    (project / ".dockerignore").write_text("# the certificate is public\n!config.pem\ndata/\n")
    result = deploy(project)
    assert result.code == ExitCode.OK, result.err

    files = files_in_image(docker_client, result.data["image"])
    assert sorted(files) == [".dockerignore", ".gitignore", "Dockerfile", "agent.yaml", "config.pem", "prompt.md"]
    assert files["config.pem"] == b"-----BEGIN CERTIFICATE-----\npublic\n"
    # What the user's own .dockerignore leaves out (data/) is theirs to know: only ours is named.
    [warning] = [line for line in result.err.splitlines() if "left out of the build context" in line]
    assert (
        warning == "warning: left out of the build context (secrets, version control): .env, .git/, id_rsa, server.pem"
    )


def test_a_secret_file_changes_neither_the_tag_nor_the_build(
    own_dockerfile_project: Path, docker_client: Any, cleanup: None
) -> None:
    project = own_dockerfile_project
    commit = git(project, "rev-parse", "HEAD")[:7]
    first = deploy(project)
    assert first.code == ExitCode.OK, first.err
    assert first.data["image_tag"] == commit  # the ignored secrets beside it do not make the tree dirty

    (project / ".env").write_text("OPENAI_API_KEY=sk-rotated-0000\n")
    (project / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\nrotated\n")
    again = deploy(project)
    assert again.code == ExitCode.OK, again.err
    assert (again.data["image_tag"], again.data["skipped_build"]) == (commit, True)

    (project / "data" / "faq.md").write_text("Q: why? A: because we said so.\n")  # goes into the image
    changed = deploy(project)
    assert changed.code == ExitCode.OK, changed.err
    assert changed.data["image_tag"].startswith(f"{commit}-dirty-") and changed.data["skipped_build"] is False
