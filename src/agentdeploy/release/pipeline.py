"""The stages of a release, in order. The only module that knows the order.

deploy: config -> variables -> files -> tag -> plan -> (skip | cache, build, push, verify digest)
        -> the target runs it behind its gate (roll back when unhealthy) -> record the state.
push:   config -> files -> tag -> (skip | cache, build, push, verify digest): deploy's image stage alone.
Everything that can be refused is checked before the first side effect. Which target it is, the
pipeline never asks: it talks to the Target protocol (targets/base.py) and its capabilities.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentdeploy import targets
from agentdeploy.config.loader import (
    LoadedConfig,
    ResolvedDeployment,
    load_config,
    require_supported_target,
    resolve_for_deploy,
)
from agentdeploy.config.models import DeploymentConfig
from agentdeploy.config.runtime import forwarded_variables, runtime_settings
from agentdeploy.console import Console
from agentdeploy.errors import (
    AgentDeployError,
    AttestationError,
    DeployError,
    InterruptedRelease,
    NothingToRollBackError,
    RolledBackError,
    UntrustedRecordError,
    UsageError,
)
from agentdeploy.github.attestations import Attestation, AttestationSource, attestations_of
from agentdeploy.image.builder import ImageBuilder, ImageResult, ImageStage, ImageStageFactory
from agentdeploy.image.context import collect, env_files_left_out
from agentdeploy.image.git import git_facts
from agentdeploy.image.registry import RegistryCredentials
from agentdeploy.image.spec import RUNTIME_LABEL, plan_image
from agentdeploy.image.tags import created_timestamp, image_repository
from agentdeploy.interrupts import Interrupts
from agentdeploy.jsonvalue import JsonObject, text_at
from agentdeploy.release.planner import (
    DRIFT,
    NO_CHANGE,
    Desired,
    PlanItem,
    Recorded,
    canonical_deployment,
    plan_release,
    render_table,
    render_variables,
)
from agentdeploy.state.store import (
    DIGEST_FORMAT,
    LEGACY_PATH,
    PENDING,
    DeploymentRecord,
    DeploymentState,
    StateStore,
    provenance,
    state_path,
)
from agentdeploy.targets.base import (
    ChecksRecords,
    Preflight,
    Promotable,
    ReadsUpstreamState,
    ReleaseRequest,
    Repairs,
    Status,
    Streams,
    StreamsSystem,
    Target,
    TargetContext,
    TargetOutcome,
)
from agentdeploy.targets.health import ChatCheck, ChatPost, HealthProbe

if TYPE_CHECKING:
    import requests
    from azure.mgmt.appcontainers import ContainerAppsAPIClient
    from docker import DockerClient

LOCAL_ENVIRONMENT = "local"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    attestations: Callable[[str], list[Attestation]] | None = None  # digest -> its attestations (default: GitHub)
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
            interrupted=services.interrupts.requested,
            on_progress=services.console.progress,
            timed=services.console.timed,
            run_id=_run_id(services.environ),
        ),
    )


def state_store(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> StateStore:
    """The record of a config (its file, agent, environment, target), without touching any target."""
    config = load_config(config_path, display_name=display_name)
    provider = _provider(config, options.target)
    return _store(config, provider, _target(config, provider, services), services)


def _store(config: LoadedConfig, provider: str, target: Target, services: Services) -> StateStore:
    name = config.agent.name
    upstream = isinstance(target, ReadsUpstreamState) and target.reads_upstream_state
    return StateStore(
        state_path(config.project_dir, name, target.environment),
        agent=name,
        environment=target.environment,
        target=provider,
        legacy_path=config.project_dir / LEGACY_PATH if upstream else None,
        redact=services.console.redact,  # what a record quotes from the agent or the target is masked too
    )


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
    return Recorded(current.config_hash, current.inputs_digest, deployment, current.image, current.files())


def _plan_item(prepared: _Prepared, builder: ImageStage, state: DeploymentState) -> PlanItem:
    recorded = _recorded(state)
    desired = Desired(
        config_hash=builder.plan.labels.get("dev.agentdeploy.config-hash", ""),
        inputs_digest=builder.inputs(),
        deployment=prepared.config.deploy.model_dump(mode="json"),
        inputs_files=builder.inputs_files(),
    )
    target = prepared.target
    item = plan_release(target.resource, desired, recorded, target.observe(state.current))
    config = prepared.config
    return replace(
        item, variables=tuple(forwarded_variables(runtime_settings(config.deploy, config.runtime_variables)))
    )


def plan(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> list[PlanItem]:
    """What `deploy` would do; reads only."""
    prepared = _prepare(config_path, display_name, options, services)
    config = prepared.config
    git = git_facts(config, services.environ)
    image_plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    store = _store(config, prepared.provider, prepared.target, services)
    state = store.load()
    _report_pending(store, state, prepared.target, services)
    builder = services.image_stage(config, image_plan, services)
    return [_plan_item(prepared, builder, state)]


def deploy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = _prepare(config_path, display_name, options, services)
    config, provider = prepared.config, prepared.provider
    for note in env_files_left_out(config):
        services.console.warn(note)
    git = git_facts(config, services.environ)  # every named file present, before any side effect
    plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    push = _push(prepared, options)
    store = _store(config, provider, prepared.target, services)
    with store.locked():
        state = store.load()
        _repair_unfinished(store, state, prepared, options, services)
        started = _now()
        builder = services.image_stage(config, plan, services)
        with services.console.stage("plan"):
            item = _plan_item(prepared, builder, state)
            services.console.info(render_table([item]))
            services.console.info(render_variables([item]))
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
                Status.UNCHANGED,
                current.url,
                _image_of(current),
                current.revision,
                current.previous_image,
                store.path,
                extra={"variables": [variable.as_json() for variable in item.variables]},
            )
        if isinstance(prepared.target, Preflight):
            prepared.target.preflight()  # what would fail the release (a busy port) fails before the build
        with services.console.stage("image: build, push, verify"):
            image = builder.run(push=push, pull=options.pull, move_tag=options.move_tag)
        attestation = _attested(image.digest if image.pushed else "", options, services)
        with services.console.stage(f"release to {provider}"):
            request = _request(
                prepared,
                image.reference,
                image.tag,
                options,
                config_hash=plan.labels.get("dev.agentdeploy.config-hash", ""),
                credentials=builder.credentials,
            )

            def record_of(outcome: TargetOutcome) -> DeploymentRecord:
                return _record(
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
                    attestation=attestation,
                )

            outcome = _release_recorded(
                store,
                state,
                services,
                lambda: prepared.target.release(request),
                pending=record_of(TargetOutcome(status=Status.FAILED, url="", revision="", previous="")),
                record_of=record_of,
            )
    if attestation:
        outcome.details["attestation"] = attestation
    outcome.details["variables"] = [variable.as_json() for variable in item.variables]  # names, for the summary
    return _finish(outcome, image, store.path)


def _push(prepared: _Prepared, options: DeployOptions) -> bool:
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
    prepared = _prepare(config_path, display_name, options, services)
    collect(prepared.config)  # every named file present and inside the project (ContextError lists them all)
    _push(prepared, options)
    return _store(prepared.config, prepared.provider, prepared.target, services)


def push(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> ImageResult:
    """Deploy's image stage alone: build (or skip: the registry holds identical inputs), push, verify the digest,
    and never move a tag to other content unless asked. No target is asked and no state is read or written, so
    a workflow can attest the pushed digest before `deploy --require-attestation`, whose own image stage then
    finds the same inputs in the registry and builds nothing.

    No ${VAR} is needed: the config's rules keep placeholders out of everything that shapes the image, so the
    deployment's runtime values and secrets are left to the deploy."""
    config = load_config(config_path, display_name=display_name)
    for warning in config.warnings:
        services.console.warn(warning)
    if config.deploy.registry is None:
        raise UsageError(
            f"{display_name} has no `registry:` in its deployment section: push has nowhere to send the image; "
            "nothing was built",
            hint="add `registry: {url: HOST[:PORT], repository: ORG/NAME}` to the deployment section",
        )
    for note in env_files_left_out(config):
        services.console.warn(note)
    git = git_facts(config, services.environ)  # every named file present, before any side effect
    plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    builder = services.image_stage(config, plan, services)
    with services.console.stage("image: build, push, verify"):
        return builder.run(push=True, pull=options.pull, move_tag=options.move_tag)


