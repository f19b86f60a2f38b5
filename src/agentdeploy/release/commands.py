"""The commands the CLI and the Action share: one dispatcher, typed results, one mapping to outputs.

The CLI and the Action only parse their inputs, call `execute`, and render what comes back: the CLI as
text or `--json` (the output names as they are), the Action as step outputs (the same names with `-`
for `_`) and a job summary. Rules that are the same for both (drift refusal, destroy confirmation)
live here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from agentdeploy.errors import UsageError
from agentdeploy.image.builder import ImageResult
from agentdeploy.jsonvalue import JsonObject, object_at, text_at
from agentdeploy.release import pipeline
from agentdeploy.release.planner import PlanItem
from agentdeploy.targets.base import Status


class Command(StrEnum):
    DEPLOY = "deploy"
    PLAN = "plan"
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    STATUS = "status"
    DESTROY = "destroy"
    PUSH = "push"  # deploy's image stage alone: no target, no state
    REPAIR = "repair"  # finish what a run that died mid-release left (its pending entry)
    PREVIEW = "preview"  # a pull request's own revision, its own record (release/preview.py)
    PREVIEW_REMOVE = "preview-remove"


Output = str | bool


@dataclass(frozen=True, kw_only=True)
class Invocation:
    """One command on one agent config, as either front end asked for it."""

    command: Command
    config: Path
    display_name: str
    options: pipeline.DeployOptions
    services: pipeline.Services
    to: str = "previous"  # rollback: previous, a tag, a digest or a revision
    dry_run: bool = False  # deploy: only plan
    confirmed: bool = False  # destroy: the user said yes
    confirm_hint: str = "confirm it"  # how this front end says yes (--yes, confirm-destroy: true)
    show_plan: Callable[[list[PlanItem]], None] = lambda items: None  # before a drift refusal stops the run
    name: str = ""  # preview, preview-remove: the preview's name (its label)


@dataclass(frozen=True, kw_only=True)
class Result:
    command: Command
    outputs: dict[str, Output]  # the one mapping: names in snake_case
    details: JsonObject = field(default_factory=dict)  # target facts for the summary (traffic, changes)
    items: list[PlanItem] = field(default_factory=list)  # plan
    report: JsonObject = field(default_factory=dict)  # status
    # Seconds per stage, by short stable keys (deploy, plan, image, pull, build, push, release, gate, ...);
    # a key is there when its stage ran. The CLI's --json `timings`, the Action's `timings` output (JSON).
    timings: dict[str, float] = field(default_factory=dict)


def release_outputs(result: pipeline.DeployResult) -> dict[str, Output]:
    outputs: dict[str, Output] = {
        "status": result.status,
        "url": result.url,
        "revision": result.revision,
        "previous_revision": result.previous,
        "image": result.image.reference,
        "image_tag": result.image.tag,
        # A manifest digest exists only for a pushed image; a local image id is not one, and says so by its key.
        "digest": result.image.manifest_digest or "",
        "image_id": result.image.image_id,
        "skipped_build": result.image.skipped_build,
        "state_file": str(result.state_file),
        "plan": ", ".join(str(change) for change in _list(result.extra.get("changes"))),
    }
    if result.extra.get("label_url"):
        outputs["label_url"] = str(result.extra["label_url"])  # blue/green candidate, at 0% until promote
    if result.extra.get("attestation"):
        outputs["attestation"] = str(result.extra["attestation"])  # with --require-attestation: what was checked
    return outputs


def push_outputs(image: ImageResult) -> dict[str, Output]:
    """`push`: the image in the registry, and what actions/attest-build-provenance needs to attest it
    (`repository` as subject-name, `digest` as subject-digest)."""
    return {
        "status": Status.PUSHED,
        "image": image.reference,  # repository@sha256:...
        "image_tag": image.tag,
        "digest": image.manifest_digest or "",
        "image_id": image.image_id,  # the id on the engine that built it; empty when nothing was built
        "skipped_build": image.skipped_build,
        "repository": image.repository,  # registry host/repository, no tag or digest
    }


def execute(invocation: Invocation) -> Result:
    """Run the command; the whole of it is timed under its name (`deploy`: the total of a deploy; `push`: `image`)."""
    console = invocation.services.console
    with console.timed(_total_key(invocation)):
        previews = (Command.PREVIEW, Command.PREVIEW_REMOVE)
        result = _preview(invocation) if invocation.command in previews else _execute(invocation)
    return replace(result, timings=console.timings)


def _total_key(invocation: Invocation) -> str:
    if invocation.command == Command.PLAN or (invocation.command == Command.DEPLOY and invocation.dry_run):
        return Command.PLAN.value
    if invocation.command == Command.PUSH:
        # `push` is deploy's image stage: timed as `image`, so its `push` key means what it means in a deploy
        # (the upload inside the image stage), not the whole command.
        return "image"
    return invocation.command.value


def _preview(i: Invocation) -> Result:
    """preview, preview-remove: a pull request's own revision, in a record of its own (release/preview.py)."""
    from agentdeploy.release import preview

    run = preview.preview if i.command == Command.PREVIEW else preview.remove_preview
    released = run(i.config, i.display_name, i.name, i.options, i.services)
    return Result(command=i.command, outputs=preview.preview_outputs(released), details=dict(released.extra))


def _execute(invocation: Invocation) -> Result:
    i = invocation
    args = (i.config, i.display_name, i.options, i.services)
    if i.command == Command.PLAN or (i.command == Command.DEPLOY and i.dry_run):
        items = pipeline.plan(*args)
        result = Result(
            command=Command.PLAN,
            outputs={"status": Status.PLANNED, "plan": ", ".join(f"{item.resource}: {item.action}" for item in items)},
            items=items,
            details={"variables": [variable.as_json() for item in items for variable in item.variables]},
        )
        i.show_plan(items)
        pipeline.refuse_drift(items, i.options)
        return result
    if i.command == Command.STATUS:
        report = pipeline.status(*args)
        current = object_at(report, "current")
        return Result(
            command=i.command,
            outputs={
                "status": text_at(current, "status") or Status.ABSENT,
                "url": text_at(current, "url"),
                "revision": text_at(current, "revision"),
                "image": text_at(current, "image"),
                "digest": text_at(current, "digest"),
                "state_file": text_at(report, "state_file"),
            },
            report=report,
        )
    if i.command == Command.DESTROY:
        if not i.confirmed:
            raise UsageError("destroy removes the running agent", hint=i.confirm_hint)
        removed = pipeline.destroy(*args)
        return Result(command=i.command, outputs={"status": Status.DESTROYED, "plan": ", ".join(removed)})
    if i.command == Command.PUSH:
        return Result(command=i.command, outputs=push_outputs(pipeline.push(*args)))
    if i.command == Command.REPAIR:
        repaired, state_file = pipeline.repair(*args)
        if repaired is None:
            outputs: dict[str, Output] = {"status": Status.UNCHANGED, "plan": "nothing to repair"}
            return Result(command=i.command, outputs={**outputs, "state_file": str(state_file)})
        return Result(
            command=i.command,
            outputs={
                "status": repaired.status,
                "url": repaired.url,
                "revision": repaired.revision,
                "previous_revision": repaired.previous,
                "state_file": str(state_file),
                "plan": repaired.reason,
            },
        )
    if i.command == Command.DEPLOY:
        released = pipeline.deploy(*args)
    elif i.command == Command.ROLLBACK:
        released = pipeline.rollback(i.config, i.display_name, i.to, i.options, i.services)
    else:
        released = pipeline.promote(*args)
    return Result(command=i.command, outputs=release_outputs(released), details=dict(released.extra))


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
