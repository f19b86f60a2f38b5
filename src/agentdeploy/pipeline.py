"""The stages of a release, in order. The only module that knows the order.

deploy: config -> variables -> files -> tag -> (skip | cache, build, push, verify digest)
        -> run behind the health gate (roll back when unhealthy) -> record the state.
Everything that can be refused is checked before the first side effect.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentdeploy import image as engine
from agentdeploy import targets
from agentdeploy.build.context import collect, env_files_left_out, write_context
from agentdeploy.build.git import read_git_facts
from agentdeploy.build.plan import RUNTIME_LABEL, ImagePlan, plan_image
from agentdeploy.build.tags import created_timestamp
from agentdeploy.config.loader import (
    LoadedConfig,
    ResolvedDeployment,
    load_config,
    require_supported_target,
    resolve_for_deploy,
)
from agentdeploy.config.models import DeploymentConfig
from agentdeploy.config.runtime import runtime_settings
from agentdeploy.console import Console
from agentdeploy.errors import DeployError, RegistryError, RolledBackError, UsageError
from agentdeploy.plan import (
    DRIFT,
    NO_CHANGE,
    Desired,
    PlanItem,
    Recorded,
    canonical_deployment,
    plan_release,
    render_table,
)
from agentdeploy.registry import RegistryClient, RegistryCredentials, registry_host
from agentdeploy.state import (
    LEGACY_PATH,
    STATE_DIR,
    DeploymentRecord,
    DeploymentState,
    StateStore,
    provenance,
    state_path,
)
from agentdeploy.targets.base import (
    Promotable,
    ReadsUpstreamState,
    ReleaseRequest,
    Status,
    Streams,
    Target,
    TargetContext,
    TargetOutcome,
)
from agentdeploy.targets.health import ChatCheck, ChatPost, HealthProbe

INPUTS_LABEL = "dev.agentdeploy.inputs-digest"  # the build fingerprint: inputs + the base image's id
BASE_LABEL = "dev.agentdeploy.base-image-id"
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
    health_probe: HealthProbe | None = None
    chat_post: ChatPost | None = None  # sends a verify chat turn (tests route it to their fakes)
    azure_client: Callable[[str], Any] | None = None  # subscription id -> ContainerAppsAPIClient


@dataclass
class DeployOptions:
    target: str | None = None  # override the config's provider (e.g. docker)
    push: bool | None = None  # None: push when the config has a registry
    health_timeout: float | None = None
    force: bool = False  # deploy even when the plan says NO_CHANGE
    fail_on_drift: bool = False
    pull: bool = False  # pull the base image first (a newer base is built on; implies a redeploy)


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
    previous: str  # previous image (docker) or previous revision (azure)
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
    """The target of this run: --target, else target.provider (which must be supported)."""
    if override is None:
        return require_supported_target(config)
    if override not in targets.available():
        names = " or ".join(f"--target {name}" for name in targets.available())
        raise UsageError(f"--target {override!r} is not a target", hint=f"use {names}")
    return override


def _target(
    config: LoadedConfig, provider: str, services: Services, resolved: ResolvedDeployment | None = None
) -> Target:
    return targets.make_target(
        provider,
        TargetContext(
            config=config,
            resolved=resolved,
            environ=services.environ,
            on_line=services.console.info,
            docker=services.docker,
            azure_client=services.azure_client,
            probe=services.health_probe,
            post=services.chat_post,
        ),
    )


def state_store(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> StateStore:
    """The record of a config (its file, agent, environment, target), without touching any target."""
    config = load_config(config_path, display_name=display_name)
    provider = _provider(config, options.target)
    return _store(config, provider, _target(config, provider, services))


def _store(config: LoadedConfig, provider: str, target: Target) -> StateStore:
    name = config.agent.name
    upstream = isinstance(target, ReadsUpstreamState) and target.reads_upstream_state
    return StateStore(
        state_path(config.project_dir, name, target.environment),
        agent=name,
        environment=target.environment,
        target=provider,
        legacy_path=config.project_dir / LEGACY_PATH if upstream else None,
    )


class ImageBuilder:
    """Build, push and verify one image; or find that it already exists and skip all of it."""

    def __init__(self, config: LoadedConfig, plan: ImagePlan, services: Services, client: Any) -> None:
        self.config = config
        self.plan = plan
        self.services = services
        self.client = client
        self.say = services.console.info
        self.credentials: RegistryCredentials | None = None  # what the push used, for Azure's pull
        self.base_id = ""

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

    def _context(self, temporary: Path, *, quiet: bool = False) -> tuple[Path, str, str]:
        """(context directory, Dockerfile path inside it, inputs digest)."""
        entries, skipped = collect(self.config)
        for path in [] if quiet else skipped:
            self.say(f"note: {path} is left out of the image (it holds secrets)")
        if self.plan.own_dockerfile is not None:
            context_dir = self.config.project_dir
            dockerfile = self.plan.own_dockerfile.relative_to(context_dir).as_posix()
            digest_of_context = _directory_digest(context_dir)
        else:
            assert self.plan.dockerfile is not None
            context = write_context(entries, temporary / "context", self.plan.dockerfile, skipped)
            context_dir, dockerfile, digest_of_context = context.directory, "Dockerfile", context.digest
        return context_dir, dockerfile, inputs_digest(digest_of_context, self.plan.platform, self.plan.build_args)

    def inputs(self) -> str:
        """The inputs digest alone (for planning): no engine, no registry."""
        with tempfile.TemporaryDirectory(prefix="agentdeploy-context-") as temporary:
            return self._context(Path(temporary), quiet=True)[2]

    def run(self, *, push: bool, pull: bool = False) -> ImageResult:
        with tempfile.TemporaryDirectory(prefix="agentdeploy-context-") as temporary:
            context_dir, dockerfile, inputs = self._context(Path(temporary))
            self.base_id = self._base_id(pull=pull)
            if push:
                return self._registry_flow(context_dir, dockerfile, inputs)
            return self._local_flow(context_dir, dockerfile, inputs)

    def _base_id(self, *, pull: bool) -> str:
        """The generated Dockerfile's base, as this engine has it (a user's own Dockerfile: not known)."""
        if self.plan.own_dockerfile is not None:
            return ""
        where = str(self.config.locate(("deployment", "build", "base_image")))
        return engine.resolve_base_image(
            self.client, self.config.deploy.build.base_image, pull=pull, where=where, on_line=self.say
        )

    def fingerprint(self, inputs: str) -> str:
        """What decides the skip: the inputs and the base image's id (a rebuilt base is built on)."""
        if not self.base_id:
            return inputs
        return "sha256:" + hashlib.sha256(f"{inputs}\0{self.base_id}".encode()).hexdigest()

    def _build(self, context_dir: Path, dockerfile: str, inputs: str, cache_from: list[str]) -> Any:
        self.say(f"building {self.plan.reference}")
        with self.services.console.untrusted():
            result = self._build_quietly(context_dir, dockerfile, inputs, cache_from)
        cached = (
            "every step from cache" if result.fully_cached else f"{result.cached_steps}/{result.steps} steps from cache"
        )
        self.say(f"built {self.plan.reference} ({cached})")
        return result

    def _build_quietly(self, context_dir: Path, dockerfile: str, inputs: str, cache_from: list[str]) -> Any:
        return engine.build_image(
            self.client,
            context_dir,
            tags=[self.plan.reference],
            labels={
                **self.plan.labels,
                INPUTS_LABEL: self.fingerprint(inputs),
                **({BASE_LABEL: self.base_id} if self.base_id else {}),
            },
            platform=self.plan.platform,
            build_args=self.plan.build_args,
            dockerfile=dockerfile,
            cache_from=cache_from,
            on_line=self.services.console.info,
        )

    def _local_flow(self, context_dir: Path, dockerfile: str, inputs: str) -> ImageResult:
        existing = engine.local_image_with_label(self.client, INPUTS_LABEL, self.fingerprint(inputs))
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
        self.credentials = credentials
        client = RegistryClient(host, credentials, session=self.services.registry_session)
        inputs_tag = INPUTS_TAG_PREFIX + self.fingerprint(inputs).removeprefix("sha256:")[:32]
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
            with self.services.console.untrusted():
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


