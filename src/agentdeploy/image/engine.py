"""The Docker engine for the image stage: connect, build, push, pull, find images by label. (The local
target, targets/docker/, runs containers on the same engine.)

Build output is streamed line by line through `on_line` as the engine produces it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from agentdeploy.errors import BuildError, TargetUnavailableError
from agentdeploy.jsonvalue import JsonObject, text_at, to_object

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.images import Image

OWN_MESSAGE_PREFIX = "agentdeploy: "  # how our build-time checks (check-runtime.sh) speak
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the engine colours a RUN step's stderr

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


def connect(base_url: str | None = None) -> DockerClient:
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

    def feed(self, chunk: JsonObject) -> None:
        if "stream" in chunk:
            self._partial += str(chunk["stream"])
            *complete, self._partial = self._partial.split("\n")
            for line in complete:
                self._line(line)
        aux = chunk.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            self.result.image_id = str(aux["ID"])
        if "error" in chunk or "errorDetail" in chunk:
            self.error = text_at(chunk, "errorDetail", "message") or str(chunk.get("error") or "build failed")

    def finish(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""

    def _line(self, line: str) -> None:
        line = _ANSI.sub("", line).rstrip("\r")
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


LABELLED_DOCKERFILE = ".agentdeploy.Dockerfile"


def _quoted(value: str) -> str:
    """A double-quoted Dockerfile word that the builder reads back as `value`: no variable expansion, no escape."""
    if any(char in value for char in "\r\n"):
        raise ValueError(f"a label value holds a line break: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def label_step(labels: Mapping[str, str]) -> str:
    """One LABEL instruction with every label (pure; labels are one line each: tags.oci_labels makes them so)."""
    pairs = " \\\n    ".join(f"{_quoted(key)}={_quoted(value)}" for key, value in sorted(labels.items()))
    return f"\nLABEL {pairs}\n"


def _archive(
    context: Path,
    dockerfile: str | None,
    labels: Mapping[str, str],
    files: Sequence[str] | None,
    one_label_step: bool,
) -> tuple[IO[bytes] | None, str | None, Mapping[str, str]]:
    """(the context as a tar, or None to let docker-py send the directory; the Dockerfile; the labels left for
    the API)."""
    from docker.utils.build import create_archive, tar

    if files is not None:
        return cast("IO[bytes]", create_archive(str(context), files=sorted(files))), dockerfile, labels
    if not (one_label_step and labels):
        return None, dockerfile, labels
    text = (context / (dockerfile or "Dockerfile")).read_text(encoding="utf-8")
    # docker-py sends it beside the context, with a .dockerignore line that leaves it out of the context proper.
    archive = tar(context, dockerfile=(LABELLED_DOCKERFILE, text + label_step(labels)))
    return cast("IO[bytes]", archive), LABELLED_DOCKERFILE, {}


def _build_failure(error: str, log_tail: list[str]) -> BuildError:
    tail = "\n    ".join(log_tail[-8:])
    ours = [line for line in log_tail if line.startswith(OWN_MESSAGE_PREFIX)]
    if ours:  # a build-time check of ours said what is wrong: that is the message
        return BuildError(
            ours[-1].removeprefix(OWN_MESSAGE_PREFIX),
            hint="deployment.build.base_image names the base; deployment.build.holodeck_version the runtime"
            f"\n  last build output:\n    {tail}",
        )
    return BuildError(f"docker build failed: {error}", hint=f"last build output:\n    {tail}" if tail else None)


def build_image(
    client: DockerClient,
    context: Path,
    *,
    tags: Iterable[str],
    labels: Mapping[str, str],
    platform: str | None,
    build_args: Mapping[str, str],
    dockerfile: str | None = None,
    cache_from: list[str] | None = None,
    on_line: LineSink = lambda line: None,
    files: Sequence[str] | None = None,
    one_label_step: bool = False,
) -> BuildResult:
    """Build `context` (its Dockerfile, or `dockerfile` relative to it) with the legacy API builder.

    `files` (relative to `context`): send exactly these and nothing else (a user's own Dockerfile, whose
    context image/ignore.py decided); without them the engine's own .dockerignore rules apply.
    `one_label_step` (a Dockerfile we generated, so its escape character is known): the labels go in as one
    LABEL step at the end of a copy of it sent beside the context, where the engine makes one step of each
    label passed through the API (a container each: most of a rebuild after a prompt change)."""
    from docker.errors import APIError, DockerException

    tag_list = list(tags)
    accounting = BuildAccounting(on_line)
    archive, dockerfile, labels = _archive(context, dockerfile, labels, files, one_label_step)
    try:
        stream = client.api.build(
            path=None if archive is not None else str(context),
            fileobj=archive,
            custom_context=archive is not None,
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
            accounting.feed(to_object(chunk))
        accounting.finish()
    except APIError as exc:
        raise BuildError(
            f"the Docker engine refused the build: {exc.explanation or exc}",
            hint="check the base image and platform in deployment.build",
        ) from None
    except DockerException as exc:
        raise TargetUnavailableError(f"lost the Docker engine during the build: {exc}") from None
    finally:
        if archive is not None:
            archive.close()
    if accounting.error is not None:
        raise _build_failure(accounting.error, accounting.result.log_tail)
    return _tagged(client, accounting.result, tag_list)


def _tagged(client: DockerClient, result: BuildResult, tags: list[str]) -> BuildResult:
    """The build's image id (from the engine's log, else its first tag), with every further tag put on it."""
    if not result.image_id:
        result.image_id = str(client.images.get(tags[0]).id)
    image = client.images.get(result.image_id)
    for extra in tags[1:]:
        repository, _, tag = extra.rpartition(":")
        image.tag(repository, tag)
    return result


AUTH_MARKERS = ("unauthorized", "authentication required", "no basic auth credentials", "denied", "forbidden")
_TRANSIENT_MARKERS = (
    "connection refused",
    "connection reset",
    "i/o timeout",
    "timeout",
    "eof",
    "broken pipe",
    "too many requests",
    "502",
    "503",
    "504",
    "500 internal server error",
    "temporarily unavailable",
)


def classify_push_error(message: str) -> str:
    """'auth', 'transient' or 'fatal' for an error the engine reported during a push."""
    lowered = message.lower()
    if any(marker in lowered for marker in AUTH_MARKERS):
        return "auth"
    if any(marker in lowered for marker in _TRANSIENT_MARKERS):
        return "transient"
    return "fatal"


def _push_once(
    client: DockerClient, repository: str, tag: str, auth_config: dict[str, str] | None, on_line: LineSink
) -> str:
    """One push attempt; returns the digest the engine reports, or raises _PushFailed."""
    digest: str | None = None
    for raw in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config):
        chunk = to_object(raw)
        if "error" in chunk or "errorDetail" in chunk:
            raise _PushFailed(text_at(chunk, "errorDetail", "message") or str(chunk.get("error")))
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
        status = chunk.get("status")
        # Progress bars are noise in a CI log; layer results and the digest line are not.
        if status and status not in ("Preparing", "Waiting", "Pushing"):
            on_line(f"{chunk['id']}: {status}" if chunk.get("id") else str(status))
    if digest is None:
        raise _PushFailed("the engine reported no digest for the push")
    return digest


class _PushFailed(Exception):
    pass


def push_image(
    client: DockerClient,
    repository: str,
    tag: str,
    *,
    auth_config: dict[str, str] | None,
    registry: str,
    on_line: LineSink = lambda line: None,
    attempts: int = 4,
    backoff_seconds: float = 2.0,
    sleep: Callable[[float], None] | None = None,
) -> str:
    """Push repository:tag; retries transient failures with exponential backoff. Returns the digest."""
    import time

    from docker.errors import APIError

    from agentdeploy.errors import RegistryError
    from agentdeploy.image.registry import auth_fix
    from agentdeploy.retry import backoff

    wait = sleep or time.sleep
    waits = backoff(backoff_seconds, cap=60.0)
    for attempt in range(1, attempts + 1):
        try:
            return _push_once(client, repository, tag, auth_config, on_line)
        except (_PushFailed, APIError) as exc:
            message = str(exc.explanation if isinstance(exc, APIError) else exc)
        kind = classify_push_error(message)
        if kind == "auth":
            raise RegistryError(f"registry {registry} refused the push: {message}", hint=auth_fix(registry))
        if kind == "fatal" or attempt == attempts:
            raise RegistryError(
                f"pushing {repository}:{tag} failed"
                + (f" after {attempt} attempts" if attempt > 1 else "")
                + f": {message}",
                hint="check that the registry is reachable and accepts pushes",
            )
        delay = next(waits)
        on_line(f"push failed ({message}); retrying in {delay:g}s (attempt {attempt + 1} of {attempts})")
        wait(delay)
    raise AssertionError("unreachable")


def local_image_labelled(client: DockerClient, reference: str, key: str, value: str) -> Image | None:
    """The image `reference` names, when its label `key` says `value`. One look-up by name: listing the engine's
    images by label reads every image it holds (seconds, where thousands are kept)."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(reference)
    except ImageNotFound:
        return None
    return image if image.labels.get(key) == value else None
