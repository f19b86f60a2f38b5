"""The record around a release: the pending entry written before the target changes and the outcome after
(`release_recorded`), the history entries, finding a recorded version again, and finishing what a run that
died mid-release left (`repair`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from agentdeploy.errors import (
    AgentDeployError,
    DeployError,
    UntrustedRecordError,
)
from agentdeploy.image.builder import ImageResult
from agentdeploy.release.planner import (
    Recorded,
)
from agentdeploy.release.prepare import (
    DeployOptions,
    Prepared,
    Services,
    named,
    now,
    run_id,
    store_of,
)
from agentdeploy.release.trust import (
    trusted,
)
from agentdeploy.state.record import SERVED
from agentdeploy.state.store import (
    DIGEST_FORMAT,
    DeploymentRecord,
    DeploymentState,
    StateStore,
    provenance,
)
from agentdeploy.targets.base import (
    Action,
    ReleaseRequest,
    Repairs,
    Status,
    Target,
    TargetOutcome,
)


def recorded_of(state: DeploymentState) -> Recorded | None:
    current = state.current
    if current is None:
        return None
    try:
        deployment = json.loads(current.deployment) if current.deployment else {}
    except ValueError:
        deployment = {}
    return Recorded(current.config_hash, current.inputs_digest, deployment, current.image, current.files())


def history_entry(
    action: Action,
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
        finished_at=now(),
        image=image.reference,
        image_id=image.image_id,
        repository=image.repository,
        tag=image.tag,
        # The record's digest: the manifest digest of a pushed image, else (as records always held) its image id.
        digest=image.manifest_digest or image.image_id,
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
        gate=gate_text(outcome.details),
        git_sha=git_sha,
        git_ref=git_ref,
        **actor_fields,
    )


GATE_KEYS = ("evaluation", "canary")  # what of a target's report the record keeps: the gate's own results


def gate_text(details: Mapping[str, object]) -> str:
    """The gate's results a target reported (the evaluation's cases with their latency and tokens, a canary's steps)
    as canonical JSON for the record; "" when it reported none."""
    kept = {key: details[key] for key in GATE_KEYS if details.get(key)}
    return json.dumps(kept, sort_keys=True, separators=(",", ":")) if kept else ""


def served_again(
    action: Action, outcome: TargetOutcome, source: DeploymentRecord | None, started: str, environ: Mapping[str, str]
) -> DeploymentRecord:
    """The record of a version that serves again (rollback, promote): what it is comes from its own record."""
    known = source or DeploymentRecord(action=Action.DEPLOY, status=Status.UNKNOWN, started_at="")
    return history_entry(
        action,
        outcome,
        image_of(known),
        config_hash=known.config_hash,
        deployment=known.deployment,
        runtime=known.runtime,
        attestation=known.attestation,
        git_sha=known.git_sha,
        git_ref=known.git_ref,
        started=started,
        actor_fields=provenance(environ),
    )


NO_IMAGE = ImageResult(
    reference="", tag="", repository="", manifest_digest=None, image_id="", inputs_digest="", skipped_build=True
)  # promote: the target knows its candidate


def image_of(record: DeploymentRecord) -> ImageResult:
    # A pushed version runs as repository@<its manifest digest>; a local one as its image id (digest == image id).
    pushed = bool(record.digest) and record.image.endswith(f"@{record.digest}")
    return ImageResult(
        reference=record.image,
        tag=record.tag,
        repository=record.repository,
        manifest_digest=record.digest if pushed else None,
        image_id=record.image_id,
        inputs_digest=record.inputs_digest,
        skipped_build=True,
        inputs_files=record.files(),
    )


def find_rollback_record(state: DeploymentState, to: str) -> DeploymentRecord | None:
    """The record `to` names: previous | a tag | a digest (or image id) | a revision; newest match first."""
    served = [r for r in state.history if r.status in SERVED and r.action != Action.DESTROY and r.image]
    current = state.current
    if to == "previous":
        # A release may change only runtime settings (same image, other environment): it is a version too.
        return next((r for r in served if current is None or not same_release(r, current)), None)
    wanted = to.rpartition("@")[2]  # a digest, alone or after repository@
    if DIGEST_FORMAT.fullmatch(wanted):
        return next((r for r in served if wanted in (r.digest, r.image_id) or r.image.endswith(wanted)), None)
    return next((r for r in served if to in (r.tag, r.revision)), None)


def same_release(one: DeploymentRecord, other: DeploymentRecord) -> bool:
    return (one.image, one.deployment) == (other.image, other.deployment)


def recorded_request(request: ReleaseRequest, record: DeploymentRecord, options: DeployOptions) -> ReleaseRequest:
    """A recorded version is judged by the health settings it was deployed with, not today's config."""
    recorded = record.health()
    if recorded is None:
        return request
    path, timeout = recorded
    return replace(request, health_path=path, health_timeout=options.health_timeout or timeout)


def release_recorded(
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
        state.pending = replace(pending, status=Status.PENDING, finished_at="", run_id=run_id(services.environ))
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


def report_pending(
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


def repair_unfinished(
    store: StateStore, state: DeploymentState, prepared: Prepared, options: DeployOptions, services: Services
) -> TargetOutcome | None:
    """A pending entry seen under the lock was left by a run that died mid-release: finish its work first,
    so the target serves a version that passed its gate and the record says which. The version it puts back
    (the record's current) must be one this repository deployed: in the history, in the config's repository."""
    pending, target = state.pending, prepared.target
    if pending is None:
        return None
    last_good = state.current
    if last_good is not None:
        if not any(same_release(last_good, entry) and entry.status in SERVED for entry in state.history):
            raise UntrustedRecordError(
                f"refused the state's current record ({last_good.image or last_good.revision or 'no image'}): it is "
                "not in the history: "
                "repair puts back only a version this repository deployed before; nothing was changed",
                hint="restore the state from a record agentdeploy wrote, or deploy a version again",
            )
        trusted(last_good, "current", prepared, options, services)
    if pending.image:
        trusted(pending, "pending", prepared, replace(options, require_attestation=False), services)
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
            status=outcome.status,
            finished_at=now(),
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
    prepared = named(config_path, display_name, options, services)
    store = store_of(prepared.config, prepared.provider, prepared.target, services)
    with store.locked():
        state = store.load()
        if state.pending is None:
            services.console.info("nothing to repair: no release was left unfinished")
            return None, store.path
        outcome = repair_unfinished(store, state, prepared, options, services)
    if outcome is not None and outcome.status == Status.FAILED:
        raise DeployError(
            f"the repair did not leave a healthy version serving: {outcome.reason}", hint="read the output above"
        )
    return outcome, store.path