def _attested(digest: str, options: DeployOptions, services: Services) -> str:
    """With --require-attestation: the bundle URL of the digest's build provenance, else stop before any change.
    Without it: "" (nothing is asked)."""
    if not options.require_attestation:
        return ""
    if not digest:
        raise AttestationError(
            "--require-attestation deploys only an attested digest, and this image was not pushed to a registry",
            hint="add a `registry:` to the deployment section (or pass --push) so the image has a digest to attest",
        )
    lookup = services.attestations or (
        lambda wanted: attestations_of(wanted, AttestationSource.from_environ(services.environ))
    )
    found = lookup(digest)
    if not found:
        raise AttestationError(
            f"{digest} has no build provenance attestation in GitHub; nothing was deployed",
            hint="attest the pushed digest first (actions/attest-build-provenance with subject-digest), or deploy "
            "without --require-attestation",
        )
    services.console.info(f"{digest}: attested by {found[0].builder or 'a workflow'} ({found[0].bundle_url})")
    return found[0].bundle_url or found[0].builder


def _run_id(environ: Mapping[str, str]) -> str:
    """Names this run in a pending entry, so a later run can say which one died."""
    user = environ.get("GITHUB_ACTOR") or environ.get("USER") or _login()
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "someone"


def _release_recorded(
    store: StateStore,
    state: DeploymentState,
    services: Services,
    release: Callable[[], TargetOutcome],
    *,
    pending: DeploymentRecord,
    record_of: Callable[[TargetOutcome], DeploymentRecord],
) -> TargetOutcome:
    """Change the target with the intent written down first and the outcome after, whatever the outcome.

    The pending entry is saved before the first change, so a run killed outright (SIGKILL, a lost runner)
    leaves a trace the next run repairs. SIGINT and SIGTERM only ask the target to stop at its next safe
    point (it rolls back), so the outcome is still recorded here.
    """
    with services.interrupts.deferred():
        state.pending = replace(pending, status=PENDING, finished_at="", run_id=_run_id(services.environ))
        store.save(state)
        try:
            outcome = release()
        except AgentDeployError as error:
            # A release the target gave up on (an operation that ended Failed, say) is history too.
            state.pending = None
            state.add(
                record_of(TargetOutcome(status=Status.FAILED, url="", revision="", previous="", reason=error.message))
            )
            store.save(state)
            raise
        state.pending = None
        if outcome.status != Status.UNCHANGED:  # a no-op adds nothing to the history
            state.add(record_of(outcome))
        store.save(state)
    return outcome


