"""Shared fixtures: agent projects on disk, the compat files, and the real Docker engine."""

from __future__ import annotations

import socket
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from structure import structure_line
from testkit import COMPAT, TlsFiles, busybox_rootfs, make_tls, optional_corpora_line, start_registry

TEST_BASE_IMAGE = "agentdeploy-test-base:1"


@pytest.fixture
def write_agent(tmp_path: Path) -> Callable[..., Path]:
    """write_agent(yaml_text, files={"instructions.md": "..."}) -> path of agent.yaml."""

    def write(text: str, files: dict[str, str] | None = None, name: str = "agent.yaml") -> Path:
        project = tmp_path / "project"
        project.mkdir(exist_ok=True)
        for relative, content in (files or {}).items():
            target = project / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        config = project / name
        config.write_text(textwrap.dedent(text).lstrip())
        return config

    return write


MINIMAL = """
name: demo-agent
description: A demo agent
model: {provider: openai, name: gpt-4o}
instructions: {inline: Be helpful.}
"""


def pytest_report_header() -> list[str]:
    return [optional_corpora_line(), structure_line()]


@pytest.fixture
def compat() -> Path:
    """The optional corpus of real configs; a clone without it skips these tests and says how to add it."""
    if not COMPAT.is_dir():
        pytest.skip(f"optional corpus: no real agent configs at {COMPAT} (see tests/fixtures/README.md)")
    return COMPAT


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A port nothing listens on yet, on loopback (containers run with host networking)."""

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    return pick


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The real engine. .ci/run starts it; a missing engine fails the tests rather than skipping."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"no Docker engine ({exc}); start it with `sudo .ci/services`")
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """A local base image (busybox + a fake `holodeck serve`): nothing can be pulled here."""
    import hashlib

    import docker.errors

    # Tagged by its content and imported only when absent: `docker import` makes a new image id each time, and a
    # base whose id moved under a running test (another session importing it) defeats that test's build skip.
    # The tests name it TEST_BASE_IMAGE, which is pointed at that one image (the same id in every session).
    rootfs = busybox_rootfs()
    repository, tag = TEST_BASE_IMAGE.split(":")
    keyed = f"content-{hashlib.sha256(rootfs).hexdigest()[:12]}"
    try:
        image = docker_client.images.get(f"{repository}:{keyed}")
    except docker.errors.ImageNotFound:
        docker_client.api.import_image_from_data(rootfs, repository=repository, tag=keyed)
        image = docker_client.images.get(f"{repository}:{keyed}")
    image.tag(repository, tag)
    return TEST_BASE_IMAGE


@pytest.fixture
def repository_name() -> str:
    """A repository of its own for each test, so tests never see each other's tags."""
    import uuid

    return f"it/{uuid.uuid4().hex[:12]}"


@dataclass
class AuthRegistry:
    host: str
    username: str
    password: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    import bcrypt

    directory = tmp_path_factory.mktemp("auth-registry")
    username, password = "deployer", "correct-horse-battery"
    htpasswd = directory / "htpasswd"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    acr_user = "00000000-0000-0000-0000-000000000000"
    acr_hashed = bcrypt.hashpw(b"acr-refresh-token-from-exchange", bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{username}:{hashed}\n{acr_user}:{acr_hashed}\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = start_registry(directory, port, htpasswd)
    yield AuthRegistry(f"127.0.0.1:{port}", username, password, process)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA made at test time and a certificate for 127.0.0.1 signed by it."""
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def real_base(docker_client: Any) -> str:
    """The real HoloDeck runtime (Debian + holodeck-ai from PyPI), built once per machine by content key."""
    from realbase import ensure_real_base

    return ensure_real_base(docker_client, log=lambda line: print(f"[real base] {line}"))


@pytest.fixture
def fake_llm() -> Iterator[Any]:
    """A fake OpenAI-compatible model on 127.0.0.1 (Responses API and embeddings)."""
    from fakes.llm import FakeLlmServer

    with FakeLlmServer() as server:
        yield server
