"""What a release starts from: the adapters and options of a run, the config and its target checked before the
first side effect (`prepare`), the state store it records to, and the request a target runs (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agentdeploy import targets
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
from agentdeploy.errors import (
    DeployError,
    InterruptedRelease,
    RolledBackError,
    UsageError,
)
from agentdeploy.image.builder import ImageBuilder, ImageResult, ImageStageFactory
from agentdeploy.image.context import collect
from agentdeploy.image.registry import RegistryCredentials
from agentdeploy.interrupts import Interrupts
from agentdeploy.jsonvalue import JsonObject, text_at
from agentdeploy.release.variables import one_off_variables
from agentdeploy.state.store import (
    LEGACY_PATH,
    StateStore,
    run_identity,
    state_path,
)
from agentdeploy.targets.base import (
    ReadsUpstreamState,
    ReleaseRequest,
    Status,
    Target,
    TargetContext,
    TargetOutcome,
)
from agentdeploy.targets.health import ChatCheck, ChatPost, HealthProbe

if TYPE_CHECKING:
    import requests
    from azure.mgmt.appcontainers import ContainerAppsAPIClient
    from docker import DockerClient


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AttestationFacts(Protocol):
    """What the pipeline reads of one attestation (github.attestations.Attestation has it)."""

    @property
    def bundle_url(self) -> str: ...
    @property
    def builder(self) -> str: ...


@dataclass
class Services:
    """The adapters a run uses; tests pass their own."""

    environ: Mapping[str, str]
    console: Console
    docker: Callable[[], DockerClient]  # made when a stage first needs the engine
    azure_token: Callable[[], str] | None = None  # Entra token for the ACR exchange
    registry_session: requests.Session | None = None
    acr_exchange_url: str | None = None
    push_sleep: Callable[[float], None] | None = None
    health_probe: HealthProbe | None = None
    chat_post: ChatPost | None = None  # sends a verify chat turn (tests route it to their fakes)
    azure_client: Callable[[str], ContainerAppsAPIClient] | None = None  # subscription id -> client
    image_stage: ImageStageFactory = ImageBuilder  # builds (or finds) the image; tests pass one without Docker
    # digest -> its build provenance attestations; the front ends pass GitHub's (github/attestations.py)
    attestations: Callable[[str], Sequence[AttestationFacts]] | None = None
    interrupts: Interrupts = field(default_factory=Interrupts)  # signals during a release stop it at a safe point


@dataclass
class DeployOptions:
    target: str | None = None  # override the config's provider (e.g. docker)
    push: bool | None = None  # None: push when the config has a registry
    health_timeout: float | None = None
    force: bool = False  # deploy even when the plan says NO_CHANGE
    fail_on_drift: bool = False
    pull: bool = False  # pull the base image first (a newer base is built on; implies a redeploy)
    move_tag: bool = False  # let an existing registry tag be pointed at this build's other content
    require_attestation: bool = False  # deploy only a digest GitHub holds a build provenance attestation for
    env: tuple[str, ...] = ()  # deploy --env NAME[=VALUE]: one-off variables for the agent (release/variables.py)


@dataclass
class DeployResult:
    status: Status
    url: str
    image: ImageResult
    revision: str
    previous: str  # previous image (docker) or previous revision (azure)
    state_file: Path
    reason: str = ""
    extra: JsonObject = field(default_factory=dict)


def _provider(config: LoadedConfig, override: str | None) -> str:
    """The target of this run: --target, else target.provider (which must be supported)."""
    if override is None:
        return require_supported_target(config)
    if override not in targets.available():
        names = " or ".join(f"--target {name}" for name in targets.available())
        raise UsageError(f"--target {override!r} is not a target", hint=f"use {names}")
    return override


def target_of(
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
            interrupted=services.interrupts.requested,
            on_progress=services.console.progress,
            timed=services.console.timed,
            run_id=run_id(services.environ),
        ),
    )


def state_store(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> StateStore:
    """The record of a config (its file, agent, environment, target), without touching any target."""
    config = load_config(config_path, display_name=display_name)
    provider = _provider(config, options.target)
    return store_of(config, provider, target_of(config, provider, services), services)


def store_of(config: LoadedConfig, provider: str, target: Target, services: Services) -> StateStore:
    name = config.agent.name
    upstream = isinstance(target, ReadsUpstreamState) and target.reads_upstream_state
    return StateStore(
        state_path(config.project_dir, name, target.environment),
        agent=name,
        environment=target.environment,
        target=provider,
        legacy_path=config.project_dir / LEGACY_PATH if upstream else None,
        redact=services.console.redact,  # what a record quotes from the agent or the target is masked too
        owner=run_id(services.environ),
    )


@dataclass(frozen=True, kw_only=True)
class Prepared:
    config: LoadedConfig
    provider: str
    resolved: ResolvedDeployment
    target: Target
    one_off: Mapping[str, str] = field(default_factory=dict, repr=False)  # --env: name -> value (a secret)


def prepare(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> Prepared:
    """Everything that can be refused, before the first side effect."""
    config = load_config(config_path, display_name=display_name)
    for warning in config.warnings:
        services.console.warn(warning)
    provider = _provider(config, options.target)
    target_of(config, provider, services)  # a target refuses a config it cannot serve before anything is resolved
    resolved = resolve_for_deploy(config, services.environ, provider=provider)
    services.console.mask(resolved.runtime.secret_values())
    settings = runtime_settings(config.deploy, config.runtime_variables)
    one_off = one_off_variables(options.env, services.environ, settings)
    services.console.mask([value for value in one_off.values() if value])
    return Prepared(
        config=config,
        provider=provider,
        resolved=resolved,
        target=target_of(config, provider, services, resolved),
        one_off=one_off,
    )


def named(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> Prepared:
    """For commands that only need to find the deployment (status, logs, destroy): no runtime values."""
    config = load_config(config_path, display_name=display_name)
    provider = _provider(config, options.target)
    resolved = resolve_for_deploy(
        config, {**services.environ, **_placeholders_as_themselves(config)}, provider=provider
    )
    return Prepared(
        config=config, provider=provider, resolved=resolved, target=target_of(config, provider, services, resolved)
    )


def _placeholders_as_themselves(config: LoadedConfig) -> dict[str, str]:
    """Runtime values are not needed to find a deployment: let their placeholders stand for themselves."""
    settings = runtime_settings(config.deploy, config.runtime_variables)
    return {name: "${" + name + "}" for setting in settings for name in setting.variables}


def push_wanted(prepared: Prepared, options: DeployOptions) -> bool:
    """Whether this deploy pushes the image; refuses what cannot work."""
    push = prepared.config.deploy.registry is not None if options.push is None else options.push
    if prepared.target.requires_registry and not push:
        raise UsageError(
            f"the {prepared.provider} target pulls the image from a registry: --no-push cannot deploy to it"
        )
    if push and prepared.config.deploy.registry is None:
        raise UsageError("--push needs a `registry:` in the deployment section")
    return push


def check_deploy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> StateStore:
    """What `deploy` refuses before its first side effect, with no target, engine or registry asked: the config,
    its target, every ${VAR} it needs (its secrets are masked from here on), the files it names, the push rules.
    Returns the record the deploy would write. Several agents at once (release/many.py) check them all first."""
    prepared = prepare(config_path, display_name, options, services)
    collect(prepared.config)  # every named file present and inside the project (ContextError lists them all)
    push_wanted(prepared, options)
    return store_of(prepared.config, prepared.provider, prepared.target, services)


def run_id(environ: Mapping[str, str]) -> str:
    """Names this run in a pending entry and the state lock, so a later run can say which one died or holds it."""
    return run_identity(environ)


def release_request(
    prepared: Prepared,
    image: ImageResult,
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
        image=image.reference,
        manifest_digest=image.manifest_digest,
        tag=image.tag,
        config_hash=config_hash,
        health_path=deploy_config.effective_health_path,
        health_timeout=options.health_timeout or deploy_config.health.timeout_seconds,
        port=deploy_config.port,
        strategy=deploy_config.rollout.strategy,
        canary_steps=tuple(deploy_config.rollout.steps),
        bake_seconds=float(deploy_config.rollout.bake_seconds),
        resources=deploy_config.effective_resources,
        auto_rollback=deploy_config.rollout.auto_rollback if auto_rollback is None else auto_rollback,
        checks=chat_checks(deploy_config),
        verify_timeout=float(deploy_config.verify.timeout_seconds),
        env=prepared.resolved.runtime.env,
        secrets={**prepared.resolved.runtime.secrets, **prepared.one_off},  # --env values travel as secrets
        credentials=credentials,
    )


def chat_checks(deploy_config: DeploymentConfig) -> tuple[ChatCheck, ...]:
    return tuple(
        ChatCheck(turn.message, tuple(turn.expect), tuple(turn.expect_tools)) for turn in deploy_config.verify.chat
    )


def finish(outcome: TargetOutcome, image: ImageResult, state_file: Path) -> DeployResult:
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
    if outcome.interrupted and outcome.status != Status.SUCCEEDED:
        serving = "what served before serves again" if outcome.status == Status.ROLLED_BACK else outcome.reason
        raise InterruptedRelease(
            f"interrupted by {outcome.interrupted} during the release: {serving}",
            hint="the state file records it; deploy again when ready",
        )
    # The target's reading of the agent's last lines (a model-call failure: which settings reach it), and the lines.
    hint, lines = text_at(outcome.details, "hint"), outcome.details.get("log")
    log = [str(line) for line in lines] if isinstance(lines, list) else []
    if outcome.status == Status.ROLLED_BACK:
        raise RolledBackError(
            f"the new version failed its health gate ({outcome.reason}); rolled back to "
            f"{outcome.previous}, which serves at {outcome.url} again",
            hint=hint or "read the output above, fix the agent, and deploy again",
            log=log,
            details=outcome.details,
        )
    if outcome.status == Status.FAILED:
        raise DeployError(
            f"the new version failed its health gate: {outcome.reason}",
            hint=hint or "read the output above",
            log=log,
            details=outcome.details,
        )
    return result
