"""The local Docker engine as a deployment target, with the same health gate and rollback as Azure.

A release replaces the agent's container: the running one is stopped and kept aside (renamed
`<name>-previous`), the new one starts, and it must be healthy by the runtime's verdict (health.py)
within the timeout, without crashing, and answer its verify turns. If not, it is removed and the
previous container is brought back. `DockerTarget` puts it behind the Target protocol.
Secrets are given to the container at run time as environment variables: never to the image.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from agentdeploy.config.models import DEFAULT_BIND, DEFAULT_HEALTH_TIMEOUT_SECONDS, ResourcesConfig
from agentdeploy.config.rules import memory_bytes
from agentdeploy.console import waiting_text
from agentdeploy.errors import DeployError, TargetUnavailableError
from agentdeploy.jsonvalue import JsonObject
from agentdeploy.targets.base import Live, ReleaseRequest, Status, TargetContext, TargetOutcome
from agentdeploy.targets.health import (
    ChatCheck,
    ChatPost,
    HealthProbe,
    check_health,
    http_post_json,
    http_probe,
    verify_chat,
)
from agentdeploy.targets.ports import holder, port_in_use

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.api.container import _RestartPolicy
    from docker.models.containers import Container

    from agentdeploy.state.store import DeploymentRecord

MANAGED_LABEL = "dev.agentdeploy.agent"
CONFIG_HASH_LABEL = "dev.agentdeploy.config-hash"
IMAGE_LABEL = "dev.agentdeploy.image"
# How each container is judged travels with it: a rollback checks the old version the way it was deployed.
HEALTH_PATH_LABEL = "dev.agentdeploy.health-path"
HEALTH_TIMEOUT_LABEL = "dev.agentdeploy.health-timeout"
PORT_LABEL = "dev.agentdeploy.port"
BIND_LABEL = "dev.agentdeploy.bind"
LOG_LINES_ON_FAILURE = 20
GENERATED_IMAGE_LABEL = "dev.agentdeploy.holodeck-runtime"  # image.spec.RUNTIME_LABEL: our Dockerfile made it
HOST_ENV = "HOLODECK_HOST"  # the generated image's entrypoint passes it to `holodeck serve --host`


@dataclass(frozen=True)
class Hardening:
    """How the agent's container is confined, like a production container: no capabilities, no privilege
    gain, a read-only root with memory-backed writable places only where the runtime writes, and limits."""

    writable: dict[str, str]  # path in the container -> tmpfs mount options
    memory: int  # bytes (swap: none beyond it)
    nano_cpus: int
    pids: int
    env: dict[str, str]  # what the container is told (HOLODECK_HOST under host networking)


def hardening(
    image_config: Mapping[str, Any], *, resources: ResourcesConfig, bind: str, host_network: bool
) -> Hardening:
    """Pure: the settings for one image (its `Config` as the engine reports it).

    The HoloDeck runtime writes nothing at start-up; at the first chat it writes its vector-store cache under
    `.holodeck/` in its working directory (without it every search silently finds nothing), `$HOME/.cache`
    and `/tmp` (FACTS.md). An image our Dockerfile made has an empty home of its own: all of it is writable.
    Another image's home may hold what it installed there, so only its `.cache` is.
    """
    env = dict(item.partition("=")[::2] for item in image_config.get("Env") or [])
    workdir = image_config.get("WorkingDir") or "/"
    uid, _, gid = str(image_config.get("User") or "").partition(":")
    home = env.get("HOME") or ("/root" if uid in ("", "root", "0") else "")
    generated = GENERATED_IMAGE_LABEL in (image_config.get("Labels") or {})
    # A tmpfs over a directory the image has takes that directory's mode but root as its owner (runc): owned by
    # the image's user when it is given by number (as our Dockerfile does); a new directory is world-writable.
    owner = ""
    if uid.isdigit() and uid != "0":
        owner = f",uid={uid},gid={gid if gid.isdigit() else uid}"
    data = "rw,noexec,nosuid,nodev" + owner
    writable = {"/tmp": data, posixpath.join(workdir, ".holodeck"): data}
    if home and home != "/":
        # npx runs the MCP servers it unpacks under $HOME/.npm: the home may hold programs (exec).
        writable[home if generated else posixpath.join(home, ".cache")] = "rw,exec,nosuid,nodev" + owner
    memory = memory_bytes(resources.memory)
    assert memory is not None  # config/rules.py refused any other size
    return Hardening(
        writable=writable,
        memory=memory,
        nano_cpus=round(resources.cpu * 1e9),
        pids=resources.pids,
        # Under host networking the container's port is the machine's: it listens on `bind` alone. On a bridge it
        # listens everywhere inside its own network, and the port is published on `bind`.
        env={HOST_ENV: bind} if host_network else {},
    )


def probe_address(bind: str) -> str:
    """Where this machine reaches an agent listening on `bind` (a wildcard is reached on loopback)."""
    address = ipaddress.ip_address(bind)
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "[::1]"
    return bind if address.version == 4 else f"[{bind}]"


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


@dataclass
class Outcome:
    status: str  # succeeded | rolled-back | failed
    url: str
    container: str = ""  # id of the container now serving (or the failed one)
    previous_image: str = ""
    reason: str = ""
    health_seconds: float = 0.0
    attempted: str = ""  # the container this release started, when it does not serve


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
            crashed = _crash(container)
            if crashed and _exit_code_hidden(container):
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
            self.on_line(f"verified: {result.reason}; the last answer: {_first_line(result.answers[-1])}")
        return result.ok, result.reason

    def deploy(self, release: Release) -> Outcome:
        from docker.errors import DockerException

        try:
            return self._deploy(release)
        except DockerException as exc:  # the engine went away or refused mid-release
            raise TargetUnavailableError(f"the Docker engine failed during the release: {exc}") from None

    def _deploy(self, release: Release) -> Outcome:
        """Set the old container aside, start the new one, gate it; restore the old one when it fails.

        `<name>-previous` exists only while a release is under way, so one left behind marks a release that
        was cut short: it is restored before anything else (never thrown away as a leftover).
        """
        url = self.url_for(release.port, release.bind)
        health_url = url + release.health_path
        if self.find(self.previous_name) is not None:
            self.on_line(f"{self.previous_name} was left by an interrupted release: restoring it first")
            self.restore_previous()
        old = self.find(self.name)
        previous_image = ""
        if old is not None:
            previous_image = old.labels.get(IMAGE_LABEL) or _image_id(old)
            self.on_line(f"stopping the running container {self.name} ({previous_image}); kept for rollback")
            old.stop(timeout=10)
            old.rename(self.previous_name)
        self.on_line(f"starting {self.name} from {release.image}")
        new = self._start(release)
        healthy, reason, seconds = self.wait_healthy(new, url, release.health_path, release.health_timeout)
        if healthy:
            self.on_line(f"{health_url}: {reason} after {seconds:.1f}s")
            healthy, reason = self.verify(release, url)
        signal_name = self.interrupted()
        if healthy and not signal_name:
            self._remove(self.previous_name)
            return Outcome("succeeded", url, _id(new), previous_image, reason or "healthy", seconds)
        if signal_name and healthy:
            reason = f"interrupted by {signal_name} before the new version was trusted"
        self.on_line(f"health gate failed: {reason}")
        for line in _tail(new):
            self.on_line(f"  {self.name}: {line}")
        if not release.auto_rollback and not signal_name:
            self._remove(self.previous_name)  # kept only while a release is under way
            return Outcome("failed", url, _id(new), previous_image, reason, seconds)
        if self.find(self.previous_name) is None:
            new.remove(force=True, v=True)
            return Outcome("failed", url, "", previous_image, reason + "; nothing to roll back to", seconds)
        self.on_line(f"rolling back to the previous container ({previous_image})")
        attempted = _id(new)
        restored, back, back_reason = self.restore_previous()
        if not back:
            return Outcome(
                "failed",
                url,
                restored,
                previous_image,
                f"{reason}; the previous version did not recover: {back_reason}",
                attempted=attempted,
            )
        return Outcome("rolled-back", url, restored, previous_image, reason, seconds, attempted=attempted)

    def restore_previous(self) -> tuple[str, bool, str]:
        """Put `<name>-previous` back in place of whatever runs as `<name>` (the version that was not trusted)
        and judge it as it was deployed: (container id, healthy, reason). ("", False, ...) when none is kept."""
        kept = self.find(self.previous_name)
        if kept is None:
            return "", False, f"no {self.previous_name} container is kept"
        self._remove(self.name)
        kept.rename(self.name)
        kept.start()
        return (_id(kept), *self.judge(kept))

    def judge(self, container: Container) -> tuple[bool, str]:
        """Health of a container by the settings it was deployed with (its labels)."""
        labels = container.labels
        port = int(labels.get(PORT_LABEL) or 0)
        path = labels.get(HEALTH_PATH_LABEL) or "/health"
        timeout = float(labels.get(HEALTH_TIMEOUT_LABEL) or DEFAULT_HEALTH_TIMEOUT_SECONDS)
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
        if not follow:
            yield from container.logs(tail=tail).decode(errors="replace").splitlines()
            return
        buffer = b""
        for chunk in container.logs(stream=True, follow=True, tail=tail):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if buffer:
            yield buffer.decode(errors="replace")

    def destroy(self) -> list[str]:
        return [name for name in (self.name, self.previous_name) if self._remove(name)]


def _id(container: Container) -> str:
    return container.id or ""


def _image_id(container: Container) -> str:
    return (container.image.id if container.image else None) or ""


CRASH_CODE_WAIT = 5.0  # seconds to wait for the exit code of a container its restart policy started again


def _exit_code_hidden(container: Container) -> bool:
    state = container.attrs.get("State", {})
    return container.status == "running" and not state.get("Restarting") and not state.get("ExitCode")


def _crash(container: Container) -> str:
    """Why the container is not running its first start any more ("" while it is)."""
    state = container.attrs.get("State", {})
    restarts = int(container.attrs.get("RestartCount") or 0)
    if container.status in ("exited", "dead") or restarts > 0 or state.get("Restarting"):
        code = state.get("ExitCode")
        again = f", restarted {restarts} time(s) by its restart policy" if restarts else ""
        if _exit_code_hidden(container):
            return f"the container exited{again}: it crashes at start-up"
        return f"the container exited with code {code}{again}: it crashes at start-up"
    return ""


def _first_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tail(container: Container, lines: int = LOG_LINES_ON_FAILURE) -> list[str]:
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
        """A port another program holds fails now, naming it, not after the build as the agent's `Errno 98`."""
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

    def release(self, request: ReleaseRequest) -> TargetOutcome:
        if "@sha256:" in request.image:
            self._ensure_local(request.image)
        with self.context.timed("gate"):
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
                    bind=self.bind,
                    resources=self.context.config.deploy.effective_resources,
                    writable=self.writable,
                )
            )
        return TargetOutcome(
            status=Status(outcome.status),
            url=outcome.url,
            revision=outcome.container,
            previous=outcome.previous_image,
            reason=outcome.reason,
            interrupted=self.context.interrupted() if outcome.status != "succeeded" else "",
            attempted=outcome.attempted,
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
                revision=_id(running),
                previous=before,
                reason=f"the version that served before still serves ({reason})",
            )
        if healthy:  # it passed the gate and the old container was gone: only the record was missing
            return TargetOutcome(
                status=Status.SUCCEEDED,
                url=url,
                revision=_id(running),
                previous=before,
                reason=f"its version runs and is healthy now ({reason})",
            )
        return TargetOutcome(
            status=Status.FAILED,
            url=url,
            revision=_id(running),
            previous=before,
            reason=f"its version runs and is not healthy ({reason}); nothing earlier is kept on the engine: "
            "`agentdeploy rollback` runs the last good image again",
        )

    def rollback(self, record: DeploymentRecord, request: ReleaseRequest) -> TargetOutcome:
        return self.release(request)

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
