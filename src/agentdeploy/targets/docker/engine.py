"""The local Docker engine side of a release: start the agent's container confined, gate it (the runtime's
verdict, then the verify turns), and put the previous container back when it fails.

A release replaces the agent's container: the running one is stopped and kept aside (renamed `<name>-previous`),
the new one starts, and it must be healthy by the runtime's verdict (targets/health.py) within the timeout, without
crashing, and answer its verify turns. If not, it is removed and the previous container is brought back. Secrets
are given to the container at run time as environment variables: never to the image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from agentdeploy.config.models import DEFAULT_BIND, ResourcesConfig
from agentdeploy.errors import DeployError, TargetUnavailableError
from agentdeploy.jsonvalue import JsonObject, array
from agentdeploy.targets.base import Live, Status, TargetOutcome
from agentdeploy.targets.docker.gate import CRASH_CODE_WAIT, crash, exit_code_hidden, first_line, lines_of, tail
from agentdeploy.targets.docker.hardening import hardening, probe_address
from agentdeploy.targets.evaluation import EvaluationPlan, Replay, evaluate
from agentdeploy.targets.health import (
    ChatCheck,
    ChatPost,
    HealthProbe,
    check_health,
    http_post_json,
    http_probe,
    model_call_hint,
    verify_chat,
)
from agentdeploy.terminal import waiting_text

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.api.container import _RestartPolicy
    from docker.models.containers import Container

MANAGED_LABEL = "dev.agentdeploy.agent"
CONFIG_HASH_LABEL = "dev.agentdeploy.config-hash"
IMAGE_LABEL = "dev.agentdeploy.image"
# How each container is judged travels with it: a rollback checks the old version the way it was deployed.
HEALTH_PATH_LABEL = "dev.agentdeploy.health-path"
HEALTH_TIMEOUT_LABEL = "dev.agentdeploy.health-timeout"
PORT_LABEL = "dev.agentdeploy.port"
BIND_LABEL = "dev.agentdeploy.bind"


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
    bind: str = DEFAULT_BIND
    writable: tuple[str, ...] = ()  # more paths the image writes to (target.docker.writable)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    evaluation: EvaluationPlan | None = None  # test cases the new version must pass after its verify turns


class LocalDockerTarget:
    def __init__(
        self,
        client: DockerClient,
        *,
        container_name: str,
        host_port: int | None = None,
        probe: HealthProbe = http_probe,
        post: ChatPost = http_post_json,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_line: Callable[[str], None] = lambda line: None,
        interrupted: Callable[[], str] = lambda: "",
        on_progress: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.client = client
        self.on_progress = on_progress  # the live line while the gate waits
        self.name = container_name
        self.host_port = host_port
        self.probe = probe
        self.post = post
        self.sleep = sleep
        self.clock = clock
        self.on_line = on_line
        self.interrupted = interrupted  # a signal asked the release to stop: roll back at the next check

    @property
    def previous_name(self) -> str:
        return f"{self.name}-previous"

    def _host_network(self) -> bool:
        # Engines started without a bridge (CI runners like ours) only offer host networking.
        return not self.client.networks.list(names=["bridge"])

    def url_for(self, port: int, bind: str = DEFAULT_BIND) -> str:
        if self._host_network():
            return f"http://{probe_address(bind)}:{port}"
        return f"http://{probe_address(bind)}:{self.host_port or port}"

    def find(self, name: str) -> Container | None:
        from docker.errors import NotFound

        try:
            return self.client.containers.get(name)
        except NotFound:
            return None

    def _remove(self, name: str) -> bool:
        container = self.find(name)
        if container is None:
            return False
        container.remove(force=True, v=True)  # with its anonymous volumes (target.docker.writable)
        return True

    def _start(self, release: Release) -> Container:
        from docker.errors import APIError, ImageNotFound
        from docker.types import Mount

        labels = {
            **release.labels,
            MANAGED_LABEL: release.agent,
            IMAGE_LABEL: release.image,
            HEALTH_PATH_LABEL: release.health_path,
            HEALTH_TIMEOUT_LABEL: f"{release.health_timeout:g}",
            PORT_LABEL: str(release.port),
            BIND_LABEL: release.bind,
        }
        host = self._host_network()
        try:
            image_config = self.client.images.get(release.image).attrs.get("Config") or {}
            confined = hardening(image_config, resources=release.resources, bind=release.bind, host_network=host)
            return self.client.containers.run(
                release.image,
                name=self.name,
                detach=True,
                environment={**release.env, **release.secrets, **confined.env},
                labels=labels,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs=confined.writable,
                # A volume of this container alone, seeded by the engine with what the image holds there (a cache
                # the image ships keeps its content); removed with the container.
                mounts=[Mount(path, None, type="volume") for path in release.writable],
                mem_limit=confined.memory,
                memswap_limit=confined.memory,
                nano_cpus=confined.nano_cpus,
                pids_limit=confined.pids,
                # types-docker lists "always" and "on-failure" only; the engine takes "unless-stopped" too.
                restart_policy=cast("_RestartPolicy", {"Name": "unless-stopped"}),
                # An init process forwards SIGTERM (a stop takes a moment, not the 10 s kill timeout)
                # and reaps the agent's children (MCP servers run by npx).
                init=True,
                network_mode="host" if host else None,
                ports=None if host else {f"{release.port}/tcp": (release.bind, self.host_port or release.port)},
            )
        except ImageNotFound:
            raise DeployError(
                f"image {release.image} is not on this Docker engine",
                hint="deploy again so agentdeploy builds it, or pull it first",
            ) from None
        except APIError as exc:
            raise DeployError(f"the Docker engine could not start {self.name}: {exc.explanation or exc}") from None

    def wait_healthy(
        self, container: Container, url: str, health_path: str, timeout: float, *, interruptible: bool = True
    ) -> tuple[bool, str, float]:
        """Poll until healthy, the container crashes, the timeout, or (`interruptible`) a signal asks the
        release to stop. Returns (healthy, reason, seconds).

        Healthy is the runtime's own verdict (HoloDeck's JSON), not any 2xx. A container that exited or
        restarted (the restart policy would hide a crash loop behind "nothing answered") fails at once.
        """
        start = self.clock()
        last = "nothing answered"
        code_unknown_since: float | None = None
        while True:
            signal_name = self.interrupted() if interruptible else ""
            if signal_name:
                return False, f"interrupted by {signal_name} during the health gate", self.clock() - start
            verdict = check_health(self.probe, url, health_path)
            if verdict.healthy:
                return True, verdict.reason, self.clock() - start
            last = verdict.reason
            self.on_progress(waiting_text(f"{url}{health_path}", self.clock() - start, timeout, last))
            container.reload()
            crashed = crash(container)
            if crashed and exit_code_hidden(container):
                # Restarted and running again: the engine shows exit code 0 until the next exit. A start-up crash
                # loop exits again within moments; wait for its code a little, then say what is known.
                code_unknown_since = self.clock() if code_unknown_since is None else code_unknown_since
                if self.clock() - code_unknown_since < CRASH_CODE_WAIT:
                    self.sleep(0.1)
                    continue
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
            self.on_line(f"verified: {result.reason}; the last answer: {first_line(result.answers[-1])}")
        return result.ok, result.reason

    def deploy(self, release: Release) -> TargetOutcome:
        from docker.errors import DockerException

        try:
            return self._deploy(release)
        except DockerException as exc:  # the engine went away or refused mid-release
            raise TargetUnavailableError(f"the Docker engine failed during the release: {exc}") from None

    def revision(self, container: Container) -> str:
        """What the outputs and the record call a container that served: `<name>--<short id>` (the id as `docker ps`
        shows it), read like an Azure revision `<app>--<suffix>`; one per release, as the container is new each time."""
        return f"{self.name}--{_id(container)[:12]}"

    def _deploy(self, release: Release) -> TargetOutcome:
        """Set the old container aside, start the new one, gate it; restore the old one when it fails.

        `<name>-previous` exists only while a release is under way, so one left behind marks a release that
        was cut short: it is restored before anything else (never thrown away as a leftover).
        """
        url = self.url_for(release.port, release.bind)
        if self.find(self.previous_name) is not None:
            self.on_line(f"{self.previous_name} was left by an interrupted release: restoring it first")
            self.restore_previous()
        previous_image = self._set_aside()
        self.on_line(f"starting {self.name} from {release.image}")
        new = self._start(release)
        healthy, reason, evaluated = self._gate(new, release, url)
        outcome = TargetOutcome(status=Status.FAILED, url=url, revision=self.revision(new), previous=previous_image)
        outcome.details = evaluated  # the evaluation's cases (latency, tokens), for the summary
        signal_name = self.interrupted()
        if healthy and not signal_name:
            self._remove(self.previous_name)
            outcome.status, outcome.reason = Status.SUCCEEDED, reason or "healthy"
            return outcome
        if signal_name and healthy:
            reason = f"interrupted by {signal_name} before the new version was trusted"
        self.on_line(f"health gate failed: {reason}")
        outcome.reason, outcome.details = reason, {**evaluated, **self._failure_log(new, release)}
        if not release.auto_rollback and not signal_name:
            self._remove(self.previous_name)  # kept only while a release is under way
        elif self.find(self.previous_name) is None:
            new.remove(force=True, v=True)
            outcome.revision, outcome.reason = "", reason + "; nothing to roll back to"
        else:
            self.on_line(f"rolling back to the previous container ({previous_image})")
            outcome.attempted = outcome.revision
            outcome.revision, back, back_reason = self.restore_previous()
            if back:
                outcome.status = Status.ROLLED_BACK
            else:
                outcome.reason = f"{reason}; the previous version did not recover: {back_reason}"
        outcome.interrupted = self.interrupted()
        return outcome

    def _set_aside(self) -> str:
        """Stop the running container and keep it as `<name>-previous` for a rollback; the image it ran, or ""."""
        old = self.find(self.name)
        if old is None:
            return ""
        previous_image = old.labels.get(IMAGE_LABEL) or _image_id(old)
        self.on_line(f"stopping the running container {self.name} ({previous_image}); kept for rollback")
        old.stop(timeout=10)
        old.rename(self.previous_name)
        return previous_image

    def _gate(self, new: Container, release: Release, url: str) -> tuple[bool, str, JsonObject]:
        """The runtime's health verdict, then the verify turns, then the evaluation (with its results)."""
        healthy, reason, seconds = self.wait_healthy(new, url, release.health_path, release.health_timeout)
        if not healthy:
            return False, reason, {}
        self.on_line(f"{url}{release.health_path}: {reason} after {seconds:.1f}s")
        verified, verify_reason = self.verify(release, url)
        if not verified or release.evaluation is None or self.interrupted():
            return verified, verify_reason or reason, {}
        verdict = evaluate(
            Replay(self.post, url, release.agent, self.clock, self.sleep, self.on_line), release.evaluation
        )
        hint = {} if verdict.passed else {"hint": "fix the agent (or its test cases) for the failed cases above"}
        return verdict.passed, verdict.summary(), {"evaluation": verdict.as_json(), **hint}

    def _failure_log(self, container: Container, release: Release) -> JsonObject:
        """The container's last lines, for the error (the console masks the secrets it was given in them), and the
        fix they point to when a model call failed, naming what reached the container."""
        lines = tail(container)
        hint = model_call_hint(lines, {*release.env, *release.secrets})
        return {"log": array(f"{self.name}: {line}" for line in lines), **({"hint": hint} if hint else {})}

    def restore_previous(self) -> tuple[str, bool, str]:
        """Put `<name>-previous` back in place of whatever runs as `<name>` (the version that was not trusted)
        and judge it as it was deployed: (its revision, healthy, reason). ("", False, ...) when none is kept."""
        kept = self.find(self.previous_name)
        if kept is None:
            return "", False, f"no {self.previous_name} container is kept"
        self._remove(self.name)
        kept.rename(self.name)
        kept.start()
        return (self.revision(kept), *self.judge(kept))

    def judge(self, container: Container) -> tuple[bool, str]:
        """Health of a container by the settings it was deployed with (its labels)."""
        labels = container.labels
        port = int(labels.get(PORT_LABEL) or 0)
        path = labels.get(HEALTH_PATH_LABEL) or "/health"
        timeout = float(labels.get(HEALTH_TIMEOUT_LABEL) or 60)
        bind = labels.get(BIND_LABEL) or DEFAULT_BIND
        url = self.url_for(port, bind) if port else self.url_for(self.host_port or 8080, bind)
        # A version that served before is judged to the end: a signal must not leave nothing serving.
        healthy, reason, _ = self.wait_healthy(container, url, path, timeout, interruptible=False)
        return healthy, reason

    def live(self) -> Live:
        """What runs now, for planning: the image and configuration labels of the container."""
        container = self.find(self.name)
        if container is None:
            return Live(exists=False)
        return Live(
            exists=True,
            image=container.labels.get(IMAGE_LABEL, ""),
            config_hash=container.labels.get(CONFIG_HASH_LABEL, ""),
            serving=container.status == "running",
        )

    def status(self) -> JsonObject:
        container = self.find(self.name)
        if container is None:
            return {"container": self.name, "state": "absent"}
        state = container.attrs.get("State", {})
        health = (state.get("Health") or {}).get("Status", "none")
        labels = container.labels
        answer = ""
        if container.status == "running" and labels.get(PORT_LABEL):
            # The engine's HEALTHCHECK says "starting" for its first interval after a gate that already passed:
            # ask the runtime now, the way the gate does.
            verdict = check_health(
                self.probe,
                self.url_for(int(labels[PORT_LABEL]), labels.get(BIND_LABEL) or DEFAULT_BIND),
                labels.get(HEALTH_PATH_LABEL, "/health"),
            )
            health = "healthy" if verdict.healthy else "unhealthy"
            answer = verdict.reason
        return {
            "container": self.name,
            "id": _id(container),
            "state": container.status,
            "health": health,
            "health_answer": answer,
            "image": labels.get(IMAGE_LABEL) or _image_id(container),
            "started_at": state.get("StartedAt", ""),
        }

    def logs(self, *, tail: int, follow: bool) -> Iterator[str]:
        container = self.find(self.name)
        if container is None:
            raise DeployError(f"no container {self.name} on this engine", hint="deploy the agent first")
        yield from lines_of(container, tail=tail, follow=follow)

    def destroy(self) -> list[str]:
        return [name for name in (self.name, self.previous_name) if self._remove(name)]


def _id(container: Container) -> str:
    return container.id or ""


def _image_id(container: Container) -> str:
    return (container.image.id if container.image else None) or ""
