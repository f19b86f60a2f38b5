"""The stages of a release, in order. The only module that knows the order.

deploy: config -> variables -> files -> tag -> plan -> (skip | cache, build, push, verify digest)
        -> the target runs it behind its gate (roll back when unhealthy) -> record the state.
push:   config -> files -> tag -> (skip | cache, build, push, verify digest): deploy's image stage alone.
Everything that can be refused is checked before the first side effect. Which target it is, the
pipeline never asks: it talks to the Target protocol (targets/base.py) and its capabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from agentdeploy.config.loader import (
    load_config,
)
from agentdeploy.config.runtime import Forwarded, forwarded_variables, runtime_settings
from agentdeploy.errors import (
    DeployError,
    NothingToRollBackError,
    UsageError,
)
from agentdeploy.image.builder import ImageResult, ImageStage
from agentdeploy.image.context import env_files_left_out
from agentdeploy.image.git import git_facts
from agentdeploy.image.spec import RUNTIME_LABEL, ImagePlan, plan_image
from agentdeploy.image.tags import GitFacts, created_timestamp
from agentdeploy.release.existing import destroy, logs, status
from agentdeploy.release.planner import (
    DRIFT,
    NO_CHANGE,
    Desired,
    PlanItem,
    canonical_deployment,
    plan_release,
    render_table,
    render_variables,
)
from agentdeploy.release.prepare import (
    DeployOptions,
    DeployResult,
    Prepared,
    Services,
    check_deploy,
    finish,
    now,
    prepare,
    push_wanted,
    release_request,
    state_store,
    store_of,
)
from agentdeploy.release.records import (
    NO_IMAGE,
    find_rollback_record,
    history_entry,
    image_of,
    recorded_of,
    recorded_request,
    release_recorded,
    repair,
    repair_unfinished,
    report_pending,
    same_release,
    served_again,
)
from agentdeploy.release.trust import (
    attested,
    trusted,
)
from agentdeploy.state.record import SERVED
from agentdeploy.state.store import (
    DeploymentRecord,
    DeploymentState,
    provenance,
)
from agentdeploy.targets.base import (
    Action,
    Preflight,
    Promotable,
    Status,
    TargetOutcome,
)

# What the front ends and release/many.py call, wherever it is defined.
__all__ = [
    "DeployOptions",
    "DeployResult",
    "Services",
    "check_deploy",
    "deploy",
    "destroy",
    "find_rollback_record",
    "logs",
    "plan",
    "promote",
    "push",
    "refuse_drift",
    "repair",
    "rollback",
    "state_store",
    "status",
]


def plan(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> list[PlanItem]:
    """What `deploy` would do; reads only."""
    prepared = prepare(config_path, display_name, options, services)
    config = prepared.config
    git = git_facts(config, services.environ)
    image_plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    store = store_of(config, prepared.provider, prepared.target, services)
    state = store.load()
    report_pending(store, state, prepared.target, services)
    builder = services.image_stage(config, image_plan, services)
    return [_plan_item(prepared, builder, state)]


def _plan_item(prepared: Prepared, builder: ImageStage, state: DeploymentState) -> PlanItem:
    recorded = recorded_of(state)
    desired = Desired(
        config_hash=builder.plan.labels.get("dev.agentdeploy.config-hash", ""),
        inputs_digest=builder.inputs(),
        deployment=prepared.config.deploy.model_dump(mode="json"),
        inputs_files=builder.inputs_files(),
    )
    target = prepared.target
    item = plan_release(target.resource, desired, recorded, target.observe(state.current))
    config = prepared.config
    forwarded = forwarded_variables(runtime_settings(config.deploy, config.runtime_variables))
    given = [Forwarded(name, name, secret=True) for name in prepared.one_off]  # --env: named, as secrets
    return replace(item, variables=(*forwarded, *given))


def deploy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = prepare(config_path, display_name, options, services)
    config = prepared.config
    for note in env_files_left_out(config):
        services.console.warn(note)
    git = git_facts(config, services.environ)  # every named file present, before any side effect
    plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    push = push_wanted(prepared, options)
    store = store_of(config, prepared.provider, prepared.target, services)
    with store.locked():
        state = store.load()
        repair_unfinished(store, state, prepared, options, services)
        started = now()
        builder = services.image_stage(config, plan, services)
        item = _planned(prepared, builder, state, options, services)
        redeploy = options.force or options.pull or bool(prepared.one_off)  # --env values reach only a new version
        if item.action == NO_CHANGE and not redeploy and state.current is not None:
            services.console.info(
                "no change since the last deployment: nothing built, nothing written (--force to redeploy)"
            )
            return _unchanged(state.current, item, store.path)
        if isinstance(prepared.target, Preflight):
            prepared.target.preflight()  # what would fail the release (a busy port) fails before the build
        with services.console.stage("image: build, push, verify"):
            image = builder.run(push=push, pull=options.pull, move_tag=options.move_tag)
        attestation = attested(image.manifest_digest or "", options, services)
        entry = _DeployEntry(git=git, plan=plan, started=started, attestation=attestation, environ=services.environ)
        with services.console.stage(f"release to {prepared.provider}"):
            request = release_request(
                prepared, image, options, config_hash=entry.config_hash, credentials=builder.credentials
            )
            outcome = release_recorded(
                store,
                state,
                services,
                lambda: prepared.target.release(request),
                pending=entry.of(
                    prepared, image, TargetOutcome(status=Status.FAILED, url="", revision="", previous="")
                ),
                record_of=lambda outcome: entry.of(prepared, image, outcome),
            )
    if attestation:
        outcome.details["attestation"] = attestation
    outcome.details["variables"] = [variable.as_json() for variable in item.variables]  # names, for the summary
    return finish(outcome, image, store.path)


def _planned(
    prepared: Prepared, builder: ImageStage, state: DeploymentState, options: DeployOptions, services: Services
) -> PlanItem:
    """Deploy's plan stage: what changes, shown; drift refused (--fail-on-drift) or overwritten with a warning."""
    with services.console.stage("plan"):
        item = _plan_item(prepared, builder, state)
        services.console.info(render_table([item]))
        services.console.info(render_variables([item]))
    if item.action == DRIFT:
        refuse_drift([item], options)
        services.console.info(f"warning: {_drift_text(item)}; deploying the config over it")
    return item


