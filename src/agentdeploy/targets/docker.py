"""The local Docker engine as a deployment target, with the same health gate and rollback as Azure.

A release replaces the agent's container: the running one is stopped and kept aside (renamed
`<name>-previous`), the new one starts, and it must be healthy by the runtime's verdict (health.py)
within the timeout, without crashing, and answer its verify turns. If not, it is removed and the
previous container is brought back. `DockerTarget` puts it behind the Target protocol.
Secrets are given to the container at run time as environment variables: never to the image.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentdeploy.errors import DeployError, TargetUnavailableError
from agentdeploy.release.planner import Live
from agentdeploy.targets.base import ReleaseRequest, Status, TargetContext, TargetOutcome
from agentdeploy.targets.health import (
    ChatCheck,
    ChatPost,
    HealthProbe,
    check_health,
    http_post_json,
    http_probe,
    verify_chat,
)

if TYPE_CHECKING:
    from agentdeploy.state.store import DeploymentRecord

MANAGED_LABEL = "dev.agentdeploy.agent"
CONFIG_HASH_LABEL = "dev.agentdeploy.config-hash"
LOG_LINES_ON_FAILURE = 20


@dataclass(frozen=True)
class Release:
    """What to run and how to judge it."""

    agent: str
    image: str  # reference to run (registry/repo@sha256:... or a local image id)
    port: int
    health_path: str
    health_timeout: float
    auto_rollback: bool = True
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    labels: dict[str, str] = field(default_factory=dict)
    checks: tuple[ChatCheck, ...] = ()  # chat turns the new version must answer before it is trusted
    verify_timeout: float = 60.0


@dataclass
class Outcome:
    status: str  # succeeded | rolled-back | failed
    url: str
    container: str = ""  # id of the container now serving (or the failed one)
    previous_image: str = ""
    reason: str = ""
    health_seconds: float = 0.0


class LocalDockerTarget:
    def __init__(
        self,
        client: Any,
        *,
        container_name: str,
        host_port: int | None = None,
        probe: HealthProbe = http_probe,
        post: ChatPost = http_post_json,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_line: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.client = client
        self.name = container_name
        self.host_port = host_port
        self.probe = probe
        self.post = post
        self.sleep = sleep
        self.clock = clock
        self.on_line = on_line

    @property
    def previous_name(self) -> str:
        return f"{self.name}-previous"

    def _host_network(self) -> bool:
        # Engines started without a bridge (CI runners like ours) only offer host networking.
        return not self.client.networks.list(names=["bridge"])

    def url_for(self, port: int) -> str:
        if self._host_network():
            return f"http://127.0.0.1:{port}"
        return f"http://127.0.0.1:{self.host_port or port}"

    def _get(self, name: str) -> Any | None:
        from docker.errors import NotFound

        try:
            return self.client.containers.get(name)
        except NotFound:
            return None

    def _remove(self, name: str) -> bool:
        container = self._get(name)
        if container is None:
            return False
        container.remove(force=True)
        return True

    def _start(self, release: Release) -> Any:
        from docker.errors import APIError, ImageNotFound

        options: dict[str, Any] = {
            "name": self.name,
            "detach": True,
            "environment": {**release.env, **release.secrets},
            "labels": {**release.labels, MANAGED_LABEL: release.agent, "dev.agentdeploy.image": release.image},
            "restart_policy": {"Name": "unless-stopped"},
            # An init process forwards SIGTERM (a stop takes a moment, not the 10 s kill timeout)
            # and reaps the agent's children (MCP servers run by npx).
            "init": True,
        }
        if self._host_network():
            options["network_mode"] = "host"
        else:
            options["ports"] = {f"{release.port}/tcp": ("127.0.0.1", self.host_port or release.port)}
        try:
            return self.client.containers.run(release.image, **options)
        except ImageNotFound:
            raise DeployError(
                f"image {release.image} is not on this Docker engine",
                hint="deploy again so agentdeploy builds it, or pull it first",
            ) from None
        except APIError as exc:
            raise DeployError(f"the Docker engine could not start {self.name}: {exc.explanation or exc}") from None

    def wait_healthy(self, container: Any, url: str, health_path: str, timeout: float) -> tuple[bool, str, float]:
        """Poll until healthy, the container crashes, or the timeout. Returns (healthy, reason, seconds).

        Healthy is the runtime's own verdict (HoloDeck's JSON), not any 2xx. A container that exited or
        restarted (the restart policy would hide a crash loop behind "nothing answered") fails at once.
        """
        start = self.clock()
        last = "nothing answered"
        while True:
            verdict = check_health(self.probe, url, health_path)
            if verdict.healthy:
                return True, verdict.reason, self.clock() - start
            last = verdict.reason
            container.reload()
            crashed = _crash(container)
            if crashed:
                return False, crashed, self.clock() - start
            if self.clock() - start >= timeout:
                return (
                    False,
                    f"not healthy at {url}{health_path} within {timeout:g}s (last answer: {last})",
                    self.clock() - start,
                )
            self.sleep(0.25)

    def verify(self, release: Release, url: str) -> tuple[bool, str]:
        """The agent answers its verify turns (skipped when it has none)."""
        if not release.checks:
            return True, ""
        self.on_line(f"verifying: {len(release.checks)} chat turn(s) to {url}/agent/{release.agent}/chat")
        result = verify_chat(self.post, url, release.agent, release.checks, release.verify_timeout)
        if result.ok:
            self.on_line(f"verified: {result.reason}; the last answer: {_first_line(result.answers[-1])}")
        return result.ok, result.reason

    def deploy(self, release: Release) -> Outcome:
        from docker.errors import DockerException

        try:
            return self._deploy(release)
        except DockerException as exc:  # the engine went away or refused mid-release
            raise TargetUnavailableError(f"the Docker engine failed during the release: {exc}") from None

    def _deploy(self, release: Release) -> Outcome:
        url = self.url_for(release.port)
        health_url = url + release.health_path
        self._remove(self.previous_name)  # left over from an interrupted run
        old = self._get(self.name)
        previous_image = ""
        if old is not None:
            previous_image = old.labels.get("dev.agentdeploy.image", old.image.id)
            self.on_line(f"stopping the running container {self.name} ({previous_image}); kept for rollback")
            old.stop(timeout=10)
            old.rename(self.previous_name)
        self.on_line(f"starting {self.name} from {release.image}")
        new = self._start(release)
        healthy, reason, seconds = self.wait_healthy(new, url, release.health_path, release.health_timeout)
        if healthy:
            self.on_line(f"{health_url}: {reason} after {seconds:.1f}s")
            healthy, reason = self.verify(release, url)
            if healthy:
                self._remove(self.previous_name)
                return Outcome("succeeded", url, new.id, previous_image, reason or "healthy", seconds)
        self.on_line(f"health gate failed: {reason}")
        for line in _tail(new):
            self.on_line(f"  {self.name}: {line}")
        if not release.auto_rollback:
            return Outcome("failed", url, new.id, previous_image, reason, seconds)
        new.remove(force=True)
        restored = self._get(self.previous_name)
        if restored is None:
            return Outcome("failed", url, "", previous_image, reason + "; nothing to roll back to", seconds)
        self.on_line(f"rolling back to the previous container ({previous_image})")
        restored.rename(self.name)
        restored.start()
        back, back_reason, _ = self.wait_healthy(restored, url, release.health_path, release.health_timeout)
        if not back:
            return Outcome(
                "failed",
                url,
                restored.id,
                previous_image,
                f"{reason}; the previous version did not recover: {back_reason}",
            )
        return Outcome("rolled-back", url, restored.id, previous_image, reason, seconds)

    def live(self) -> Live:
        """What runs now, for planning: the image and configuration labels of the container."""
        container = self._get(self.name)
        if container is None:
            return Live(exists=False)
        return Live(
            exists=True,
            image=container.labels.get("dev.agentdeploy.image", ""),
            config_hash=container.labels.get(CONFIG_HASH_LABEL, ""),
            serving=container.status == "running",
        )

    def status(self) -> dict[str, Any]:
        container = self._get(self.name)
        if container is None:
            return {"container": self.name, "state": "absent"}
        state = container.attrs.get("State", {})
        return {
            "container": self.name,
            "id": container.id,
            "state": container.status,
            "health": (state.get("Health") or {}).get("Status", "none"),
            "image": container.labels.get("dev.agentdeploy.image", container.image.id),
            "started_at": state.get("StartedAt", ""),
        }

    def logs(self, *, tail: int, follow: bool) -> Iterator[str]:
        container = self._get(self.name)
        if container is None:
            raise DeployError(f"no container {self.name} on this engine", hint="deploy the agent first")
        stream = container.logs(stream=follow, follow=follow, tail=tail)
        if not follow:
            yield from stream.decode(errors="replace").splitlines()
            return
        buffer = b""
        for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if buffer:
            yield buffer.decode(errors="replace")

    def destroy(self) -> list[str]:
        return [name for name in (self.name, self.previous_name) if self._remove(name)]


def _crash(container: Any) -> str:
    """Why the container is not running its first start any more ("" while it is)."""
    state = container.attrs.get("State", {})
    restarts = int(container.attrs.get("RestartCount") or 0)
    if container.status in ("exited", "dead") or restarts > 0 or state.get("Restarting"):
        code = state.get("ExitCode")
        again = f", restarted {restarts} time(s) by its restart policy" if restarts else ""
        return f"the container exited with code {code}{again}: it crashes at start-up"
    return ""


def _first_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tail(container: Any, lines: int = LOG_LINES_ON_FAILURE) -> list[str]:
    try:
        return [str(line) for line in container.logs(tail=lines).decode(errors="replace").splitlines()]
    except Exception:
        return []


# -- the Target protocol ------------------------------------------------------------------------------


def container_name_for(agent: str) -> str:
    return "agentdeploy-" + (re.sub(r"[^a-zA-Z0-9_.-]+", "-", agent).strip("-.") or "agent")


class DockerTarget:
    """The local Docker engine behind the Target protocol (targets/base.py)."""

    environment = "local"
    requires_registry = False

    def __init__(self, context: TargetContext) -> None:
        self.context = context
        settings = context.config.deploy.target.docker
        self.container = (settings.container_name if settings else None) or container_name_for(
            context.config.agent.name
        )
        self.host_port = settings.host_port if settings else None
        self._engine: LocalDockerTarget | None = None

    @property
    def resource(self) -> str:
        return f"container {self.container}"

    @property
    def engine(self) -> LocalDockerTarget:
        if self._engine is None:  # the Docker client is made when a stage first needs it
            extra: dict[str, Any] = {}
            if self.context.probe is not None:
                extra["probe"] = self.context.probe
            if self.context.post is not None:
                extra["post"] = self.context.post
            self._engine = LocalDockerTarget(
                self.context.docker(),
                container_name=self.container,
                host_port=self.host_port,
                on_line=self.context.on_line,
                **extra,
            )
        return self._engine

    def observe(self, recorded: DeploymentRecord | None) -> Live:
        return self.engine.live()

    def release(self, request: ReleaseRequest) -> TargetOutcome:
        if "@sha256:" in request.image:
            self._ensure_local(request.image)
        outcome = self.engine.deploy(
            Release(
                agent=request.agent,
                image=request.image,
                port=self.context.config.deploy.port,
                health_path=request.health_path,
                health_timeout=request.health_timeout,
                auto_rollback=request.auto_rollback,
                env=dict(request.env),
                secrets=dict(request.secrets),
                labels={"dev.agentdeploy.tag": request.tag, CONFIG_HASH_LABEL: request.config_hash},
                checks=request.checks,
                verify_timeout=request.verify_timeout,
            )
        )
        return TargetOutcome(
            status=Status(outcome.status),
            url=outcome.url,
            revision=outcome.container,
            previous=outcome.previous_image,
            reason=outcome.reason,
        )

    def rollback(self, record: DeploymentRecord, request: ReleaseRequest) -> TargetOutcome:
        return self.release(request)

    def recorded_elsewhere(self, to: str) -> DeploymentRecord | None:
        return None

    def status(self) -> dict[str, Any]:
        live = self.engine.status()
        line = f"container {live['container']}: {live['state']}"
        if live["state"] != "absent":
            line += f", health {live.get('health', 'n/a')}"
        return {**live, "summary": [line]}

    def destroy(self) -> list[str]:
        return self.engine.destroy()

    def logs(self, *, tail: int, follow: bool) -> Iterator[str]:
        return self.engine.logs(tail=tail, follow=follow)

    def _ensure_local(self, reference: str) -> None:
        """The docker target runs by digest; pull it when this engine does not have it yet."""
        from docker.errors import ImageNotFound

        client = self.engine.client
        try:
            client.images.get(reference)
        except ImageNotFound:
            self.context.on_line(f"pulling {reference}")
            repository, _, digest = reference.partition("@")
            client.api.pull(repository, tag=digest)


def make_target(context: TargetContext) -> DockerTarget:
    return DockerTarget(context)
