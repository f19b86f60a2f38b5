"""`agentdeploy preview CONFIG --name pr-<n> [--remove]`: a pull request's own revision beside production, on a
target with the Previews capability (targets/base.py). The image is built and pushed as for a deploy; the preview
is recorded in a state file of its own (`<agent>.<environment>-preview-<name>.json`), never in production's
record, whose file is not read or written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agentdeploy.errors import UsageError
from agentdeploy.image.git import git_facts
from agentdeploy.image.spec import plan_image
from agentdeploy.image.tags import created_timestamp
from agentdeploy.jsonvalue import array
from agentdeploy.release.prepare import (
    DeployOptions,
    DeployResult,
    Prepared,
    Services,
    finish,
    named,
    now,
    prepare,
    push_wanted,
    release_request,
)
from agentdeploy.release.records import NO_IMAGE, history_entry
from agentdeploy.state.record import Action
from agentdeploy.state.store import DeploymentRecord, StateStore, provenance, state_path
from agentdeploy.targets.base import Previews, Status, TargetOutcome


def _previews(prepared: Prepared) -> Previews:
    target = prepared.target
    if not isinstance(target, Previews):
        raise UsageError(
            f"the {prepared.provider} target has no previews: nothing was deployed",
            hint="previews are revisions with a label of their own on Azure Container Apps (--target azure); "
            "deploy to the docker target instead",
        )
    return target


def preview_store(prepared: Prepared, name: str, services: Services) -> StateStore:
    """The preview's own record: production's file is never read or written by a preview."""
    config, environment = prepared.config, f"{prepared.target.environment}-preview-{name}"
    return StateStore(
        state_path(config.project_dir, config.agent.name, environment),
        agent=config.agent.name,
        environment=environment,
        target=prepared.provider,
        redact=services.console.redact,
    )


def preview(
    config_path: Path, display_name: str, name: str, options: DeployOptions, services: Services
) -> DeployResult:
    """Build and push the image, then the target's preview `name`, verified at its own URL, and its record."""
    prepared = prepare(config_path, display_name, options, services)
    target, config = _previews(prepared), prepared.config
    target.check_preview(name)  # a bad name, an app that cannot hold a preview: before the build
    git = git_facts(config, services.environ)
    plan = plan_image(config, git, created=created_timestamp(git, services.environ, datetime.now(UTC)))
    push = push_wanted(prepared, options)
    store = preview_store(prepared, name, services)
    with store.locked():
        state, started = store.load(), now()
        builder = services.image_stage(config, plan, services)
        with services.console.stage("image: build, push, verify"):
            image = builder.run(push=push, pull=options.pull, move_tag=options.move_tag)
        config_hash = plan.labels.get("dev.agentdeploy.config-hash", "")
        request = release_request(prepared, image, options, config_hash=config_hash, credentials=builder.credentials)
        with services.console.stage(f"preview {name} on {prepared.provider}"):
            outcome = target.preview(request, name)
        record = history_entry(
            Action.DEPLOY,
            outcome,
            image,
            config_hash=config_hash,
            git_sha=git.sha or "",
            git_ref=git.ref or "",
            started=started,
            actor_fields=provenance(services.environ),
        )
        state.add(record)
        store.save(state)
    outcome.details["previews"] = array(target.previews())
    # What this preview ran and where, also when it failed (the pull request's comment says so: github/action.py).
    url = outcome.label_url or outcome.url
    outcome.details["preview"] = {"url": url, "image": image.reference, "digest": image.manifest_digest or ""}
    return finish(outcome, image, store.path)


def remove_preview(
    config_path: Path, display_name: str, name: str, options: DeployOptions, services: Services
) -> DeployResult:
    """The preview's label goes and its revision stops; its record says so. No runtime value is needed (the job that
    removes it has no secrets)."""
    prepared = named(config_path, display_name, options, services)
    target = _previews(prepared)
    store = preview_store(prepared, name, services)
    with store.locked():
        state, started = store.load(), now()
        with services.console.stage(f"remove preview {name} on {prepared.provider}"):
            removed = target.remove_preview(name)
        reason = "removed " + ", ".join(removed) if removed else f"no preview {name}: nothing to remove"
        if removed:
            state.add(
                DeploymentRecord(
                    action=Action.DESTROY,
                    status=Status.DESTROYED,
                    started_at=started,
                    finished_at=now(),
                    message=reason,
                    **provenance(services.environ),
                )
            )
            store.save(state)
    outcome = TargetOutcome(status=Status.SUCCEEDED, url="", revision="", previous="", reason=reason)
    return finish(outcome, NO_IMAGE, store.path)


def preview_outputs(result: DeployResult) -> dict[str, str | bool]:
    """The outputs of `preview` (url: the preview's own URL) and `preview-remove` (status, plan: what went)."""
    return {
        "status": str(result.status),
        "url": result.url,
        "revision": result.revision,
        "previous_revision": result.previous,
        "image": result.image.reference,
        "digest": result.image.manifest_digest or "",
        "skipped_build": result.image.skipped_build,
        "state_file": str(result.state_file),
        "plan": result.reason,
    }
