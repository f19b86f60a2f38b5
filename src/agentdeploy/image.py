"""The docker adapter: the only module that talks to a Docker engine to build images.

Build output is streamed line by line through `on_line` as the engine produces it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentdeploy.errors import BuildError, TargetUnavailableError

LineSink = Callable[[str], None]
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (\S+)")


@dataclass
class BuildResult:
    image_id: str
    steps: int = 0
    cached_steps: int = 0
    from_steps: int = 0  # FROM is never reported as cached
    log_tail: list[str] = field(default_factory=list)

    @property
    def fully_cached(self) -> bool:
        return self.steps > 0 and self.cached_steps == self.steps - self.from_steps


def connect(base_url: str | None = None) -> Any:
    """A docker client, or TargetUnavailableError saying how to start the engine."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
    except DockerException as exc:
        raise TargetUnavailableError(
            f"cannot reach the Docker engine: {_first_line(str(exc))}",
            hint="start Docker (or set DOCKER_HOST), then try again",
        ) from None
    return client


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


class BuildAccounting:
    """Follows the engine's build messages: steps, cache hits, the image id, errors."""

    def __init__(self, on_line: LineSink) -> None:
        self.on_line = on_line
        self.result = BuildResult(image_id="")
        self.error: str | None = None
        self._partial = ""

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "stream" in chunk:
            self._partial += str(chunk["stream"])
            *complete, self._partial = self._partial.split("\n")
            for line in complete:
                self._line(line)
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            self.result.image_id = str(chunk["aux"]["ID"])
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.error = str(detail.get("message") or chunk.get("error") or "build failed")

    def finish(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        self.on_line(line)
        self.result.log_tail = [*self.result.log_tail[-19:], line]
        step = _STEP_RE.match(line)
        if step:
            self.result.steps = int(step.group(2))
            if step.group(3).upper() == "FROM":
                self.result.from_steps += 1
        elif line.strip() == "---> Using cache":
            self.result.cached_steps += 1


def build_image(
    client: Any,
    context: Path,
    *,
    tags: Iterable[str],
    labels: Mapping[str, str],
    platform: str | None,
    build_args: Mapping[str, str],
    dockerfile: str | None = None,
    cache_from: list[str] | None = None,
    on_line: LineSink = lambda line: None,
) -> BuildResult:
    """Build `context` (its Dockerfile, or `dockerfile` relative to it) with the legacy API builder."""
    from docker.errors import APIError, DockerException

    tag_list = list(tags)
    accounting = BuildAccounting(on_line)
    try:
        stream = client.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag_list[0],
            labels=dict(labels),
            platform=platform,
            buildargs=dict(build_args),
            cache_from=cache_from or None,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            accounting.feed(chunk)
        accounting.finish()
    except APIError as exc:
        raise BuildError(
            f"the Docker engine refused the build: {exc.explanation or exc}",
            hint="check the base image and platform in deployment.build",
        ) from None
    except DockerException as exc:
        raise TargetUnavailableError(f"lost the Docker engine during the build: {exc}") from None
    if accounting.error is not None:
        tail = "\n    ".join(accounting.result.log_tail[-8:])
        raise BuildError(
            f"docker build failed: {accounting.error}",
            hint=f"last build output:\n    {tail}" if tail else None,
        )
    result = accounting.result
    if not result.image_id:
        result.image_id = client.images.get(tag_list[0]).id
    image = client.images.get(result.image_id)
    for extra in tag_list[1:]:
        repository, _, tag = extra.rpartition(":")
        image.tag(repository, tag)
    return result