@dataclass(frozen=True, kw_only=True)
class _Prepared:
    config: LoadedConfig
    provider: str
    resolved: ResolvedDeployment
    target: Target


def _prepare(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> _Prepared:
    """Everything that can be refused, before the first side effect."""
    config = load_config(config_path, display_name=display_name)
    for warning in config.warnings:
        services.console.warn(warning)
    provider = _provider(config, options.target)
    _target(config, provider, services)  # a target refuses a config it cannot serve before anything is resolved
    resolved = resolve_for_deploy(config, services.environ, provider=provider)
    services.console.mask(resolved.runtime.secret_values())
    return _Prepared(
        config=config, provider=provider, resolved=resolved, target=_target(config, provider, services, resolved)
    )


def _recorded(state: DeploymentState) -> Recorded | None:
    current = state.current
    if current is None:
        return None
    try:
        deployment = json.loads(current.deployment) if current.deployment else {}
    except ValueError:
        deployment = {}
    return Recorded(current.config_hash, current.inputs_digest, deployment, current.image)


def _plan_item(prepared: _Prepared, builder: ImageBuilder, state: DeploymentState) -> PlanItem:
    recorded = _recorded(state)
    desired = Desired(
        config_hash=builder.plan.labels.get("dev.agentdeploy.config-hash", ""),
        inputs_digest=builder.inputs(),
        deployment=prepared.config.deploy.model_dump(mode="json"),
    )
    target = prepared.target
    return plan_release(target.resource, desired, recorded, target.observe(state.current))


def plan(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> list[PlanItem]:
    """What `deploy` would do; reads only."""
    prepared = _prepare(config_path, display_name, options, services)
    config = prepared.config
    collect(config)
    git = read_git_facts(config.project_dir, services.environ)
    image_plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    state = _store(config, prepared.provider, prepared.target).load()
    builder = ImageBuilder(config, image_plan, services, None)
    return [_plan_item(prepared, builder, state)]


def deploy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = _prepare(config_path, display_name, options, services)
    config, provider = prepared.config, prepared.provider
    for note in env_files_left_out(config):
        services.console.warn(note)
    collect(config)  # every named file present, before any side effect
    git = read_git_facts(config.project_dir, services.environ)
    plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    push = config.deploy.registry is not None if options.push is None else options.push
    if prepared.target.requires_registry and not push:
        raise UsageError(f"the {provider} target pulls the image from a registry: --no-push cannot deploy to it")
    if push and config.deploy.registry is None:
        raise UsageError("--push needs a `registry:` in the deployment section")
    store = _store(config, provider, prepared.target)
    client = services.docker()
    with store.locked():
        state = store.load()
        started = _now()
        builder = ImageBuilder(config, plan, services, client)
        with services.console.stage("plan"):
            item = _plan_item(prepared, builder, state)
            services.console.info(render_table([item]))
        if item.action == DRIFT:
            message = f"{item.resource} drifted from the record: " + "; ".join(item.drift)
            if options.fail_on_drift:
                raise DeployError(
                    message, hint="inspect it with `agentdeploy plan`; deploy without --fail-on-drift to overwrite"
                )
            services.console.info(f"warning: {message}; deploying the config over it")
        if item.action == NO_CHANGE and not (options.force or options.pull) and state.current is not None:
            services.console.info(
                "no change since the last deployment: nothing built, nothing written (--force to redeploy)"
            )
            current = state.current
            return DeployResult(
                "unchanged", current.url, _image_of(current), current.revision, current.previous_image, store.path
            )
        with services.console.stage("image: build, push, verify"):
            image = builder.run(push=push, pull=options.pull)
        with services.console.stage(f"release to {provider}"):
            request = _request(
                prepared,
                image.reference,
                image.tag,
                options,
                config_hash=plan.labels.get("dev.agentdeploy.config-hash", ""),
                credentials=builder.credentials,
            )
            outcome = prepared.target.release(request)
        if outcome.status != "unchanged":  # a no-op writes nothing, not even the state
            state.add(
                _record(
                    "deploy",
                    outcome,
                    image,
                    config_hash=plan.labels.get("dev.agentdeploy.config-hash", ""),
                    git_sha=git.sha or "",
                    git_ref=git.ref or "",
                    started=started,
                    actor_fields=provenance(services.environ),
                    deployment=canonical_deployment(config.deploy.model_dump(mode="json")),
                    runtime=plan.labels.get(RUNTIME_LABEL, ""),
                )
            )
            store.save(state)
    return _finish(outcome, image, store.path)


def _request(
    prepared: _Prepared,
    reference: str,
    tag: str,
    options: DeployOptions,
    *,
    config_hash: str,
    credentials: RegistryCredentials | None = None,
    auto_rollback: bool | None = None,
) -> ReleaseRequest:
    """What the target runs and how it judges it, from the config and this run (pure)."""
    deploy_config = prepared.config.deploy
    return ReleaseRequest(
        agent=prepared.config.agent.name,
        image=reference,
        tag=tag,
        config_hash=config_hash,
        health_path=deploy_config.effective_health_path,
        health_timeout=options.health_timeout or deploy_config.health.timeout_seconds,
        auto_rollback=deploy_config.rollout.auto_rollback if auto_rollback is None else auto_rollback,
        checks=chat_checks(deploy_config),
        verify_timeout=float(deploy_config.verify.timeout_seconds),
        env=prepared.resolved.runtime.env,
        secrets=prepared.resolved.runtime.secrets,
        credentials=credentials,
    )


def chat_checks(deploy_config: DeploymentConfig) -> tuple[ChatCheck, ...]:
    return tuple(
        ChatCheck(turn.message, tuple(turn.expect), tuple(turn.expect_tools)) for turn in deploy_config.verify.chat
    )


def _record(
    action: str,
    outcome: TargetOutcome,
    image: ImageResult,
    *,
    config_hash: str,
    git_sha: str,
    git_ref: str,
    started: str,
    actor_fields: Mapping[str, str],
    deployment: str = "",
    runtime: str = "",
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
        deployment=deployment,
        runtime=runtime,
        url=outcome.url,
        revision=outcome.revision,
        previous_image=outcome.previous,
        message=outcome.reason,
        git_sha=git_sha,
        git_ref=git_ref,
        **actor_fields,
    )


def _finish(outcome: TargetOutcome, image: ImageResult, state_file: Path) -> DeployResult:
    result = DeployResult(
        status=outcome.status,
        url=outcome.url,
        image=image,
        revision=outcome.revision,
        previous=outcome.previous,
        state_file=state_file,
        reason=outcome.reason,
        extra={**outcome.details, **({"label_url": outcome.label_url} if outcome.label_url else {})},
    )
    if outcome.status == Status.ROLLED_BACK:
        raise RolledBackError(
            f"the new version failed its health gate ({outcome.reason}); rolled back to "
            f"{outcome.previous}, which serves at {outcome.url} again",
            hint="read the output above, fix the agent, and deploy again",
        )
    if outcome.status == Status.FAILED:
        raise DeployError(f"the new version failed its health gate: {outcome.reason}", hint="read the output above")
    return result


SERVED = ("succeeded", "promoted")


def find_rollback_record(state: DeploymentState, to: str) -> DeploymentRecord | None:
    """The record `to` names: previous | a tag | a digest (or image id) | a revision; newest match first."""
    served = [r for r in state.history if r.status in SERVED and r.action != "destroy" and r.image]
    current = state.current
    if to == "previous":
        # A release may change only runtime settings (same image, other environment): it is a version too.
        return next((r for r in served if current is None or not _same_release(r, current)), None)
    if to.startswith("sha256:") or "@sha256:" in to:
        wanted = to.split("@", 1)[-1]
        return next((r for r in served if wanted in (r.digest, r.image_id) or r.image.endswith(wanted)), None)
    return next((r for r in served if to in (r.tag, r.revision)), None)


def _same_release(one: DeploymentRecord, other: DeploymentRecord) -> bool:
    return (one.image, one.deployment) == (other.image, other.deployment)


def _image_of(record: DeploymentRecord) -> ImageResult:
    return ImageResult(
        record.image, record.tag, record.repository, record.digest, record.image_id, record.inputs_digest, True, False
    )


def rollback(config_path: Path, display_name: str, to: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = _prepare(config_path, display_name, options, services)
    config, target = prepared.config, prepared.target
    store = _store(config, prepared.provider, target)
    with store.locked():
        state = store.load()
        record = find_rollback_record(state, to) or target.recorded_elsewhere(to)
        if record is None:
            known = sorted({r.tag for r in state.history if r.status in SERVED and r.tag})
            raise DeployError(
                f"no earlier successful deployment matches {to!r}",
                hint=("known tags: " + ", ".join(known)) if known else "nothing has been deployed successfully yet",
            )
        if state.current and record.image and _same_release(record, state.current):
            raise DeployError(f"{to} is what serves now ({record.image}); nothing to roll back")
        started = _now()
        services.console.info(f"rolling back to {record.tag or record.revision or record.image}, no rebuild")
        request = _request(
            prepared, record.image, record.tag, options, config_hash=record.config_hash, auto_rollback=True
        )
        outcome = target.rollback(record, request)
        state.add(
            _record(
                "rollback",
                outcome,
                _image_of(record),
                config_hash=record.config_hash,
                deployment=record.deployment,
                runtime=record.runtime,
                git_sha=record.git_sha,
                git_ref=record.git_ref,
                started=started,
                actor_fields=provenance(services.environ),
            )
        )
        store.save(state)
    return _finish(outcome, _image_of(record), store.path)


def promote(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = _prepare(config_path, display_name, options, services)
    config, target = prepared.config, prepared.target
    if not isinstance(target, Promotable):
        raise UsageError(
            f"promote moves traffic to a verified candidate: the {prepared.provider} target has no candidates",
            hint="blue/green needs a target that can split traffic (azure)",
        )
    store = _store(config, prepared.provider, target)
    with store.locked():
        state = store.load()
        started = _now()
        outcome = target.promote(_request(prepared, "", "", options, config_hash=""))
        candidate = next((r for r in state.history if r.revision == outcome.revision), None)
        image = _image_of(candidate) if candidate else ImageResult("", "", "", "", "", "", True, False)
        state.add(
            _record(
                "promote",
                outcome,
                image,
                config_hash=candidate.config_hash if candidate else "",
                deployment=candidate.deployment if candidate else "",
                runtime=candidate.runtime if candidate else "",
                git_sha=candidate.git_sha if candidate else "",
                git_ref=candidate.git_ref if candidate else "",
                started=started,
                actor_fields=provenance(services.environ),
            )
        )
        store.save(state)
    return _finish(outcome, image, store.path)


def _named(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> _Prepared:
    """For commands that only need to find the deployment (status, logs, destroy): no runtime values."""
    config = load_config(config_path, display_name=display_name)
    provider = _provider(config, options.target)
    resolved = resolve_for_deploy(
        config, {**services.environ, **_placeholders_as_themselves(config)}, provider=provider
    )
    return _Prepared(
        config=config, provider=provider, resolved=resolved, target=_target(config, provider, services, resolved)
    )


def _placeholders_as_themselves(config: LoadedConfig) -> dict[str, str]:
    """Runtime values are not needed to find a deployment: let their placeholders stand for themselves."""
    settings = runtime_settings(config.deploy, config.runtime_variables)
    return {name: "${" + name + "}" for setting in settings for name in setting.variables}


def status(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> dict[str, Any]:
    prepared = _named(config_path, display_name, options, services)
    state = _store(prepared.config, prepared.provider, prepared.target).load()
    store = _store(prepared.config, prepared.provider, prepared.target)
    return {
        "agent": prepared.config.agent.name,
        "target": prepared.provider,
        "state_file": str(store.path),
        "current": asdict(state.current) if state.current else None,
        "history": [
            {k: asdict(r)[k] for k in ("action", "status", "tag", "image", "revision", "finished_at", "message")}
            for r in state.history[:10]
        ],
        "live": prepared.target.status(),
    }


def logs(
    config_path: Path, display_name: str, options: DeployOptions, services: Services, *, tail: int, follow: bool
) -> Iterator[str]:
    prepared = _named(config_path, display_name, options, services)
    if not isinstance(prepared.target, Streams):
        raise UsageError(
            f"the {prepared.provider} target does not stream the agent's log here",
            hint="for Azure use `az containerapp logs show` or Log Analytics",
        )
    return prepared.target.logs(tail=tail, follow=follow)


def destroy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> list[str]:
    prepared = _named(config_path, display_name, options, services)
    store = _store(prepared.config, prepared.provider, prepared.target)
    with store.locked():
        state = store.load()
        removed = prepared.target.destroy()
        state.add(
            DeploymentRecord(
                action="destroy",
                status="destroyed",
                started_at=_now(),
                finished_at=_now(),
                **provenance(services.environ),
            )
        )
        store.save(state)
    return removed