def _report_pending(
    store: StateStore, state: DeploymentState, target: Target, services: Services
) -> dict[str, str] | None:
    """For a reader (plan, status): what a pending entry says, reported and never acted on. A read changes
    neither the target nor the state; `repair`, `deploy` and `rollback` finish a dead run's work."""
    pending = state.pending
    if pending is None:
        return None
    under_way = store.busy()
    live = target.observe(state.current)
    serving = live.image or "something agentdeploy cannot name" if live.exists else "nothing"
    who = pending.run_id or "an earlier run"
    what = f"{pending.action} of {pending.tag or pending.image or 'a version'} (started {pending.started_at})"
    if under_way:
        services.console.info(f"a release is under way: {who} is running its {what}; {serving} serves now")
    else:
        services.console.info(
            f"unfinished: {who} stopped during its {what} and did not finish; {serving} serves now. "
            "Nothing was changed: `agentdeploy repair CONFIG` (or the next deploy or rollback) repairs it"
        )
    return {
        "state": "under way" if under_way else "unfinished",
        "action": pending.action,
        "tag": pending.tag,
        "image": pending.image,
        "run_id": pending.run_id,
        "run_url": pending.run_url,
        "started_at": pending.started_at,
        "serving": live.image if live.exists else "",
    }


def trusted_image_problem(image: str, config: LoadedConfig, target: Target) -> str | None:
    """Why `image` is not a version this config deploys, or None. A record only ever names what runs: an image in
    the config's registry/repository by digest, or, on a target that runs local images, a local image id."""
    if not image:
        return "names no image"
    local_id = DIGEST_FORMAT.fullmatch(image) is not None
    if local_id and not target.requires_registry:
        return None
    if config.deploy.registry is None:
        return (
            f"{image!r} is not a local image id (sha256:<64 hex>), the only image this config runs without a registry"
        )
    repository = image_repository(config)
    if re.fullmatch(re.escape(repository) + r"@sha256:[0-9a-f]{64}", image):
        return None
    if local_id:
        return f"{image!r} is a local image id; the {target.resource} runs images from {repository} only"
    name, at, _ = image.partition("@")
    if not at:
        return f"{image!r} is not pinned by digest: only {repository}@sha256:<64 hex> is run"
    return f"{image!r} is in {name}, not this config's registry/repository {repository}"


