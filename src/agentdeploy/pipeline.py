"""The stages of a release, in order. The only module that knows the order.

deploy: config -> variables -> files -> tag -> (skip | cache, build, push, verify digest)
        -> run behind the health gate (roll back when unhealthy) -> record the state.
Everything that can be refused is checked before the first side effect.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentdeploy import image as engine
from agentdeploy.build.context import collect, env_files_left_out, write_context
from agentdeploy.build.git import read_git_facts
from agentdeploy.build.plan import ImagePlan, plan_image
from agentdeploy.build.tags import created_timestamp
from agentdeploy.config.loader import LoadedConfig, load_config, require_supported_target, resolve_for_deploy
from agentdeploy.console import Console
from agentdeploy.errors import DeployError, RegistryError, RolledBackError, UsageError
from agentdeploy.registry import RegistryClient, RegistryCredentials, registry_host
from agentdeploy.state import STATE_DIR, DeploymentRecord, DeploymentState, StateStore, state_path
from agentdeploy.targets.docker import LocalDockerTarget, Outcome, Release

INPUTS_LABEL = "dev.agentdeploy.inputs-digest"
INPUTS_TAG_PREFIX = "agentdeploy-inputs-"  # registry tag naming the build inputs, for the skip path
CACHE_TAG = "agentdeploy-cache"  # moving tag: the last image built, seeds the layer cache on CI
LOCAL_ENVIRONMENT = "local"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Services:
    """The adapters a run uses; tests pass their own."""

    environ: Mapping[str, str]
    console: Console
    docker: Callable[[], Any]  # returns a docker client
    azure_token: Callable[[], str] | None = None  # Entra token for the ACR exchange
    registry_session: Any = None
    acr_exchange_url: str | None = None
    push_sleep: Callable[[float], None] | None = None
    health_probe: Any = None


@dataclass
class DeployOptions:
    target: str | None = None  # override the config's provider (e.g. docker)
    push: bool | None = None  # None: push when the config has a registry
    health_timeout: float | None = None


@dataclass
class ImageResult:
    reference: str  # what the target runs: repo@sha256:... after a push, else the local image id
    tag: str
    repository: str
    digest: str  # registry manifest digest, or the local image id
    image_id: str
    inputs_digest: str
    skipped_build: bool
    pushed: bool


@dataclass
class DeployResult:
    status: str
    url: str
    image: ImageResult
    revision: str
    previous_image: str
    state_file: Path
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def inputs_digest(context_digest: str, platform: str, build_args: Mapping[str, str]) -> str:
    """Everything that decides the image's content: files + Dockerfile, platform, build args."""
    canonical = json.dumps(
        {"context": context_digest, "platform": platform, "build_args": dict(sorted(build_args.items()))},
        sort_keys=True,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _provider(config: LoadedConfig, override: str | None) -> str:
    if override is None:
        return require_supported_target(config)
    if override not in ("docker", "azure"):
        raise UsageError(f"--target {override!r} is not a target", hint="use --target docker or --target azure")
    return override


def _store(config: LoadedConfig, provider: str) -> StateStore:
    environment = LOCAL_ENVIRONMENT if provider == "docker" else "azure"
    name = config.agent.name
    return StateStore(
        state_path(config.project_dir, name, environment), agent=name, environment=environment, target=provider
    )


def _local_target(config: LoadedConfig, client: Any, services: Services) -> LocalDockerTarget:
    docker_config = config.deploy.target.docker
    name = (docker_config.container_name if docker_config else None) or _container_name(config.agent.name)
    extra = {"probe": services.health_probe} if services.health_probe else {}
    return LocalDockerTarget(
        client,
        container_name=name,
        host_port=docker_config.host_port if docker_config else None,
        on_line=services.console.info,
        **extra,
    )


def _container_name(agent: str) -> str:
    import re

    return "agentdeploy-" + (re.sub(r"[^a-zA-Z0-9_.-]+", "-", agent).strip("-.") or "agent")


class ImageBuilder:
    """Build, push and verify one image; or find that it already exists and skip all of it."""

    def __init__(self, config: LoadedConfig, plan: ImagePlan, services: Services, client: Any) -> None:
        self.config = config
        self.plan = plan
        self.services = services
        self.client = client
        self.say = services.console.info

    def _credentials(self) -> tuple[RegistryCredentials | None, dict[str, str] | None]:
        from agentdeploy.registry import resolve_credentials, stored_docker_credentials

        registry = self.config.deploy.registry
        assert registry is not None
        host = registry_host(registry.url)
        credentials = resolve_credentials(
            host,
            prefix=registry.credentials_env_prefix,
            environ=self.services.environ,
            azure_token=self.services.azure_token,
            session=self.services.registry_session,
            exchange_url=self.services.acr_exchange_url,
        )
        if credentials is not None:
            self.services.console.mask([credentials.password])
            self.say(f"registry {host}: credentials from {credentials.source}")
            return credentials, credentials.auth_config()
        stored = stored_docker_credentials(host)
        if stored is not None:
            self.services.console.mask([stored.password])
            self.say(f"registry {host}: credentials from docker login")
        return stored, None  # the docker SDK finds what `docker login` stored by itself

    def run(self, *, push: bool) -> ImageResult:

        entries, skipped = collect(self.config)
        for path in skipped:
            self.say(f"note: {path} is left out of the image (it holds secrets)")
        with tempfile.TemporaryDirectory(prefix="agentdeploy-context-") as temporary:
            if self.plan.own_dockerfile is not None:
                context_dir = self.config.project_dir
                dockerfile = self.plan.own_dockerfile.relative_to(context_dir).as_posix()
                digest_of_context = _directory_digest(context_dir)
            else:
                assert self.plan.dockerfile is not None
                context = write_context(entries, Path(temporary) / "context", self.plan.dockerfile, skipped)
                context_dir, dockerfile, digest_of_context = context.directory, "Dockerfile", context.digest
            inputs = inputs_digest(digest_of_context, self.plan.platform, self.plan.build_args)
            if push:
                return self._registry_flow(context_dir, dockerfile, inputs)
            return self._local_flow(context_dir, dockerfile, inputs)

    def _build(self, context_dir: Path, dockerfile: str, inputs: str, cache_from: list[str]) -> Any:
        self.say(f"building {self.plan.reference}")
        result = engine.build_image(
            self.client,
            context_dir,
            tags=[self.plan.reference],
            labels={**self.plan.labels, INPUTS_LABEL: inputs},
            platform=self.plan.platform,
            build_args=self.plan.build_args,
            dockerfile=dockerfile,
            cache_from=cache_from,
            on_line=self.services.console.info,
        )
        cached = (
            "every step from cache" if result.fully_cached else f"{result.cached_steps}/{result.steps} steps from cache"
        )
        self.say(f"built {self.plan.reference} ({cached})")
        return result

    def _local_flow(self, context_dir: Path, dockerfile: str, inputs: str) -> ImageResult:
        existing = engine.local_image_with_label(self.client, INPUTS_LABEL, inputs)
        if existing is not None:
            repository, _, tag = self.plan.reference.rpartition(":")
            existing.tag(repository, tag)
            self.say(f"nothing to build: image {existing.short_id} was built from identical inputs")
            image_id = str(existing.id)
            skipped = True
        else:
            image_id = self._build(context_dir, dockerfile, inputs, []).image_id
            skipped = False
        return ImageResult(image_id, self.plan.tag, self.plan.repository, image_id, image_id, inputs, skipped, False)

    def _registry_flow(self, context_dir: Path, dockerfile: str, inputs: str) -> ImageResult:
        registry = self.config.deploy.registry
        assert registry is not None
        host = registry_host(registry.url)
        path = self.plan.repository[len(host) + 1 :]
        credentials, auth_config = self._credentials()
        client = RegistryClient(host, credentials, session=self.services.registry_session)
        inputs_tag = INPUTS_TAG_PREFIX + inputs.removeprefix("sha256:")[:32]
        existing = client.manifest_digest(path, inputs_tag)
        if existing is not None:
            digest = client.retag(path, inputs_tag, self.plan.tag)
            self.say(
                f"nothing to build: {host} already has {existing} built from identical inputs; "
                f"tagged it {self.plan.tag}"
            )
            image_id = ""
            skipped = True
        else:
            cache_ref = f"{self.plan.repository}:{CACHE_TAG}"
            cache_from: list[str] = []
            if engine.pull_quietly(self.client, self.plan.repository, CACHE_TAG, auth_config):
                cache_from = [cache_ref]
                self.say(f"layer cache seeded from {cache_ref}")
            image_id = self._build(context_dir, dockerfile, inputs, cache_from).image_id
            self.say(f"pushing {self.plan.reference}")
            pushed = engine.push_image(
                self.client,
                self.plan.repository,
                self.plan.tag,
                auth_config=auth_config,
                registry=host,
                on_line=self.services.console.info,
                sleep=self.services.push_sleep,
            )
            digest = client.manifest_digest(path, self.plan.tag) or ""
            if digest != pushed:
                raise RegistryError(
                    f"digest mismatch for {self.plan.reference}: the push reported {pushed}, "
                    f"the registry serves {digest or 'nothing'}",
                    hint="someone else may be pushing the same tag; the release was stopped",
                )
            self.say(f"pushed {self.plan.reference}, digest {digest} (verified against the registry)")
            for extra_tag in (inputs_tag, CACHE_TAG):
                client.retag(path, digest, extra_tag)
            skipped = False
        return ImageResult(
            f"{self.plan.repository}@{digest}",
            self.plan.tag,
            self.plan.repository,
            digest,
            image_id,
            inputs,
            skipped,
            True,
        )


def _directory_digest(directory: Path) -> str:
    """Digest of a user's own build context (BYO Dockerfile): every file, by path and content."""
    digest = hashlib.sha256()
    # The state directory changes with every deploy and .git with every commit: neither is an input.
    ignored = {".git", STATE_DIR}
    files = (p for p in directory.rglob("*") if p.is_file() and not ignored & set(p.relative_to(directory).parts))
    for path in sorted(files):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def _ensure_local(client: Any, reference: str, services: Services) -> None:
    """The docker target runs by digest; pull it when this engine does not have it yet."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(reference)
    except ImageNotFound:
        services.console.info(f"pulling {reference}")
        repository, _, digest = reference.partition("@")
        client.api.pull(repository, tag=digest)


def deploy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> DeployResult:
    config = load_config(config_path, display_name=display_name)
    console = services.console
    for warning in config.warnings:
        console.warn(warning)
    provider = _provider(config, options.target)
    if provider == "azure":
        raise DeployError(
            "deploying to Azure Container Apps is not available in this version",
            hint="deploy locally with --target docker",
        )
    resolved = resolve_for_deploy(config, services.environ, provider=provider)
    console.mask(resolved.runtime.secret_values())
    for note in env_files_left_out(config):
        console.warn(note)
    collect(config)  # every named file present, before any side effect
    git = read_git_facts(config.project_dir, services.environ)
    plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    push = config.deploy.registry is not None if options.push is None else options.push
    if push and config.deploy.registry is None:
        raise UsageError("--push needs a `registry:` in the deployment section")
    store = _store(config, provider)
    client = services.docker()
    with store.locked():
        state = store.load()
        started = _now()
        image = ImageBuilder(config, plan, services, client).run(push=push)
        if image.pushed:
            _ensure_local(client, image.reference, services)
        deploy_config = config.deploy
        release = Release(
            agent=config.agent.name,
            image=image.reference,
            port=deploy_config.port,
            health_path=deploy_config.effective_health_path,
            health_timeout=options.health_timeout or deploy_config.health.timeout_seconds,
            auto_rollback=deploy_config.rollout.auto_rollback,
            env=resolved.runtime.env,
            secrets=resolved.runtime.secrets,
            labels={"dev.agentdeploy.tag": image.tag},
        )
        outcome = _local_target(config, client, services).deploy(release)
        record = _record(
            "deploy",
            outcome,
            image,
            config_hash=plan.labels.get("dev.agentdeploy.config-hash", ""),
            git_sha=git.sha or "",
            git_ref=git.ref or "",
            started=started,
        )
        state.add(record)
        store.save(state)
    return _finish(outcome, image, store.path)


def _record(
    action: str, outcome: Outcome, image: ImageResult, *, config_hash: str, git_sha: str, git_ref: str, started: str
) -> DeploymentRecord:
    return DeploymentRecord(
        action=action,
        status=outcome.status,
        started_at=started,
        finished_at=_now(),
        image=image.reference,
        image_id=image.image_id,
        repository=image.repository,
        tag=image.tag,
        digest=image.digest,
        inputs_digest=image.inputs_digest,
        config_hash=config_hash,
        url=outcome.url,
        revision=outcome.container,
        previous_image=outcome.previous_image,
        message=outcome.reason,
        git_sha=git_sha,
        git_ref=git_ref,
    )


def _finish(outcome: Outcome, image: ImageResult, state_file: Path) -> DeployResult:
    result = DeployResult(
        status=outcome.status,
        url=outcome.url,
        image=image,
        revision=outcome.container,
        previous_image=outcome.previous_image,
        state_file=state_file,
        reason=outcome.reason,
    )
    if outcome.status == "rolled-back":
        raise RolledBackError(
            f"the new version failed its health gate ({outcome.reason}); rolled back to "
            f"{outcome.previous_image}, which serves at {outcome.url} again",
            hint="read the container output above, fix the agent, and deploy again",
        )
    if outcome.status == "failed":
        raise DeployError(
            f"the new version failed its health gate: {outcome.reason}", hint="read the container output above"
        )
    return result


def find_rollback_record(state: DeploymentState, to: str) -> DeploymentRecord | None:
    """The record `to` names: previous | a tag | a digest (or image id), newest match first."""
    served = [r for r in state.history if r.status == "succeeded" and r.action in ("deploy", "rollback") and r.image]
    current_image = state.current.image if state.current else None
    if to == "previous":
        return next((r for r in served if r.image != current_image), None)
    if to.startswith("sha256:") or "@sha256:" in to:
        wanted = to.split("@", 1)[-1]
        return next((r for r in served if wanted in (r.digest, r.image_id) or r.image.endswith(wanted)), None)
    return next((r for r in served if r.tag == to), None)


def rollback(config_path: Path, display_name: str, to: str, options: DeployOptions, services: Services) -> DeployResult:
    config = load_config(config_path, display_name=display_name)
    provider = _provider(config, options.target)
    if provider == "azure":
        raise DeployError("rolling back on Azure Container Apps is not available in this version")
    resolved = resolve_for_deploy(config, services.environ, provider=provider)
    services.console.mask(resolved.runtime.secret_values())
    store = _store(config, provider)
    client = services.docker()
    with store.locked():
        state = store.load()
        record = find_rollback_record(state, to)
        if record is None:
            known = sorted({r.tag for r in state.history if r.status == "succeeded" and r.tag})
            raise DeployError(
                f"no earlier successful deployment matches {to!r}",
                hint=("known tags: " + ", ".join(known)) if known else "nothing has been deployed successfully yet",
            )
        if state.current and record.image == state.current.image:
            raise DeployError(f"{to} is what serves now ({record.image}); nothing to roll back")
        if "@sha256:" in record.image:
            _ensure_local(client, record.image, services)
        services.console.info(f"rolling back to {record.tag or record.image} ({record.image}), no rebuild")
        release = Release(
            agent=config.agent.name,
            image=record.image,
            port=config.deploy.port,
            health_path=config.deploy.effective_health_path,
            health_timeout=options.health_timeout or config.deploy.health.timeout_seconds,
            auto_rollback=True,
            env=resolved.runtime.env,
            secrets=resolved.runtime.secrets,
            labels={"dev.agentdeploy.tag": record.tag},
        )
        started = _now()
        outcome = _local_target(config, client, services).deploy(release)
        image = ImageResult(
            record.image,
            record.tag,
            record.repository,
            record.digest,
            record.image_id,
            record.inputs_digest,
            True,
            False,
        )
        entry = _record(
            "rollback",
            outcome,
            image,
            config_hash=record.config_hash,
            git_sha=record.git_sha,
            git_ref=record.git_ref,
            started=started,
        )
        state.add(entry)
        store.save(state)
    return _finish(outcome, image, store.path)


def status(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> dict[str, Any]:
    config = load_config(config_path, display_name=display_name)
    provider = _provider(config, options.target)
    store = _store(config, provider)
    state = store.load()
    result: dict[str, Any] = {
        "agent": config.agent.name,
        "target": provider,
        "state_file": str(store.path),
        "current": asdict(state.current) if state.current else None,
        "history": [
            {k: asdict(r)[k] for k in ("action", "status", "tag", "image", "finished_at", "message")}
            for r in state.history[:10]
        ],
    }
    if provider == "docker":
        result["live"] = _local_target(config, services.docker(), services).status()
    return result


def logs(
    config_path: Path, display_name: str, options: DeployOptions, services: Services, *, tail: int, follow: bool
) -> Any:
    config = load_config(config_path, display_name=display_name)
    if _provider(config, options.target) != "docker":
        raise DeployError("logs are available for the docker target in this version")
    return _local_target(config, services.docker(), services).logs(tail=tail, follow=follow)


def destroy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> list[str]:
    config = load_config(config_path, display_name=display_name)
    provider = _provider(config, options.target)
    if provider != "docker":
        raise DeployError("destroying an Azure deployment is not available in this version")
    store = _store(config, provider)
    with store.locked():
        state = store.load()
        removed = _local_target(config, services.docker(), services).destroy()
        state.add(DeploymentRecord(action="destroy", status="destroyed", started_at=_now(), finished_at=_now()))
        store.save(state)
    return removed
