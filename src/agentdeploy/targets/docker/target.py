"""The local Docker engine behind the Target protocol (targets/base.py): DockerTarget makes the engine side
(engine.py) from the run's context and answers for it; `make_target` is the factory targets/registry.py names."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from agentdeploy.config.models import DEFAULT_BIND
from agentdeploy.errors import DeployError
from agentdeploy.jsonvalue import JsonObject
from agentdeploy.targets.base import Live, ReleaseRequest, Status, TargetContext, TargetOutcome
from agentdeploy.targets.docker.engine import CONFIG_HASH_LABEL, IMAGE_LABEL, LocalDockerTarget, Release
from agentdeploy.targets.docker.hardening import probe_address
from agentdeploy.targets.evaluation import evaluation_plan
from agentdeploy.targets.health import http_post_json, http_probe
from agentdeploy.targets.ports import holder, port_in_use

if TYPE_CHECKING:
    from agentdeploy.state.store import DeploymentRecord


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
        self.bind = settings.effective_bind if settings else DEFAULT_BIND
        self.writable = tuple(settings.writable or ()) if settings else ()
        self._engine: LocalDockerTarget | None = None

    @property
    def resource(self) -> str:
        return f"container {self.container}"

    @property
    def engine(self) -> LocalDockerTarget:
        if self._engine is None:  # the Docker client is made when a stage first needs it
            self._engine = LocalDockerTarget(
                self.context.docker(),
                container_name=self.container,
                host_port=self.host_port,
                probe=self.context.probe or http_probe,
                post=self.context.post or http_post_json,
                on_line=self.context.on_line,
                interrupted=self.context.interrupted,
                on_progress=self.context.on_progress,
            )
        return self._engine

    def preflight(self) -> None:
        """Broken test cases for the evaluation gate, and a port another program holds, fail now, before the build
        (not after it as the agent's `Errno 98`)."""
        evaluation_plan(self.context.config)
        port = self.host_port or self.context.config.deploy.port
        address = probe_address(self.bind) if not ipaddress.ip_address(self.bind).is_unspecified else self.bind
        if not port_in_use(address, port):
            return
        found = holder(port)
        ours = self.engine.find(self.container)
        if ours is not None and ours.status == "running" and found.container_id in ("", ours.id):
            return  # our agent's running version: the release replaces it
        if found.container_id:
            names = [c.name for c in self.engine.client.containers.list(filters={"id": found.container_id})]
            what = f"container {names[0]}" if names else f"container {found.container_id[:12]}"
        else:
            what = found.describe()
        raise DeployError(
            f"port {port} on {self.bind} is in use by {what}: the agent could not listen there (nothing was built)",
            hint=f"stop {what}, or give the agent another port: "
            + (
                "deployment.port (this engine runs agents on the host's network)"
                if self.engine._host_network()
                else "deployment.target.docker.host_port (the port published on this machine)"
            ),
        )

    def observe(self, recorded: DeploymentRecord | None) -> Live:
        live = self.engine.live()
        wanted = self.context.resolved.runtime.secrets if self.context.resolved else {}
        running = self.engine.find(self.container) if live.exists and wanted else None
        if running is None:
            return live
        held = dict(item.partition("=")[::2] for item in running.attrs.get("Config", {}).get("Env") or [])
        rotated = tuple(sorted(env for env, value in wanted.items() if env in held and held[env] != value))
        return replace(live, rotated_secrets=rotated)

    def release(self, request: ReleaseRequest, *, evaluated: bool = True) -> TargetOutcome:
        """Run `request` behind the gate; with `evaluated`, the evaluation (deployment.rollout.evaluation) too."""
        evaluation = evaluation_plan(self.context.config) if evaluated else None
        if request.manifest_digest is not None:  # from a registry: pulled by digest when the engine lost it
            self._ensure_local(request.image)
        with self.context.timed("gate"):
            return self.engine.deploy(
                Release(
                    agent=request.agent,
                    image=request.image,
                    port=request.port,
                    health_path=request.health_path,
                    health_timeout=request.health_timeout,
                    auto_rollback=request.auto_rollback,
                    env=dict(request.env),
                    secrets=dict(request.secrets),
                    labels={"dev.agentdeploy.tag": request.tag, CONFIG_HASH_LABEL: request.config_hash},
                    checks=request.checks,
                    verify_timeout=request.verify_timeout,
                    bind=self.bind,
                    resources=request.resources,
                    writable=self.writable,
                    evaluation=evaluation,
                )
            )

    def repair(self, pending: DeploymentRecord, last_good: DeploymentRecord | None) -> TargetOutcome:
        """After a run died mid-release: the kept old container comes back; without one, what runs is judged."""
        engine = self.engine
        url = engine.url_for(self.context.config.deploy.port, self.bind)
        before = last_good.image if last_good else ""
        if engine.find(engine.previous_name) is not None:
            container, healthy, reason = engine.restore_previous()
            if healthy:
                return TargetOutcome(
                    status=Status.ROLLED_BACK,
                    url=url,
                    revision=container,
                    previous=before,
                    reason=f"its unverified container was removed; the version that served before is back ({reason})",
                )
            return TargetOutcome(
                status=Status.FAILED,
                url=url,
                revision=container,
                previous=before,
                reason=f"the version that served before was put back but is not healthy: {reason}",
            )
        running = engine.find(self.container)
        if running is None:
            return TargetOutcome(
                status=Status.FAILED, url=url, revision="", previous=before, reason="nothing runs as " + self.container
            )
        image = running.labels.get(IMAGE_LABEL, "")
        if running.status != "running":
            running.start()
        healthy, reason = engine.judge(running)
        if image != pending.image:  # it died before changing anything, or after putting the old one back
            return TargetOutcome(
                status=Status.ROLLED_BACK if healthy else Status.FAILED,
                url=url,
                revision=engine.revision(running),
                previous=before,
                reason=f"the version that served before still serves ({reason})",
            )
        if healthy:  # it passed the gate and the old container was gone: only the record was missing
            return TargetOutcome(
                status=Status.SUCCEEDED,
                url=url,
                revision=engine.revision(running),
                previous=before,
                reason=f"its version runs and is healthy now ({reason})",
            )
        return TargetOutcome(
            status=Status.FAILED,
            url=url,
            revision=engine.revision(running),
            previous=before,
            reason=f"its version runs and is not healthy ({reason}); nothing earlier is kept on the engine: "
            "`agentdeploy rollback` runs the last good image again",
        )

    def rollback(self, record: DeploymentRecord, request: ReleaseRequest) -> TargetOutcome:
        # A version that served before is judged by its health and verify turns, not by today's test cases: a
        # rollback is how a team gets away from a bad release, and must not be refused by the cases it changed.
        return self.release(request, evaluated=False)

    def recorded_elsewhere(self, to: str) -> DeploymentRecord | None:
        return None

    def status(self) -> JsonObject:
        live = self.engine.status()
        line = f"container {live['container']}: {live['state']}"
        if live["state"] != "absent":
            line += f", health {live.get('health', 'n/a')}"
            if live.get("health_answer"):
                line += f" (asked now: {live['health_answer']})"
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