def _trusted(
    record: DeploymentRecord, which: str, prepared: _Prepared, options: DeployOptions, services: Services
) -> str:
    """Refuse, before anything changes, a record that names a version this config never deploys (another registry,
    a bare tag) or, with --require-attestation, one without a build provenance attestation. Its attestation's
    bundle URL when one was checked, else ""."""
    field = "image"
    problem = trusted_image_problem(record.image, prepared.config, prepared.target)
    digest = record.image.rpartition("@")[2] if "@" in record.image else ""
    if problem is None and record.digest and digest and record.digest != digest:
        field, problem = "digest", f"{record.digest!r} is not the digest of its image {record.image!r}"
    if problem is not None:
        raise UntrustedRecordError(
            f"refused the state's {which} record: {field}: {problem}; nothing was changed",
            hint="the state (branch or artifact) names a version this repository did not deploy: restore it from a "
            "record agentdeploy wrote, or deploy the version again",
        )
    if isinstance(prepared.target, ChecksRecords):
        prepared.target.check_record(record)
    return _attested(digest, options, services)


def _repair_unfinished(
    store: StateStore, state: DeploymentState, prepared: _Prepared, options: DeployOptions, services: Services
) -> TargetOutcome | None:
    """A pending entry seen under the lock was left by a run that died mid-release: finish its work first,
    so the target serves a version that passed its gate and the record says which. The version it puts back
    (the record's current) must be one this repository deployed: in the history, in the config's repository."""
    pending, target = state.pending, prepared.target
    if pending is None:
        return None
    last_good = state.current
    if last_good is not None:
        if not any(_same_release(last_good, entry) and entry.status in SERVED for entry in state.history):
            raise UntrustedRecordError(
                f"refused the state's current record ({last_good.image or last_good.revision or 'no image'}): it is "
                "not in the history: "
                "repair puts back only a version this repository deployed before; nothing was changed",
                hint="restore the state from a record agentdeploy wrote, or deploy a version again",
            )
        _trusted(last_good, "current", prepared, options, services)
    if pending.image:
        _trusted(pending, "pending", prepared, replace(options, require_attestation=False), services)
    who = pending.run_id or "an earlier run"
    services.console.info(
        f"{who} stopped during its {pending.action} of {pending.tag or pending.image} (started {pending.started_at}) "
        "and did not finish: repairing what it left"
    )
    if isinstance(target, Repairs):
        outcome = target.repair(pending, last_good)
    else:
        outcome = TargetOutcome(
            status=Status.FAILED,
            url="",
            revision="",
            previous="",
            reason="this target cannot repair it: check what serves with `agentdeploy status`",
        )
    state.pending = None
    state.add(
        replace(
            pending,
            status=str(outcome.status),
            finished_at=_now(),
            url=outcome.url or pending.url,
            revision=outcome.revision,
            previous_image=outcome.previous,
            message=f"repaired after {who} died: {outcome.reason}",
        )
    )
    store.save(state)
    services.console.info(f"repaired ({outcome.status}): {outcome.reason}")
    return outcome


