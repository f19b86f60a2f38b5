"""What a deploy would do (pure): desired (the config) vs recorded (the state) vs live (the target).

Actions, in PromptKit's words: CREATE (nothing recorded, nothing running), UPDATE (the config or
the image inputs changed since the last deployment: the fields that change are listed), NO_CHANGE,
and DRIFT (the live app or container differs from the record: someone changed it by hand).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agentdeploy.config.runtime import Forwarded
from agentdeploy.targets.base import Live


class Action(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    NO_CHANGE = "NO_CHANGE"
    DRIFT = "DRIFT"


CREATE, UPDATE, NO_CHANGE, DRIFT = Action.CREATE, Action.UPDATE, Action.NO_CHANGE, Action.DRIFT


@dataclass(frozen=True)
class Desired:
    config_hash: str
    inputs_digest: str  # everything that decides the image's content
    deployment: dict[str, Any]  # canonical deployment section, placeholders unresolved (no secret values)
    inputs_files: Mapping[str, str] = field(default_factory=dict)  # path in the build context -> sha256


@dataclass(frozen=True)
class Recorded:
    config_hash: str
    inputs_digest: str
    deployment: dict[str, Any]
    image: str
    inputs_files: Mapping[str, str] = field(default_factory=dict)  # empty in records older than the manifest


@dataclass(frozen=True)
class PlanItem:
    resource: str
    action: Action
    changes: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # build inputs: added / removed / changed paths
    # The deploy's variables the agent receives (names and secret or plain, never values).
    variables: tuple[Forwarded, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "action": self.action,
            "changes": self.changes,
            "drift": self.drift,
            "files": self.files,
            "variables": [variable.as_json() for variable in self.variables],
        }


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "deployment") -> list[str]:
    """Dotted paths whose values differ (dicts are compared key by key, anything else as a whole)."""
    paths: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}.{key}"
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            paths.extend(changed_fields(before, after, path))
        elif before != after:
            paths.append(path)
    return paths


def plan_release(resource: str, desired: Desired, recorded: Recorded | None, live: Live) -> PlanItem:
    if recorded is None:
        if live.exists:
            return PlanItem(
                resource, DRIFT, ["first deployment by agentdeploy"], ["it exists but agentdeploy has no record of it"]
            )
        return PlanItem(resource, CREATE, ["everything"])
    changes = changed_fields(recorded.deployment, desired.deployment)
    if desired.config_hash != recorded.config_hash and not changes:
        changes.append("agent config outside deployment:")
    changes.extend(f"secret {name} (a new value)" for name in live.rotated_secrets)
    files: dict[str, list[str]] = {}
    if desired.inputs_digest != recorded.inputs_digest:
        files = files_changed(recorded.inputs_files, desired.inputs_files)
        changes.append(image_content_change(recorded.inputs_files, desired.inputs_files, files))
    drift: list[str] = []
    if not live.exists:
        drift.append("recorded as deployed, but it does not exist")
    else:
        if live.image and recorded.image and live.image != recorded.image:
            drift.append(f"runs {live.image}, recorded {recorded.image}")
        if live.config_hash and live.config_hash != recorded.config_hash:
            drift.append("its configuration label differs from the record")
        if not live.serving:
            drift.append("the recorded revision is not the one serving")
    if drift:
        return PlanItem(resource, DRIFT, changes, drift, files)
    return PlanItem(resource, UPDATE if changes else NO_CHANGE, changes, files=files)


FILES_NAMED = 5  # an UPDATE names this many files, then "and N more"


def files_changed(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, list[str]]:
    """The build inputs that differ, by kind (both manifests needed: a record without one names nothing)."""
    if not old or not new:
        return {}
    found = {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(path for path in set(old) & set(new) if old[path] != new[path]),
    }
    return {kind: paths for kind, paths in found.items() if paths}


def image_content_change(old: Mapping[str, str], new: Mapping[str, str], files: dict[str, list[str]]) -> str:
    """The UPDATE reason for new image inputs: the files, when both sides have a manifest."""
    if not old or not new:
        return "image content (agent files, Dockerfile, platform or build args)"
    named = sorted((path, kind) for kind, paths in files.items() for path in paths)
    if not named:  # the same files: what else the digest covers changed
        return "image content (platform or build args)"
    shown = ", ".join(f"{path} {kind}" for path, kind in named[:FILES_NAMED])
    more = len(named) - FILES_NAMED
    return f"image content: {shown}" + (f" and {more} more" if more > 0 else "")


def render_table(items: list[PlanItem]) -> str:
    lines = [f"{'RESOURCE':<36} {'ACTION':<10} DETAILS"]
    for item in items:
        details = "; ".join([*(f"change: {c}" for c in item.changes), *(f"drift: {d}" for d in item.drift)]) or "-"
        lines.append(f"{item.resource:<36} {item.action:<10} {details}")
    return "\n".join(lines)


def render_variables(items: list[PlanItem]) -> str:
    """Below the table: each resource's variables from the deploy's environment, by name, secret or plain."""
    return "\n".join(f"{item.resource} receives {variables_text(item.variables)}" for item in items)


def variables_text(variables: tuple[Forwarded, ...] | list[Forwarded]) -> str:
    """`OPENAI_API_KEY (secret), SUPPORT_KEY as API_KEY (secret), REGION (plain)`: what reaches the agent, by name."""
    if not variables:
        return "no variable from the deploy's environment"
    return "from the deploy's environment: " + ", ".join(v.describe() for v in variables)


def canonical_deployment(deployment: Mapping[str, Any]) -> str:
    return json.dumps(deployment, sort_keys=True, separators=(",", ":"))