def _unchanged(current: DeploymentRecord, item: PlanItem, state_file: Path) -> DeployResult:
    """NO_CHANGE: what serves, as recorded; nothing built or written."""
    return DeployResult(
        Status.UNCHANGED,
        current.url,
        image_of(current),
        current.revision,
        current.previous_image,
        state_file,
        extra={"variables": [variable.as_json() for variable in item.variables]},
    )


@dataclass(frozen=True, kw_only=True)
class _DeployEntry:
    """What a deploy's history entry says besides the outcome: the commit, the image plan, when, who."""

    git: GitFacts
    plan: ImagePlan
    started: str
    attestation: str
    environ: Mapping[str, str]

    @property
    def config_hash(self) -> str:
        return self.plan.labels.get("dev.agentdeploy.config-hash", "")

    def of(self, prepared: Prepared, image: ImageResult, outcome: TargetOutcome) -> DeploymentRecord:
        return history_entry(
            Action.DEPLOY,
            outcome,
            image,
            config_hash=self.config_hash,
            git_sha=self.git.sha or "",
            git_ref=self.git.ref or "",
            started=self.started,
            actor_fields=provenance(self.environ),
            deployment=canonical_deployment(prepared.config.deploy.model_dump(mode="json")),
            runtime=self.plan.labels.get(RUNTIME_LABEL, ""),
            attestation=self.attestation,
        )


def _drift_text(item: PlanItem) -> str:
    return f"{item.resource} drifted from the record: " + "; ".join(item.drift)


def refuse_drift(items: list[PlanItem], options: DeployOptions) -> None:
    """With --fail-on-drift: a drifted resource stops the run (plan or deploy), before anything changes."""
    drifted = [item for item in items if item.action == DRIFT]
    if options.fail_on_drift and drifted:
        raise DeployError(
            "; ".join(_drift_text(item) for item in drifted),
            hint="inspect it with `agentdeploy plan`; deploy without --fail-on-drift to overwrite it with the config",
        )


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


def _paused_canary_stable(state: DeploymentState, to: str, prepared: Prepared) -> DeploymentRecord | None:
    """`rollback` (previous) during a paused canary aborts it: the version to go back to is the stable one, which
    the record still names as current, since it no longer takes all the traffic."""
    current = state.current
    if to != "previous" or current is None or prepared.config.deploy.rollout.strategy != "canary":
        return None
    return None if prepared.target.observe(current).serving else current


def rollback(config_path: Path, display_name: str, to: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = prepare(config_path, display_name, options, services)
    config, target = prepared.config, prepared.target
    store = store_of(config, prepared.provider, target, services)
    with store.locked():
        state = store.load()
        repair_unfinished(store, state, prepared, options, services)
        record = _paused_canary_stable(state, to, prepared) or find_rollback_record(state, to)
        record = record or target.recorded_elsewhere(to)
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
        if state.current and record.image and same_release(record, state.current) and target.observe(record).serving:
            raise NothingToRollBackError(f"{to} is what serves now ({record.image}); nothing to roll back")
        trusted(record, "previous" if to == "previous" else repr(to), prepared, options, services)
        started = now()
        services.console.info(f"rolling back to {record.tag or record.revision or record.image}, no rebuild")
        request = recorded_request(
            release_request(prepared, image_of(record), options, config_hash=record.config_hash, auto_rollback=True),
            record,
            options,
        )

        def record_of(outcome: TargetOutcome) -> DeploymentRecord:
            return served_again(Action.ROLLBACK, outcome, record, started, services.environ)

        outcome = release_recorded(
            store,
            state,
            services,
            lambda: target.rollback(record, request),
            pending=record_of(TargetOutcome(status=Status.FAILED, url="", revision="", previous="")),
            record_of=record_of,
        )
    return finish(outcome, image_of(record), store.path)


def promote(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> DeployResult:
    prepared = prepare(config_path, display_name, options, services)
    config, target = prepared.config, prepared.target
    if not isinstance(target, Promotable):
        raise UsageError(
            f"promote moves traffic to a verified candidate: the {prepared.provider} target has no candidates",
            hint="blue/green needs a target that can split traffic (azure)",
        )
    store = store_of(config, prepared.provider, target, services)
    with store.locked():
        state = store.load()
        repair_unfinished(store, state, prepared, options, services)
        waiting = next((r for r in state.history if r.status == Status.CANDIDATE), None)
        if waiting is not None:  # the candidate as recorded: checked like any version a record makes run
            trusted(waiting, "candidate", prepared, options, services)
        started = now()
        outcome = target.promote(release_request(prepared, NO_IMAGE, options, config_hash=""))
        candidate = next((r for r in state.history if r.revision == outcome.revision), None)
        image = image_of(candidate) if candidate else NO_IMAGE
        state.add(served_again(Action.PROMOTE, outcome, candidate, started, services.environ))
        store.save(state)
    return finish(outcome, image, store.path)