def repair(
    config_path: Path, display_name: str, options: DeployOptions, services: Services
) -> tuple[TargetOutcome | None, Path]:
    """`agentdeploy repair`: finish what a dead run left (its pending entry), and nothing else. None when there
    is nothing to repair; and the state file."""
    prepared = _named(config_path, display_name, options, services)
    store = _store(prepared.config, prepared.provider, prepared.target, services)
    with store.locked():
        state = store.load()
        if state.pending is None:
            services.console.info("nothing to repair: no release was left unfinished")
            return None, store.path
        outcome = _repair_unfinished(store, state, prepared, options, services)
    if outcome is not None and outcome.status == Status.FAILED:
        raise DeployError(
            f"the repair did not leave a healthy version serving: {outcome.reason}", hint="read the output above"
        )
    return outcome, store.path


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
    attestation: str = "",
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
        inputs_files=DeploymentRecord.files_text(image.inputs_files),
        config_hash=config_hash,
        deployment=deployment,
        runtime=runtime,
        attestation=attestation,
        url=outcome.url,
        # A history entry is about what this run tried: a rolled-back entry names its own revision (the one
        # that failed), not the one that serves again (that is `previous_image`).
        revision=outcome.attempted or outcome.revision,
        previous_image=outcome.previous,
        message=outcome.reason,
        git_sha=git_sha,
        git_ref=git_ref,
        **actor_fields,
    )


def _served_again(
    action: str, outcome: TargetOutcome, source: DeploymentRecord | None, started: str, environ: Mapping[str, str]
) -> DeploymentRecord:
    """The record of a version that serves again (rollback, promote): what it is comes from its own record."""
    known = source or DeploymentRecord(action="deploy", status="", started_at="")
    return _record(
        action,
        outcome,
        _image_of(known),
        config_hash=known.config_hash,
        deployment=known.deployment,
        runtime=known.runtime,
        attestation=known.attestation,
        git_sha=known.git_sha,
        git_ref=known.git_ref,
        started=started,
        actor_fields=provenance(environ),
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
        )
    if outcome.status == Status.FAILED:
        raise DeployError(
            f"the new version failed its health gate: {outcome.reason}", hint=hint or "read the output above", log=log
        )
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
        record.image,
        record.tag,
        record.repository,
        record.digest,
        record.image_id,
        record.inputs_digest,
        True,
        "@sha256:" in record.image,  # run by digest: it was pushed, and the digest is a manifest digest
        record.files(),
    )


def _recorded_request(request: ReleaseRequest, record: DeploymentRecord, options: DeployOptions) -> ReleaseRequest:
    """A recorded version is judged by the health settings it was deployed with, not today's config."""
    recorded = record.health()
    if recorded is None:
        return request
    path, timeout = recorded
    return replace(request, health_path=path, health_timeout=options.health_timeout or timeout)


def rollback(config_path: Path, display_name: str, to: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = _prepare(config_path, display_name, options, services)
    config, target = prepared.config, prepared.target
    store = _store(config, prepared.provider, target, services)
    with store.locked():
        state = store.load()
        _repair_unfinished(store, state, prepared, options, services)
        record = find_rollback_record(state, to) or target.recorded_elsewhere(to)
        if record is None:
            known = sorted({r.tag for r in state.history if r.status in SERVED and r.tag})
            if to == "previous":
                raise NothingToRollBackError(
                    "nothing earlier to roll back to: "
                    + ("only the version that serves now is recorded" if state.current else "nothing is deployed"),
                    hint="deploy another version first; `agentdeploy status` shows the history",
                )
            raise NothingToRollBackError(
                f"no earlier successful deployment matches {to!r}",
                hint=("known tags: " + ", ".join(known)) if known else "nothing has been deployed successfully yet",
            )
        # Unless it no longer takes all the traffic (a paused canary, a split someone made): then it gets it back.
        if state.current and record.image and _same_release(record, state.current) and target.observe(record).serving:
            raise NothingToRollBackError(f"{to} is what serves now ({record.image}); nothing to roll back")
        _trusted(record, "previous" if to == "previous" else repr(to), prepared, options, services)
        started = _now()
        services.console.info(f"rolling back to {record.tag or record.revision or record.image}, no rebuild")
        request = _recorded_request(
            _request(prepared, record.image, record.tag, options, config_hash=record.config_hash, auto_rollback=True),
            record,
            options,
        )

        def record_of(outcome: TargetOutcome) -> DeploymentRecord:
            return _served_again("rollback", outcome, record, started, services.environ)

        outcome = _release_recorded(
            store,
            state,
            services,
            lambda: target.rollback(record, request),
            pending=record_of(TargetOutcome(status=Status.FAILED, url="", revision="", previous="")),
            record_of=record_of,
        )
    return _finish(outcome, _image_of(record), store.path)


def promote(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = _prepare(config_path, display_name, options, services)
    config, target = prepared.config, prepared.target
    if not isinstance(target, Promotable):
        raise UsageError(
            f"promote moves traffic to a verified candidate: the {prepared.provider} target has no candidates",
            hint="blue/green needs a target that can split traffic (azure)",
        )
    store = _store(config, prepared.provider, target, services)
    with store.locked():
        state = store.load()
        _repair_unfinished(store, state, prepared, options, services)
        waiting = next((r for r in state.history if r.status == Status.CANDIDATE), None)
        if waiting is not None:  # the candidate as recorded: checked like any version a record makes run
            _trusted(waiting, "candidate", prepared, options, services)
        started = _now()
        outcome = target.promote(_request(prepared, "", "", options, config_hash=""))
        candidate = next((r for r in state.history if r.revision == outcome.revision), None)
        image = _image_of(candidate) if candidate else ImageResult("", "", "", "", "", "", True, False)
        state.add(_served_again("promote", outcome, candidate, started, services.environ))
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
    store = _store(prepared.config, prepared.provider, prepared.target, services)
    state = store.load()  # a read: a pending entry is reported, never acted on
    pending = _report_pending(store, state, prepared.target, services)
    return {
        "agent": prepared.config.agent.name,
        "target": prepared.provider,
        "state_file": str(store.path),
        "pending": pending,
        "current": asdict(state.current) if state.current else None,
        "history": [
            {k: asdict(r)[k] for k in ("action", "status", "tag", "image", "revision", "finished_at", "message")}
            for r in state.history[:10]
        ],
        "live": prepared.target.status(),
    }


def logs(
    config_path: Path,
    display_name: str,
    options: DeployOptions,
    services: Services,
    *,
    tail: int,
    follow: bool,
    system: bool = False,
) -> Iterator[str]:
    prepared = _named(config_path, display_name, options, services)
    if system:
        if not isinstance(prepared.target, StreamsSystem):
            raise UsageError(f"the {prepared.provider} target has no system log", hint="leave out --system")
        return prepared.target.system_logs(tail=tail, follow=follow)
    if not isinstance(prepared.target, Streams):
        raise UsageError(
            f"the {prepared.provider} target does not stream the agent's log here",
            hint="for Azure use `az containerapp logs show` or Log Analytics",
        )
    return prepared.target.logs(tail=tail, follow=follow)


def destroy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> list[str]:
    prepared = _named(config_path, display_name, options, services)
    store = _store(prepared.config, prepared.provider, prepared.target, services)
    with store.locked():
        state = store.load()
        state.pending = None  # whatever a dead run left goes with the rest
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
